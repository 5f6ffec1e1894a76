"""``fs:PATH``: a local directory (or file) as a source or a destination.

Backs up regular files, directories and symlinks with their modes, owners and modification
times; sockets, FIFOs and device nodes are skipped with a warning. Restores write each file to a
temporary name and rename it into place once its content was verified, so a failed restore
never leaves a silently wrong file.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kubekeep import errors
from kubekeep.connectors.base import Entry, EntryType, Exporter, Importer, SourceInfo
from kubekeep.engine import host

_REUSE = struct.Struct("<QQqqq")


def fs_path(uri: str) -> Path:
    path = uri[3:] if uri.startswith("fs:") else uri
    if path.startswith("//"):
        path = path[2:] or "/"
    if not path:
        raise errors.UsageError(f"{uri!r}: no path given")
    return Path(os.path.expanduser(path)).absolute()


class ExcludeRules:
    """Glob patterns as restic takes them: patterns match whole path components (``*``, ``?``
    and ``[...]`` never cross ``/``; ``**`` matches any number of directories); a pattern matches
    at any depth unless a leading ``/`` anchors it at the backup root; a trailing ``/`` is
    ignored. A matching directory is skipped with everything below it."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = [p.rstrip("/") for p in patterns if p.strip() and not p.startswith("#")]
        self._regexes = [_pattern_regex(p) for p in self.patterns if p.strip("/")]

    def excluded(self, rel: str, name: str) -> bool:
        return any(r.fullmatch(rel) for r in self._regexes)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    anchored = pattern.startswith("/")
    parts = [p for p in pattern.strip("/").split("/") if p]
    out = "" if anchored else "(?:[^/]+/)*"
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:[^/]+/)*"
        else:
            out += _component_regex(part) + ("" if last else "/")
    return re.compile(out, re.DOTALL)


