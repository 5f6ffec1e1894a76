"""A local cache of repository objects that are small and read often.

Holds index files, snapshot files and tree packs, by their storage name, under
``<cache root>/<repository id>/``. Every cached object is named by the hash of its content and
authenticated on use, so a stale or damaged cache costs time, never correctness; deleting the
cache directory only makes the next run slower.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def default_cache_root() -> Path:
    env = os.environ.get("KUBEKEEP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kubekeep"


class Cache:
    def __init__(self, root: Path, repo_id: str) -> None:
        self.dir = root / repo_id
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tag = self.dir.parent / "CACHEDIR.TAG"
        if not tag.exists():
            tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n# kubekeep cache; safe to delete.\n")

    def _path(self, name: str) -> Path:
        return self.dir / name

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except OSError:
            return None

    def get_range(self, name: str, offset: int, length: int) -> bytes | None:
        """``length`` bytes at ``offset`` of a cached object, or None if absent or too short."""
        try:
            with open(self._path(name), "rb", buffering=0) as f:
                data = os.pread(f.fileno(), length, offset)
        except OSError:
            return None
        return data if len(data) == length else None

    def put(self, name: str, data: bytes | memoryview) -> None:
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs time

    def discard(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except OSError:
            pass

    def names(self, prefix: str) -> set[str]:
        base = self.dir / prefix
        if not base.is_dir():
            return set()
        out: set[str] = set()
        for dirpath, _, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.dir).as_posix()
            out.update(f"{rel}/{f}" for f in files if not f.startswith(".tmp-"))
        return out

    def retain(self, prefix: str, keep: set[str]) -> None:
        """Drop cached objects under ``prefix`` that are no longer in the repository."""
        for name in self.names(prefix) - keep:
            self.discard(name)
