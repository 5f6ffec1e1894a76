"""``fs:PATH``: a local directory (or file) as a source or a destination.

Backs up regular files, directories and symlinks with their modes, owners and modification
times; sockets, FIFOs and device nodes are skipped with a warning. Names that are not UTF-8 are
kept (as surrogate escapes, stored as bytes). Restores never follow a symlink in the destination
(see :class:`FsExporter`); an existing file is replaced through a temporary file renamed over
it once its content was verified, so a failed restore never leaves a silently wrong file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class FsSourceOptions:
    #: exclude patterns (restic's syntax, kubekeep.files.excludes)
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FsDestinationOptions:
    #: give files their recorded owners (default: when running as root)
    owners: bool | None = None
    #: files 0600 and directories 0700 whatever was recorded (manifests: they hold Secrets)
    private: bool = False


SOURCE_OPTIONS = FsSourceOptions
DESTINATION_OPTIONS = FsDestinationOptions


def open_importer(uri: str, options: FsSourceOptions) -> FsImporter:
    return FsImporter(fs_path(uri), excludes=options.excludes)


def open_exporter(uri: str, options: FsDestinationOptions) -> FsExporter:
    return FsExporter(fs_path(uri), owners=options.owners, private=options.private)
