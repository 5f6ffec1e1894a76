"""The storage backend interface: a flat namespace of immutable named objects.

Backends know nothing of snapshots, packs or encryption. Names are slash-separated
relative paths such as ``config``, ``keys/<id>``, ``data/ab/<id>``, ``index/<id>``,
``snapshots/<id>`` and ``locks/<id>``. Every implementation passes
``tests/storage/test_backend_contract.py``.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kubekeep.errors import StorageError

#: Object Lock retention modes (S3's GOVERNANCE and COMPLIANCE)
RETENTION_MODES = ("governance", "compliance")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class Retention:
    """A retention date on one object: it cannot be deleted or overwritten before ``until``
    (an aware UTC datetime). ``mode`` is ``governance`` or ``compliance``."""

    mode: str
    until: dt.datetime


@dataclass(frozen=True, slots=True)
class LockSupport:
    """Whether a location can hold write-once objects with retention dates.

    ``object_lock``: the bucket has Object Lock enabled (and so versioning); ``default_retention``
    describes a default retention rule when one is set (it would lock every object written,
    repository lock files included); ``why_not`` says, for a backend that has no such
    mechanism, why (one sentence)."""

    object_lock: bool
    versioning: bool
    default_retention: str | None = None
    why_not: str | None = None


class Backend(abc.ABC):
    """A place that stores whole objects by name.

    Contract:
    - ``store`` is atomic: a reader sees either the complete object or no object; a process
      killed during ``store`` leaves no partial object under ``name``.
    - ``store`` with ``exclusive=True`` fails with ``errors.StorageError`` if ``name`` exists
      (best effort on object stores without conditional writes).
    - ``load`` of a missing name raises ``errors.ObjectNotFound``; all other failures raise
      ``errors.StorageError`` with a one-line message.
    - Backends are safe to call from several threads at once.
    - Retention (Object Lock) is optional: a backend without it answers :meth:`lock_support`
      with ``why_not`` set, and refuses ``store(..., retention=...)``, :meth:`retention` and
      :meth:`extend_retention` with ``errors.StorageError``. A backend with it refuses to delete an
      object before its retention date with ``errors.DeleteRefused``.
    """

    #: the location as the user gave it, e.g. ``/srv/repo`` or ``s3://bucket/prefix``
    location: str
    #: how many ``store`` calls of large objects a writer should keep going at once: enough to
    #: hide a network's latency, few enough that the objects held meanwhile stay small
    parallel_stores: int = 4
    #: None where a deletion frees its space at once; else one sentence on when the space
    #: comes back (a registry's garbage collection), which ``prune`` reports
    deferred_reclaim: str | None = None

    @abc.abstractmethod
    def create(self) -> None:
        """Prepare an empty location; raise ``errors.RepositoryExists`` if it holds a ``config``."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes, or ``length`` bytes from ``offset``."""

    @abc.abstractmethod
    def store(
        self, name: str, data: bytes | memoryview, *, exclusive: bool = False, retention: Retention | None = None
    ) -> None:
        """Write ``name``; with ``retention``, the object carries that retention date.

        ``data`` may be a view of a buffer its caller reuses once this returns: a backend
        keeps a copy, never the view."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove ``name``; deleting a missing object is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix`` (e.g. ``"data/"``), in no set order."""

    def lock_support(self) -> LockSupport:
        """Whether this location can hold retention dates (one or two requests)."""
        return LockSupport(False, False, why_not=f"{type(self).__name__} has no retention mechanism")

    def retention(self, name: str) -> Retention | None:
        """The retention date of the object ``name`` (the version kubekeep reads), None if it has none."""
        raise StorageError(f"{self.location} cannot hold retention dates (see docs/immutability.md)")

    def extend_retention(self, name: str, retention: Retention) -> None:
        """Set the retention date of ``name`` to ``retention`` (never shorter than it was)."""
        raise StorageError(f"{self.location} cannot hold retention dates (see docs/immutability.md)")

    def overwritten(self) -> Sequence[str]:
        """Names written over after they were first stored, where the location keeps every
        version (S3 with Object Lock): reads ignore the newer versions, ``check`` reports them.
        Locations that keep one version have none to report."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class WrappingBackend(Backend):
    """A backend that passes everything to ``inner``: the base of the engine's wrappers (a held
    lock's guard, Object Lock's dates), which override only what they change. Extras a backend
    has beyond this interface (ranged reads, ...) are reached through ``__getattr__``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.location = inner.location
        self.parallel_stores = inner.parallel_stores
        self.deferred_reclaim = inner.deferred_reclaim

    def create(self) -> None:
        self.inner.create()

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.load(name, offset, length)

    def store(
        self, name: str, data: bytes | memoryview, *, exclusive: bool = False, retention: Retention | None = None
    ) -> None:
        if retention is None:  # backends (and test doubles) written before retention dates
            self.inner.store(name, data, exclusive=exclusive)
        else:
            self.inner.store(name, data, exclusive=exclusive, retention=retention)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def lock_support(self) -> LockSupport:
        return self.inner.lock_support()

    def retention(self, name: str) -> Retention | None:
        return self.inner.retention(name)

    def extend_retention(self, name: str, retention: Retention) -> None:
        self.inner.extend_retention(name, retention)

    def overwritten(self) -> Sequence[str]:
        return self.inner.overwritten()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)
