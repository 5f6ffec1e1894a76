"""What a manifests restore changes in the objects it creates (docs/manifests.md, "Transforms"):
the flags ``--storage-class-map``, ``--image-map`` and ``--transform FILE`` made into the
``Transforms`` that ``ManifestsDestinationOptions.transforms`` carries."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING

from kubekeep import errors

if TYPE_CHECKING:  # loaded on first use: `import kubekeep.api` need not load jsonpatch
    from kubekeep.manifests.transforms import Transforms

#: a rule file larger than this is refused (rules are a few kilobytes; this is not one)
MAX_RULE_FILE = 4 * 1024 * 1024


def read_rule_file(path: str) -> bytes:
    """The bytes of a ``--transform`` file; a one-line ``UsageError`` if it cannot be read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise errors.UsageError(f"{path}: the transform file is not a regular file")
        with open(path, "rb") as f:
            data = f.read(MAX_RULE_FILE + 1)
    except OSError as exc:
        raise errors.UsageError(f"{path}: cannot read the transform file: {exc.strerror or exc}") from None
    if len(data) > MAX_RULE_FILE:
        raise errors.UsageError(f"{path}: a transform file is at most {MAX_RULE_FILE // 1024 // 1024} MiB")
    return data


def load_transforms(
    *, storage_class_map: Iterable[str] = (), image_map: Iterable[str] = (), files: Iterable[str] = ()
) -> Transforms:
    """The transforms of a restore: ``OLD=NEW`` pairs of the two maps and the rule files, read
    and checked now (in the order given) so that a mistake is reported before the restore starts."""
    from kubekeep.manifests.transforms import build

    return build(
        storage_class_map=storage_class_map,
        image_map=image_map,
        rule_files=[(path, read_rule_file(path)) for path in files],
    )
