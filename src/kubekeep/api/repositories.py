"""Opening and creating repositories, their passwords and keys, locks left behind."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubekeep import errors
from kubekeep.api.object_lock import ObjectLockOptions
from kubekeep.engine.locks import remove_stale_locks
from kubekeep.engine.repository import KeyListing, Repository
from kubekeep.storage import open_backend


@dataclass
class RepositoryOptions:
    """Where a repository is and how to reach it."""

    location: str
    password: str
    cache_dir: Path | None = None
    no_cache: bool = False
    backend_options: dict[str, Any] = field(default_factory=dict)


def read_password(password: str | None = None, password_file: str | None = None) -> str | None:
    """The password from an explicit value, a file, ``KUBEKEEP_PASSWORD`` or
    ``KUBEKEEP_PASSWORD_FILE``, in that order; None if none is given."""
    if password:
        return password
    path = password_file or os.environ.get("KUBEKEEP_PASSWORD_FILE")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise errors.UsageError(f"cannot read password file {path}: {exc.strerror}") from None
        pw = text.splitlines()[0] if text else ""
        if not pw:
            raise errors.UsageError(f"password file {path} is empty")
        return pw
    return os.environ.get("KUBEKEEP_PASSWORD") or None


def open_repository(opts: RepositoryOptions) -> Repository:
    backend = open_backend(opts.location, **opts.backend_options)
    return Repository.open(backend, opts.password, cache_root=opts.cache_dir, no_cache=opts.no_cache)


def init_repository(
    opts: RepositoryOptions, *, kdf: dict[str, int | str] | None = None, object_lock: ObjectLockOptions | None = None
) -> Repository:
    """Create a repository; with ``object_lock``, one whose objects carry retention dates
    (refused, with one line, where the location cannot hold them: docs/immutability.md)."""
    policy = object_lock.policy() if object_lock is not None else None
    backend = open_backend(opts.location, **opts.backend_options)
    return Repository.init(
        backend, opts.password, kdf=kdf, cache_root=opts.cache_dir, no_cache=opts.no_cache, object_lock=policy
    )


def refresh(repo: Repository) -> bool:
    """Reload the index if the repository's index files are not those ``repo`` last read (other
    processes backed up or pruned since), so that a long-lived reader such as the web UI can
    read the snapshots later backups add; True if it reloaded."""
    names = {o.name for o in repo.backend.list("index/")}
    if names == repo.index_files():
        return False
    repo.reload_index()
    return True


def unlock(repo: Repository, *, remove_all: bool = False) -> int:
    return remove_stale_locks(repo, everything=remove_all)


def list_keys(repo: Repository) -> list[KeyListing]:
    """Every key (password) of the repository: id, whether it is the one in use, who made it and
    when; ``damaged`` says why one is not usable."""
    return repo.list_keys()


def add_key(repo: Repository, password: str) -> str:
    """Wrap the repository's master key with one more password; returns the new key's id."""
    return repo.add_key(password)


def remove_key(repo: Repository, key_id: str) -> None:
    """Remove the key ``key_id`` (a unique prefix), never the one in use."""
    repo.remove_key(key_id)
