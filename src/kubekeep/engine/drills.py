"""Drill records: the report of each restore drill (``kubekeep drill``, docs/drills.md).

A drill restores a snapshot into scratch namespaces, waits for its workloads, compares what
came back with the snapshot and times it. Its report is kept in the repository
(``drills/<id>``, sealed like a snapshot, docs/format.md "Drill records") so that the web UI
and anyone auditing restores can list them. The engine stores the report as given: the fields
are plain strings and figures filled in by ``kubekeep.api.restore_drills``. Records are written without
a lock (an append, like a run record); ``prune`` keeps the newest :data:`DRILLS_KEPT` per
snapshot source.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubekeep import __version__, errors
from kubekeep.engine import format as fmt
from kubekeep.engine import host, records
from kubekeep.engine.repository import Repository

PREFIX = "drills"
#: the version of the record's body (``v``)
DRILL_BODY_VERSION = 1
#: records kept per snapshot source by prune
DRILLS_KEPT = 50

SUCCESS, FAILURE = "success", "failure"

T = TypeVar("T")


@dataclass
class Difference:
    """A field of the snapshot's object that the restored object lacks or holds otherwise."""

    path: str
    op: str  # removed (the restored object lacks it), changed
    old: Any = None  # the snapshot's value
    new: Any = None  # the restored object's value


@dataclass
class DrillObject:
    """One object of the drill: what the restore did with it and how it compares."""

    api_version: str
    kind: str
    namespace: str  # in the snapshot ("" for cluster-scoped objects)
    name: str
    target_namespace: str = ""  # where it was restored
    action: str = ""  # the restore's: created, skipped, failed
    reason: str = ""
    #: compared: every field of the snapshot's object was checked against the live object
    compared: bool = False
    differences: list[Difference] = field(default_factory=list)


@dataclass
class DrillWorkload:
    """One workload waited for."""

    kind: str
    namespace: str  # the scratch namespace
    name: str
    state: str  # ready, waiting (not ready in time), failed
    detail: str = ""
    #: seconds from the end of the restore until it was ready
    ready_s: float | None = None


@dataclass
class DrillNamespace:
    """One namespace of the snapshot and its scratch copy."""

    source: str
    target: str
    objects: int = 0
    created: int = 0
    failed: int = 0
    differences: int = 0
    workloads: int = 0
    ready: bool = False
    #: seconds from the end of the restore until its last workload was ready
    ready_s: float | None = None
    #: the restore's seconds plus ready_s: the time to recover this namespace
    rto_s: float | None = None


@dataclass
class DrillCleanup:
    """What the drill removed afterwards (nothing with ``kept``)."""

    kept: bool = False
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class DrillRecord:
    """A drill's report, as stored."""

    #: the drill's own name: its scratch namespaces are ``<ns>-drill-<token>`` and carry it
    token: str
    snapshot: str
    snapshot_time: str = ""
    #: the snapshot's source URI (k8s://CONTEXT)
    source: str = ""
    #: where it was restored: k8s://CONTEXT, the API server's URL
    target: str = ""
    server: str = ""
    started: str = ""
    finished: str = ""
    outcome: str = SUCCESS
    #: the one-line reason of a failure
    reason: str = ""
    timeout_s: float = 0.0
    restore_s: float = 0.0
    ready_s: float | None = None
    rto_s: float | None = None
    total_s: float = 0.0
    namespaces: list[DrillNamespace] = field(default_factory=list)
    objects: list[DrillObject] = field(default_factory=list)
    workloads: list[DrillWorkload] = field(default_factory=list)
    cleanup: DrillCleanup = field(default_factory=DrillCleanup)
    #: warnings of the restore (e.g. data that could not be read)
    warnings: list[str] = field(default_factory=list)
    hostname: str = field(default_factory=host.hostname)
    username: str = field(default_factory=host.username)
    program: str = f"kubekeep {__version__}"
    id: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCESS

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def differences(self) -> int:
        return sum(len(o.differences) for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``--json``): the stored fields, the id and ``ok``."""
        return {"id": self.id, "ok": self.ok, **dataclasses.asdict(self)}

    def to_wire(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        del body["id"]
        return {"v": DRILL_BODY_VERSION, **body}

    @classmethod
    def from_wire(cls, body: object, drill_id: str) -> DrillRecord:
        """A record from its stored body: authenticated, but checked field by field all the same."""
        if not isinstance(body, dict) or body.get("v") != DRILL_BODY_VERSION:
            raise errors.IntegrityError(f"drill record {drill_id[:8]}: not a version-{DRILL_BODY_VERSION} record")
        try:
            record = _build(cls, body)
        except (TypeError, ValueError) as exc:
            raise errors.IntegrityError(f"drill record {drill_id[:8]}: malformed ({exc})") from None
        record.id = drill_id
        return record


def _build(cls: type[T], body: object) -> T:
    """``cls`` from a msgpack map: known keys only, each of its declared type (unknown keys are
    a later version's and are ignored; missing ones take their defaults)."""
    if not isinstance(body, dict):
        raise TypeError(f"{cls.__name__} is not a map")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "id" or f.name not in body:
            continue
        values[f.name] = _value(hints[f.name], body[f.name], f.name)
    return cls(**values)


def _value(hint: Any, value: object, name: str) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
        inner = next(o for o in typing.get_args(hint) if o is not type(None))
        return _value(inner, value, name)
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"{name} is not a list")
        (item,) = typing.get_args(hint)
        return [_value(item, v, name) for v in value]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)  # type: ignore[arg-type]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} is not a number")
        return float(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} is not a boolean")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} is not an integer")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} is not a string")
        return value
    raise TypeError(f"{name}: unexpected type {hint}")


def save(repo: Repository, record: DrillRecord) -> str:
    record.id = repo.save_object(PREFIX, record.to_wire(), fmt.AAD_DRILL)
    return record.id


def _load(repo: Repository, name: str) -> DrillRecord:
    return records.load(repo, name, fmt.AAD_DRILL, "drill record", DrillRecord.from_wire)


def load_all(repo: Repository) -> tuple[list[DrillRecord], list[str]]:
    """Every readable record, oldest first, and a line for each one that is not."""
    found, damaged = records.load_all(repo, PREFIX, fmt.AAD_DRILL, "drill record", DrillRecord.from_wire)
    found.sort(key=lambda r: (r.started, r.id))
    return found, damaged


def find(repo: Repository, ref: str) -> DrillRecord:
    """The record with id (or unique id prefix) ``ref``."""
    ref = ref.strip().lower()
    if not ref or any(c not in "0123456789abcdef" for c in ref):
        raise errors.SnapshotNotFound(f"no drill record {ref!r}: expected a hex id prefix")
    names = [o.name for o in repo.backend.list(f"{PREFIX}/") if o.name.split("/", 1)[1].startswith(ref)]
    if not names:
        raise errors.SnapshotNotFound(f"no drill record {ref}")
    if len(names) > 1:
        raise errors.UsageError(f"drill id prefix {ref} is ambiguous ({len(names)} records)")
    try:
        return _load(repo, names[0])
    except errors.ObjectNotFound:
        raise errors.SnapshotNotFound(f"no drill record {ref}") from None


def prune(repo: Repository, *, keep: int = DRILLS_KEPT, dry_run: bool = False) -> int:
    """Delete all but the newest ``keep`` records of each snapshot source; returns how many."""
    found, _ = load_all(repo)
    return records.prune(repo, PREFIX, found, lambda r: r.source, keep=keep, dry_run=dry_run)
