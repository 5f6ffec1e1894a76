"""Write snapshot entries into a local directory: never following a symlink found there, every
path kept inside the destination, an existing file replaced only by a verified whole copy."""

from __future__ import annotations

import errno
import os
import secrets
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from kubekeep import errors
from kubekeep.engine.entries import Entry, Exporter, SourceInfo
from kubekeep.engine.sealing import compiled
from kubekeep.engine.tree import name_printable as _printable


class _PathArgs(TypedDict):
    """How ``os.chown``/``os.utime`` reach a symlink: by a /proc path, or by name in a directory."""

    path: str
    dir_fd: NotRequired[int]
    follow_symlinks: NotRequired[bool]


class FsExporter(Exporter):
    """Writes entries under ``root``. Every directory and file is created relative to an open
    descriptor of its parent directory, itself opened relative to its own parent with
    ``O_NOFOLLOW``: a symlink in the destination (restored a moment before, or swapped in for a
    directory by another user during the run) is never followed, and no path leaves ``root``.
    Modes, owners and times are set through descriptors of the inodes the restore opened.

    ``private`` (manifests snapshots: they hold Secrets) writes files 0600 and directories 0700.
    """

    scheme = "fs"
    #: directory descriptors kept open beside those in use (past them, a lookup walks from the
    #: root again: one ``openat`` per level)
    OPEN_DIRECTORIES = 256

    def __init__(self, root: Path, *, owners: bool | None = None, private: bool = False) -> None:
        self.root = root
        self.owners = os.geteuid() == 0 if owners is None else owners
        self.private = private
        self._dirs: list[tuple[Entry, int, int]] = []  # restored directories, their (dev, ino)
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        self._umask = _current_umask()
        self._root_fd = -1
        self._open: OrderedDict[str, list[int]] = OrderedDict()  # path -> [fd, users], least recent first

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:
        try:
            os.makedirs(self.root, mode=0o700 if self.private else 0o777, exist_ok=True)
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError:
            raise errors.ConnectorError(f"{self.root} exists and is not a directory") from None
        except FileExistsError:
            raise errors.ConnectorError(f"{self.root} exists and is not a directory") from None
        except OSError as exc:
            raise errors.ConnectorError(f"cannot create {self.root}: {exc.strerror}") from None

    # -- directory descriptors ----------------------------------------------------------------
    def _acquire(self, path: str) -> int:
        """A descriptor of directory ``path`` (relative to the root), held until :meth:`_release`."""
        if not path:
            return self._root_fd
        with self._lock:
            slot = self._open.get(path)
            if slot is not None:
                slot[1] += 1
                self._open.move_to_end(path)
                return slot[0]
            parts = path.split("/")
            if any(p in _NOT_NAMES or "\0" in p for p in parts):
                raise errors.EntryFailed(f"{_printable(path)}: not a path inside the destination")
            at = len(parts)
            while at and "/".join(parts[:at]) not in self._open:
                at -= 1
            fd = self._open["/".join(parts[:at])][0] if at else self._root_fd
            for i in range(at, len(parts)):
                try:
                    fd = os.open(parts[i], _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    why = (
                        "a symlink or a file is in the way"
                        if exc.errno in (errno.ELOOP, errno.ENOTDIR)
                        else exc.strerror
                    )
                    at_part = _printable("/".join(parts[: i + 1]))
                    raise errors.EntryFailed(f"{_printable(path)}: cannot open directory {at_part}: {why}") from None
                self._open["/".join(parts[: i + 1])] = [fd, 0]
            self._open[path][1] = 1
            self._evict()
            return fd

    def _release(self, path: str) -> None:
        if path:
            with self._lock:
                self._open[path][1] -= 1
                if len(self._open) > self.OPEN_DIRECTORIES:
                    self._evict()

    def _evict(self) -> None:
        """Close the least recently used descriptors no one holds, down to the limit (lock held)."""
        excess = len(self._open) - self.OPEN_DIRECTORIES
        if excess <= 0:
            return
        for path in [p for p, (_, users) in self._open.items() if not users][:excess]:
            os.close(self._open.pop(path)[0])

    def _close_all(self) -> None:
        with self._lock:
            for fd, _ in self._open.values():
                os.close(fd)
            self._open.clear()
            if self._root_fd >= 0:
                os.close(self._root_fd)
                self._root_fd = -1

    # -- entries ------------------------------------------------------------------------------
    def directory(self, entry: Entry) -> None:
        parent, name = _split(entry.path)
        pfd = self._acquire(parent)
        try:
            try:
                os.mkdir(name, 0o700, dir_fd=pfd)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=pfd)  # a file or symlink where the snapshot has a directory
                    os.mkdir(name, 0o700, dir_fd=pfd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            try:
                st = os.fstat(fd)
                os.fchmod(fd, 0o700 | self._mode(entry, 0o700))  # writable while we fill it; final in finish()
            except OSError:
                os.close(fd)
                raise
        except OSError as exc:
            raise errors.EntryFailed(f"{_printable(entry.path)}: cannot create directory: {exc.strerror}") from None
        finally:
            self._release(parent)
        with self._lock:
            self._dirs.append((entry, st.st_dev, st.st_ino))
            old = self._open.get(entry.path)
            if old is None or not old[1]:  # kept for the files that follow
                if old is not None:
                    os.close(old[0])
                self._open[entry.path] = [fd, 0]
                self._evict()
            else:
                os.close(fd)

    def _mode(self, entry: Entry, private: int) -> int:
        return private if self.private else entry.mode & 0o7777

    def file(self, entry: Entry, data: Iterable[bytes]) -> None:
        """Write a file; a new name is written in place, an existing one through a temporary file
        (of an unpredictable name) renamed over it, so a failure never leaves wrong content (or
        loses the old file). Runs of zeros are left as holes."""
        parent, name = _split(entry.path)
        pfd = self._acquire(parent)
        try:
            self._write(pfd, name, entry, data)
        finally:
            self._release(parent)

    def files(self, items: list[tuple[Entry, list[bytes]]]) -> list[errors.EntryFailed | None]:
        """Write a run of small files in one call without the GIL (engine/_seal ``write_files``:
        the system calls of ``_write`` for a new name); a name that exists already goes through
        ``_write`` (a temporary file renamed over it)."""
        out: list[errors.EntryFailed | None] = [None] * len(items)
        held: list[str] = []
        jobs: list[_FileJob] = []
        placed: list[tuple[int, int, str]] = []  # (item, parent descriptor, name) per job
        try:
            for i, (entry, data) in enumerate(items):
                try:
                    parent, name = _split(entry.path)
                    pfd = self._acquire(parent)
                except errors.EntryFailed as exc:
                    out[i] = exc
                    continue
                held.append(parent)
                owner = (entry.uid, entry.gid) if self.owners else (-1, -1)
                jobs.append((pfd, os.fsencode(name), *self._new_file_modes(entry), *owner, entry.mtime_ns, data))
                placed.append((i, pfd, name))
            for (i, pfd, name), (stage, code) in zip(placed, compiled.write_files(jobs), strict=True):
                entry, data = items[i]
                if stage == _WRITTEN:
                    continue
                if stage == _NOT_OWNER:
                    self._warn(f"{_printable(entry.path)}: cannot set owner: {os.strerror(code)}")
                elif stage == _NOT_CREATED and code == errno.EEXIST:
                    try:
                        self._write(pfd, name, entry, data)  # replaced through a temporary file
                    except errors.EntryFailed as exc:
                        out[i] = exc
                else:
                    out[i] = errors.EntryFailed(f"{_printable(entry.path)}: cannot write: {os.strerror(code)}")
        finally:
            for parent in held:
                self._release(parent)
        return out

    def _new_file_modes(self, entry: Entry) -> tuple[int, int]:
        """``(mode a new file is created with, mode set after its owner, or -1)``: a new file
        gets its final permission bits at once when the umask keeps them (one system call less
        per file); special bits are set after chown, which clears them."""
        mode = self._mode(entry, 0o600)
        return (mode, -1) if mode == mode & 0o777 & ~self._umask else (0o600, mode)

    def _write(self, pfd: int, name: str, entry: Entry, data: Iterable[bytes]) -> None:
        create, later = self._new_file_modes(entry)
        written = name
        try:
            fd = os.open(name, _NEW_FILE, create, dir_fd=pfd)
        except FileExistsError:
            try:
                in_the_way = stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode)
                if not in_the_way:
                    written = f".{name[:40]}.kubekeep-{secrets.token_hex(8)}"
                    fd = os.open(written, _NEW_FILE, 0o600, dir_fd=pfd)
                    later = self._mode(entry, 0o600)
            except OSError as exc:
                raise errors.EntryFailed(f"{_printable(entry.path)}: cannot write: {exc.strerror}") from None
            if in_the_way:
                raise errors.EntryFailed(
                    f"{_printable(entry.path)}: cannot restore the file: a directory is in the way"
                ) from None
        except OSError as exc:
            raise errors.EntryFailed(f"{_printable(entry.path)}: cannot write: {exc.strerror}") from None
        try:
            try:
                _write_sparse(fd, data)
                if self.owners:
                    self._chown(fd, entry)
                if later >= 0:
                    os.fchmod(fd, later)
                os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            finally:
                os.close(fd)
            if written is not name:
                os.replace(written, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except OSError as exc:
            _unlink_quietly(written, pfd)
            raise errors.EntryFailed(f"{_printable(entry.path)}: cannot write: {exc.strerror}") from None
        except BaseException:
            _unlink_quietly(written, pfd)
            raise

    def symlink(self, entry: Entry) -> None:
        parent, name = _split(entry.path)
        if not entry.target or "\0" in entry.target:
            raise errors.EntryFailed(f"{_printable(entry.path)}: a symlink target cannot be empty or hold NUL")
        pfd = self._acquire(parent)
        try:
            try:
                os.symlink(entry.target, name, dir_fd=pfd)
            except FileExistsError:
                if stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
                    raise errors.EntryFailed(
                        f"{_printable(entry.path)}: cannot create the symlink: a directory is in the way"
                    ) from None
                os.unlink(name, dir_fd=pfd)
                os.symlink(entry.target, name, dir_fd=pfd)
            self._symlink_metadata(pfd, name, entry)
        except OSError as exc:
            raise errors.EntryFailed(f"{_printable(entry.path)}: cannot create the symlink: {exc.strerror}") from None
        finally:
            self._release(parent)

    def _symlink_metadata(self, pfd: int, name: str, entry: Entry) -> None:
        """Owner and time of the symlink just made, through a descriptor of it (``O_PATH``, used by
        way of /proc): whoever can write the directory cannot have them land on another inode."""
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                raise errors.EntryFailed(f"{_printable(entry.path)}: replaced during the restore")
            at: _PathArgs = {"path": f"/proc/self/fd/{fd}"}
            if not os.path.exists("/proc/self/fd"):  # no /proc: by name, not following it
                at = {"path": name, "dir_fd": pfd, "follow_symlinks": False}
            if self.owners:
                try:
                    os.chown(uid=entry.uid, gid=entry.gid, **at)
                except OSError as exc:
                    self._warn(f"{_printable(entry.path)}: cannot set owner: {exc.strerror}")
            os.utime(ns=(entry.mtime_ns, entry.mtime_ns), **at)
        finally:
            os.close(fd)

    def _chown(self, fd: int, entry: Entry) -> None:
        try:
            os.fchown(fd, entry.uid, entry.gid)
        except OSError as exc:
            self._warn(f"{_printable(entry.path)}: cannot set owner: {exc.strerror}")

    def _warn(self, message: str) -> None:
        with self._lock:
            self._warnings.append(message)

    def finish(self) -> list[str]:
        try:
            for entry, dev, ino in reversed(self._dirs):  # deepest first: children change parents' mtimes
                try:
                    self._directory_metadata(entry, dev, ino)
                except (OSError, errors.EntryFailed) as exc:
                    why = exc.strerror if isinstance(exc, OSError) else str(exc)
                    self._warn(f"{_printable(entry.path)}: cannot set directory metadata: {why}")
        finally:
            self._close_all()
        return self._warnings

    def _directory_metadata(self, entry: Entry, dev: int, ino: int) -> None:
        parent, name = _split(entry.path)
        pfd = self._acquire(parent)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        finally:
            self._release(parent)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (dev, ino):
                raise errors.EntryFailed("it was replaced during the restore")
            if self.owners:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, self._mode(entry, 0o700))
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(fd)

    def close(self) -> None:
        self._close_all()


