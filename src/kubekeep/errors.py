"""kubekeep's exception hierarchy.

Every failure a user can hit has a class and a one-line message that says what went wrong
and, where possible, what to do. The CLI prints ``str(exc)`` and exits with ``exc.exit_code``.

    KubekeepError
    ├── UsageError                 bad arguments, a malformed URI or selector
    ├── RepositoryError            the repository as a whole
    │   ├── RepositoryNotFound     nothing at that location
    │   ├── RepositoryExists       init over an existing repository
    │   ├── WrongPassword          no key opens with that password
    │   ├── RepositoryLocked       an exclusive lock is held elsewhere
    │   ├── LockLost               our lock went unrefreshed too long to write safely
    │   └── IntegrityError         a pack, blob or metadata object failed verification
    │       └── UnsafeTree         a tree names entries no directory can hold ('..', '/', twice)
    ├── SnapshotNotFound           no snapshot matches an id prefix or name
    ├── PathNotFound               no entry at that path inside a snapshot
    ├── StorageError               the backend failed (I/O, network, permissions)
    │   ├── ObjectNotFound         a named object is missing from the backend
    │   └── DeleteRefused          a deletion refused: a retention date not reached, or the
    │                              credentials may not delete (append-only)
    ├── ConnectorError             a source or destination failed
    │   ├── EntryFailed            one entry could not be written; the restore goes on
    │   ├── SourceUnreachable      the cluster, etcd or agent cannot be reached
    │   └── ApiError               the Kubernetes API refused a request (status, reason)
    └── DrillFailed                a restore drill ran and found the restore does not work
"""

from __future__ import annotations

import datetime


class KubekeepError(Exception):
    """Base class of every error kubekeep reports to a user. ``details`` are further lines
    (each failed entry of a restore, say) shown under the one-line message."""

    exit_code = 1
    details: tuple[str, ...] = ()


class UsageError(KubekeepError):
    exit_code = 2


class RepositoryError(KubekeepError):
    exit_code = 10


class RepositoryNotFound(RepositoryError):
    exit_code = 10


class RepositoryExists(RepositoryError):
    exit_code = 10


class WrongPassword(RepositoryError):
    exit_code = 12


class RepositoryLocked(RepositoryError):
    exit_code = 11


class LockLost(RepositoryError):
    """Our lock could not be refreshed for most of the stale window: another process may
    already consider it gone, so the command stops before it writes."""

    exit_code = 11


class IntegrityError(RepositoryError):
    exit_code = 13


class UnsafeTree(IntegrityError):
    """A tree that decrypted and verified but names entries no directory can hold (an empty
    name, ``.``, ``..``, ``/`` or NUL in a name, a name twice): written by a hostile or broken
    writer. Nothing below it is restored."""


class SnapshotNotFound(KubekeepError):
    exit_code = 14


class PathNotFound(KubekeepError):
    exit_code = 14


class StorageError(KubekeepError):
    exit_code = 15


class ObjectNotFound(StorageError):
    exit_code = 15


class DeleteRefused(StorageError):
    """A deletion was not done: the object's retention date (Object Lock) is not reached, or the
    storage refused it (append-only credentials). ``until`` is the retention date when known
    (an aware datetime). Prune and forget report these and leave the object for a later run."""

    def __init__(self, message: str, until: datetime.datetime | None = None) -> None:
        super().__init__(message)
        self.until = until


class ConnectorError(KubekeepError):
    exit_code = 16


class EntryFailed(ConnectorError):
    """One entry could not be written at the destination (a directory in the way, a full
    disk, a path that leaves the destination): the restore records it and goes on."""


class SourceUnreachable(ConnectorError):
    exit_code = 17


class ApiError(ConnectorError):
    """A Kubernetes API request failed with an HTTP status; ``reason`` is the API's
    machine-readable reason (``NotFound``, ``AlreadyExists``, ``Forbidden``, ...)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class DrillFailed(KubekeepError):
    """A restore drill ran to its end and the restore did not work: objects that could not be
    restored, workloads not ready in time, or restored objects that differ from the snapshot.
    The drill's report says which; the message is its one-line reason."""

    exit_code = 18
