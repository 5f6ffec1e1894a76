"""``fs:PATH``: a local directory (or file) as a source or a destination.

Backs up regular files, directories and symlinks with their modes, owners and modification
times; sockets, FIFOs and device nodes are skipped with a warning. Names that are not UTF-8 are
kept (as surrogate escapes, stored as bytes). Restores never follow a symlink in the destination
(see :class:`FsExporter`); an existing file is replaced through a temporary file renamed over
it once its content was verified, so a failed restore never leaves a silently wrong file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kubekeep import errors
from kubekeep.files.walk import FsImporter
from kubekeep.files.write import FsExporter


def fs_path(uri: str) -> Path:
    path = uri[3:] if uri.startswith("fs:") else uri
    if path.startswith("//"):
        path = path[2:] or "/"
    if not path:
        raise errors.UsageError(f"{uri!r}: no path given")
    return Path(os.path.expanduser(path)).absolute()


def open_importer(uri: str, *, excludes: Iterable[str] = (), **_: Any) -> FsImporter:
    return FsImporter(fs_path(uri), excludes=excludes)


def open_exporter(uri: str, **options: Any) -> FsExporter:
    return FsExporter(fs_path(uri), owners=options.get("owners"), private=bool(options.get("private")))