def _component_regex(part: str) -> str:
    """fnmatch syntax for one path component, with wildcards that stop at ``/``."""
    out, i = "", 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = i + 1
            if part[j:j + 1] == "!":
                j += 1
            if part[j:j + 1] == "]":
                j += 1
            j = part.find("]", j)
            if j < 0:
                out += re.escape(c)  # no closing bracket: a literal "["
            else:
                body = part[i + 1:j].replace("\\", "\\\\")
                out += "[^/" + body[1:] + "]" if body.startswith("!") else "[" + body + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return out


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
        return SourceInfo(uri=f"fs:{self.root}", kind="fs", host=host.hostname())

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
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self._warnings.append(f"{rel_dir or '.'}: cannot list directory: {exc.strerror}; skipped")
            return
        for item in items:
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            if not _utf8(item.name):
                # snapshot trees hold UTF-8 names; say so rather than crash the whole backup
                self._warnings.append(f"{_printable(rel)}: file name is not valid UTF-8; skipped")
                continue
            if self.rules.excluded(rel, item.name):
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except OSError as exc:
                self._warnings.append(f"{rel}: {exc.strerror}; skipped")
                continue
            entry = self._entry(item.path, rel, st)
            if entry is None:
                continue
            yield entry
            if entry.type == EntryType.DIR:
                yield from self._walk(item.path, rel)

    def _entry(self, path: str, rel: str, st: os.stat_result) -> Entry | None:
        common: dict[str, Any] = dict(mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                                      mtime_ns=st.st_mtime_ns)
        if stat.S_ISDIR(st.st_mode):
            return Entry(rel, EntryType.DIR, **common)
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                self._warnings.append(f"{rel}: {exc.strerror}; skipped")
                return None
            if not _utf8(target):
                self._warnings.append(f"{rel}: symlink target is not valid UTF-8; skipped")
                return None
            return Entry(rel, EntryType.SYMLINK, target=target, **common)
        if stat.S_ISREG(st.st_mode):
            key = _REUSE.pack(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            return Entry(rel, EntryType.FILE, size=st.st_size, reuse_key=key,
                         opener=lambda p=path: open(p, "rb", buffering=0), **common)  # type: ignore[misc]
        self._warnings.append(f"{rel}: special file (socket, FIFO or device) skipped")
        return None


class FsExporter(Exporter):
    scheme = "fs"

    def __init__(self, root: Path, *, owners: bool | None = None) -> None:
        self.root = root
        self.owners = os.geteuid() == 0 if owners is None else owners
        self._dirs: list[tuple[Path, Entry]] = []
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        self._umask = _current_umask()
        self._root_str = str(root)

    def _target(self, rel: str) -> Path:
        target = (self.root / rel).resolve(strict=False) if ".." in rel.split("/") else self.root / rel
        if not str(target).startswith(str(self.root)):
            raise errors.IntegrityError(f"refusing to write outside the destination: {rel}")
        return target

    def _file_target(self, rel: str) -> str:
        """:meth:`_target` as a string, without pathlib on the common path (a restore asks this
        once per file, holding the GIL)."""
        if ".." in rel.split("/") or rel.startswith("/"):
            return str(self._target(rel))
        return f"{self._root_str}/{rel}"

    def begin(self, source: SourceInfo, metadata: dict[str, Any]) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.ConnectorError(f"cannot create {self.root}: {exc.strerror}") from None
        if not self.root.is_dir():
            raise errors.ConnectorError(f"{self.root} exists and is not a directory")

    def directory(self, entry: Entry) -> None:
        path = self._target(entry.path)
        try:
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                path.unlink()
            path.mkdir(exist_ok=True)
            os.chmod(path, 0o700 | entry.mode)  # writable while we fill it; final mode in finish()
        except OSError as exc:
            raise errors.ConnectorError(f"cannot create directory {path}: {exc.strerror}") from None
        self._dirs.append((path, entry))

    def file(self, entry: Entry, data: Iterable[bytes]) -> None:
        """Write a file; a new path is written in place, an existing one through a temporary file
        renamed over it, so a failure never leaves wrong content (or loses the old file)."""
        path = self._file_target(entry.path)
        # a new file is created with its final permission bits when the umask keeps them (one
        # system call less per file); special bits are set after chown, which clears them
        plain = entry.mode & 0o7777 == entry.mode & 0o777 & ~self._umask
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, entry.mode & 0o777 if plain else 0o600)
            written = path
        except FileExistsError:
            if os.path.isdir(path) and not os.path.islink(path):
                raise errors.ConnectorError(f"cannot restore file {path}: a directory is in the way") from None
            head, name = os.path.split(path)
            written = os.path.join(head, f".{name}.kubekeep-{os.getpid()}-{threading.get_ident()}")
            fd = -1
            plain = False
        except OSError as exc:
            raise errors.ConnectorError(f"cannot write {path}: {exc.strerror}") from None
        try:
            if fd < 0:
                fd = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for piece in data:
                    view = memoryview(piece)
                    while view:
                        view = view[os.write(fd, view):]
                if self.owners:
                    self._chown(fd, entry)
                if not plain:
                    os.fchmod(fd, entry.mode)
                os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            finally:
                os.close(fd)
            if written is not path:
                os.replace(written, path)
        except OSError as exc:
            _unlink_quietly(written)
            raise errors.ConnectorError(f"cannot write {path}: {exc.strerror}") from None
        except BaseException:
            _unlink_quietly(written)
            raise

    def symlink(self, entry: Entry) -> None:
        path = self._target(entry.path)
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            os.symlink(entry.target, path)
            if self.owners:
                try:
                    os.lchown(path, entry.uid, entry.gid)
                except OSError as exc:
                    self._warn(f"{entry.path}: cannot set owner: {exc.strerror}")
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        except OSError as exc:
            raise errors.ConnectorError(f"cannot create symlink {path}: {exc.strerror}") from None

    def _chown(self, fd: int, entry: Entry) -> None:
        try:
            os.fchown(fd, entry.uid, entry.gid)
        except OSError as exc:
            self._warn(f"{entry.path}: cannot set owner: {exc.strerror}")

    def _warn(self, message: str) -> None:
        with self._lock:
            self._warnings.append(message)

    def finish(self) -> list[str]:
        for path, entry in reversed(self._dirs):  # deepest first: children change parents' mtimes
            try:
                if self.owners:
                    os.chown(path, entry.uid, entry.gid)
                os.chmod(path, entry.mode)
                os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
            except OSError as exc:
                self._warn(f"{entry.path}: cannot set directory metadata: {exc.strerror}")
        return self._warnings


def _current_umask() -> int:
    """The process umask, read from /proc (``os.umask`` can only read it by changing it, which
    other threads would see); where it cannot be read, assume the strictest one."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777


def _utf8(name: str) -> bool:
    """False for names that came from bytes that are not UTF-8 (surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def open_importer(uri: str, *, excludes: Iterable[str] = (), **_: Any) -> FsImporter:
    return FsImporter(fs_path(uri), excludes=excludes)


def open_exporter(uri: str, **options: Any) -> FsExporter:
    return FsExporter(fs_path(uri), owners=options.get("owners"))