#: a file for engine/_seal ``write_files``: parent descriptor, name, creation mode, mode set
#: after the owner (or -1), uid and gid (or -1), mtime, content
_FileJob = tuple[int, bytes, int, int, int, int, int, list[bytes]]
#: ``write_files`` outcomes: written; not created (errno says why); written, owner not set
_WRITTEN, _NOT_CREATED, _NOT_OWNER = 0, 1, 3
_NOT_NAMES = frozenset(("", ".", ".."))
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: runs of zeros covering whole aligned blocks of this size are left as holes
_HOLE = 16 * 1024


def _split(path: str) -> tuple[str, str]:
    """``(parent, name)`` of a relative path; the parent's own parts are checked as it is opened."""
    parent, _, name = path.rpartition("/")
    if name in _NOT_NAMES or "\0" in name or path.startswith("/"):
        raise errors.EntryFailed(f"{_printable(path)}: not a path inside the destination")
    return parent, name


def _write_sparse(fd: int, data: Iterable[bytes]) -> None:
    """Write ``data`` to a new file ``fd``, seeking over the file's aligned ``_HOLE`` blocks that
    are all zeros (a new file reads zeros there; the file system need not allocate them), and
    set the length a hole at the end leaves short. Data with no zero block costs a few byte
    comparisons per block."""
    pos = end = 0  # where the next piece starts, and the end of what was written
    for piece in data:
        n = len(piece)
        if n < _HOLE:
            _write_all(fd, piece)
            pos = end = pos + n
            continue
        if type(piece) is not bytes:
            piece = bytes(piece)
        start = 0  # of what is still to be written
        at = -pos % _HOLE  # the first block boundary within the piece
        while at + _HOLE <= n:
            if not _zero_block(piece, at):
                at += _HOLE
                continue
            skip = at + _HOLE
            while skip + _HOLE <= n and _zero_block(piece, skip):
                skip += _HOLE
            if start < at:
                _write_all(fd, memoryview(piece)[start:at])
            os.lseek(fd, skip - at, os.SEEK_CUR)
            start = at = skip
        if start < n:
            _write_all(fd, memoryview(piece)[start:])
            end = pos + n
        pos += n
    if end < pos:
        os.ftruncate(fd, pos)


def _zero_block(piece: bytes, at: int) -> bool:
    return piece[at] == 0 and piece[at + _HOLE - 1] == 0 and piece.count(0, at, at + _HOLE) == _HOLE


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
