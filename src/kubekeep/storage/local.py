"""A repository in a local (or mounted) directory.

Each object is a file under the root; ``data/ab/<id>`` lives at ``ROOT/data/ab/<id>``.
Writes go to a ``.tmp-<random>`` file in the target directory, are fsynced, then renamed
(or hard-linked, for exclusive stores) into place and the directory is fsynced, so a crash
never leaves a partial object under its final name. Leftover temp files are invisible to
``list`` and removed by ``cleanup_temp``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from kubekeep.errors import ObjectNotFound, RepositoryExists, RepositoryNotFound, StorageError
from kubekeep.storage.base import Backend, LockSupport, ObjectInfo, Retention

TEMP_PREFIX = ".tmp-"
#: objects are read-only once written (umask still applies), directories private
FILE_MODE = 0o444
DIR_MODE = 0o700
_LINK_UNSUPPORTED = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP}


def validate_name(name: str) -> None:
    """Reject names that are empty, absolute, escape the root or collide with temp files."""
    parts = name.split("/")
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or any(p in ("", ".", "..") for p in parts)
        or parts[-1].startswith(TEMP_PREFIX)
    ):
        raise StorageError(f"invalid object name {name!r}")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class LocalBackend(Backend):
    """Objects as files below ``path``; safe to use from several threads."""

    #: a local write is bound by the disk, not by latency: a second pack in flight bought
    #: nothing on the engine benchmark and held 16 MiB more (bench/README.md)
    parallel_stores = 1

    def __init__(self, path: str | os.PathLike[str], *, location: str | None = None) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
        self.location = location if location is not None else os.fspath(path)
        self._link_lock = threading.Lock()
        self._link_supported = True

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    # -- helpers -----------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        validate_name(name)
        return self.root.joinpath(*name.split("/"))

    def _missing_root(self) -> RepositoryNotFound | None:
        if self.root.is_dir():
            return None
        return RepositoryNotFound(f"no repository at {self.root}: directory does not exist")

    def _error(self, action: str, path: Path, exc: OSError) -> StorageError | RepositoryNotFound:
        if isinstance(exc, FileNotFoundError) and (missing := self._missing_root()):
            return missing
        return StorageError(f"cannot {action} {path}: {_reason(exc)}")

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _make_parents(self, directory: Path) -> None:
        """Create ``directory`` and missing parents below the root (never the root itself)."""
        if directory.is_dir():
            return
        if missing := self._missing_root():
            raise missing
        rel = directory.relative_to(self.root)
        current = self.root
        for part in rel.parts:
            parent, current = current, current / part
            try:
                os.mkdir(current, DIR_MODE)
                self._fsync_dir(parent)
            except FileExistsError:
                if not current.is_dir():
                    raise StorageError(f"cannot create directory {current}: a file is in the way") from None
            except OSError as exc:
                raise self._error("create directory", current, exc) from exc

    # -- Backend -----------------------------------------------------------------------------

    def lock_support(self) -> LockSupport:
        return LockSupport(
            False,
            False,
            why_not=(
                "a local directory cannot hold retention dates: the user who writes the files can always "
                "delete them; use chattr +a/+i, ZFS or btrfs snapshots or a write-once mount instead "
                "(docs/immutability.md)"
            ),
        )

    def create(self) -> None:
        config = self.root / "config"
        if config.exists():
            raise RepositoryExists(f"a repository already exists at {self.root}")
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"cannot create repository at {self.root}: not a directory")
        try:
            self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            self._fsync_dir(self.root.parent)
        except OSError as exc:
            raise StorageError(f"cannot create repository at {self.root}: {_reason(exc)}") from exc

    def exists(self, name: str) -> bool:
        path = self._path(name)
        try:
            return stat.S_ISREG(os.stat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise self._error("access", path, exc) from exc

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range offset={offset} length={length}")
        path = self._path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError) as exc:
            if missing := self._missing_root():
                raise missing from exc
            raise ObjectNotFound(f"object {name} not found in {self.root}") from exc
        except OSError as exc:
            raise self._error("read", path, exc) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(f"object {name} not found in {self.root}")
            want = max(st.st_size - offset, 0) if length is None else length
            chunks: list[bytes] = []
            pos, remaining = offset, want
            while remaining > 0:
                chunk = os.pread(fd, remaining, pos)
                if not chunk:
                    break
                chunks.append(chunk)
                pos += len(chunk)
                remaining -= len(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except OSError as exc:
            raise self._error("read", path, exc) from exc
        finally:
            os.close(fd)

    def store(
        self, name: str, data: bytes | memoryview, *, exclusive: bool = False, retention: Retention | None = None
    ) -> None:
        if retention is not None:
            raise StorageError(f"{self.root}: a local directory cannot hold retention dates (see docs/immutability.md)")
        final = self._path(name)
        directory = final.parent
        self._make_parents(directory)
        tmp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise self._error("write", final, exc) from exc
        try:
            try:
                view = memoryview(data).cast("B")
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                self._place_exclusive(tmp, final, name)
            else:
                os.replace(tmp, final)
            self._fsync_dir(directory)
        except OSError as exc:
            raise self._error("write", final, exc) from exc
        finally:
            # gone after a rename; after a link or a failure, best effort (see cleanup_temp)
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _place_exclusive(self, tmp: Path, final: Path, name: str) -> None:
        """Move ``tmp`` to ``final`` unless ``final`` exists (``tmp`` stays for the caller)."""
        if self._link_supported:
            try:
                os.link(tmp, final)
                return
            except FileExistsError:
                raise StorageError(f"object {name} already exists in {self.root}") from None
            except OSError as exc:
                if exc.errno not in _LINK_UNSUPPORTED or final.exists():
                    raise
                self._link_supported = False  # e.g. a filesystem without hard links
        # Fallback: atomic within this process only.
        with self._link_lock:
            if os.path.lexists(final):
                raise StorageError(f"object {name} already exists in {self.root}")
            os.rename(tmp, final)

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            if missing := self._missing_root():
                raise missing from None
            return
        except OSError as exc:
            raise self._error("delete", path, exc) from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        if missing := self._missing_root():
            raise missing
        base_rel = prefix.rpartition("/")[0]
        if base_rel:
            validate_name(base_rel)
        yield from (info for info in self._walk(base_rel, prefix) if info.name.startswith(prefix))

    def _walk(self, rel: str, prefix: str) -> Iterator[ObjectInfo]:
        directory = self.root.joinpath(*rel.split("/")) if rel else self.root
        try:
            with os.scandir(directory) as entries:
                items = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._error("list", directory, exc) from exc
        for entry in items:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            name = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_dir():
                    sub = name + "/"
                    if sub.startswith(prefix) or prefix.startswith(sub):
                        yield from self._walk(name, prefix)
                elif entry.is_file():
                    yield ObjectInfo(name, entry.stat().st_size)
            except FileNotFoundError:
                continue  # deleted while listing
            except OSError as exc:
                raise self._error("list", Path(entry.path), exc) from exc

    # -- maintenance -------------------------------------------------------------------------

    def cleanup_temp(self, older_than_s: float = 3600.0) -> int:
        """Remove temp files of interrupted stores older than ``older_than_s``; return the count."""
        if missing := self._missing_root():
            raise missing
        cutoff = time.time() - older_than_s
        removed = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for fname in files:
                if not fname.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(dirpath, fname)
                try:
                    if os.lstat(path).st_mtime <= cutoff:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise StorageError(f"cannot remove temp file {path}: {_reason(exc)}") from exc
        return removed
