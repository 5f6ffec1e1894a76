"""The storage backend interface: a flat namespace of immutable named objects.

Backends know nothing of snapshots, packs or encryption. Names are slash-separated
relative paths such as ``config``, ``keys/<id>``, ``data/ab/<id>``, ``index/<id>``,
``snapshots/<id>`` and ``locks/<id>``. Every implementation passes
``tests/storage/test_backend_contract.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int


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
    """

    #: the location as the user gave it, e.g. ``/srv/repo`` or ``s3://bucket/prefix``
    location: str

    @abc.abstractmethod
    def create(self) -> None:
        """Prepare an empty location; raise ``errors.RepositoryExists`` if it holds a ``config``."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes, or ``length`` bytes from ``offset``."""

    @abc.abstractmethod
    def store(self, name: str, data: bytes | memoryview, *, exclusive: bool = False) -> None: ...

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove ``name``; deleting a missing object is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix`` (e.g. ``"data/"``), in no set order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
