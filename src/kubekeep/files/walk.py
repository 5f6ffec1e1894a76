"""Walk a local directory (or one file) as snapshot entries: files, directories and symlinks with
their modes, owners and times; sockets, FIFOs and devices skipped with a warning; names that are
not UTF-8 kept as surrogate escapes."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TypedDict

from kubekeep import errors
from kubekeep.engine import host
from kubekeep.engine.entries import Entry, EntryType, Importer, SnapshotKind, SourceInfo
from kubekeep.engine.tree import name_printable as _printable
from kubekeep.files.excludes import ExcludeRules

_REUSE = struct.Struct("<QQqqq")
_FILE = EntryType.FILE


class _Metadata(TypedDict):
    """What every entry takes from ``lstat``."""

    mode: int
    uid: int
    gid: int
    mtime_ns: int


class FsImporter(Importer):
    scheme = "fs"

    def __init__(self, root: Path, *, excludes: Iterable[str] = ()) -> None:
        self.root = root
        self.rules = ExcludeRules(excludes)
        self._warnings: list[str] = []
        try:
            st = root.lstat()
        except FileNotFoundError:
            raise errors.ConnectorError(f"{root}: no such file or directory") from None
        except PermissionError:
            raise errors.ConnectorError(f"{root}: permission denied") from None
        self._root_is_dir = stat.S_ISDIR(st.st_mode)

    def source(self) -> SourceInfo:
        return SourceInfo(uri=f"fs:{self.root}", kind=SnapshotKind.FS.value, host=host.hostname())

    def warnings(self) -> list[str]:
        return self._warnings

    def entries(self) -> Iterator[Entry]:
        if not self._root_is_dir:
            entry = self._entry(str(self.root), self.root.name, self.root.lstat())
            if entry is not None:
                yield entry
            return
        yield from self._walk(str(self.root), "")

    def _walk(self, dir_path: str, rel_dir: str) -> Iterator[Entry]:
        try:
            with os.scandir(dir_path) as it:
                # last name first, popped as walked: a DirEntry keeps the stat result it was
                # asked for, so a list of them held a 16,000-file directory's stats (9 MB)
                items = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as exc:
            self._warnings.append(f"{_printable(rel_dir) or '.'}: cannot list directory: {exc.strerror}; skipped")
            return
        excluded = self.rules.excluded if self.rules else None
        while items:
            item = items.pop()
            name = item.name
            rel = f"{rel_dir}/{name}" if rel_dir else name  # not UTF-8: surrogate escapes
            if excluded is not None and excluded(rel, name):
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except OSError as exc:
                self._warnings.append(f"{_printable(rel)}: {exc.strerror}; skipped")
                continue
            entry = self._entry(item.path, rel, st)
            if entry is None:
                continue
            yield entry
            if entry.type == EntryType.DIR:
                yield from self._walk(item.path, rel)

    def _entry(self, path: str, rel: str, st: os.stat_result) -> Entry | None:
        mode = st.st_mode
        if stat.S_ISREG(mode):  # the common case first, its fields given positionally
            size, mtime_ns = st.st_size, st.st_mtime_ns
            key = _REUSE.pack(st.st_dev, st.st_ino, size, mtime_ns, st.st_ctime_ns)
            return Entry(
                rel,
                _FILE,
                stat.S_IMODE(mode),
                st.st_uid,
                st.st_gid,
                mtime_ns,
                size,
                opener=_opener(path),
                reuse_key=key,
                local_path=path,
            )
        common: _Metadata = {
            "mode": stat.S_IMODE(mode),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "mtime_ns": st.st_mtime_ns,
        }
        if stat.S_ISDIR(mode):
            return Entry(rel, EntryType.DIR, **common)
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                self._warnings.append(f"{_printable(rel)}: {exc.strerror}; skipped")
                return None
            return Entry(rel, EntryType.SYMLINK, target=target, **common)
        self._warnings.append(f"{_printable(rel)}: special file (socket, FIFO or device) skipped")
        return None


def _opener(path: str) -> Callable[[], IO[bytes]]:
    return lambda: open(path, "rb", buffering=0)
