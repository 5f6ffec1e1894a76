"""Whether workloads are ready, and waiting until they are (restore drills, docs/drills.md).

Ready means what a user of the workload would call up: a Deployment, ReplicaSet or
ReplicationController with every desired replica available (and the newest spec observed), a
StatefulSet with every replica ready, a DaemonSet ready on every node it is scheduled to, a Job
complete, a Pod ready (or succeeded). A Job that failed or a Pod that failed cannot become
ready: the wait gives up on them at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubekeep import errors
from kubekeep.kube import waiting
from kubekeep.kube.requesting import Session, api_path

#: (group, resource) -> kind of the workloads whose readiness is known
WORKLOADS: dict[tuple[str, str], str] = {
    ("apps", "deployments"): "Deployment",
    ("apps", "statefulsets"): "StatefulSet",
    ("apps", "daemonsets"): "DaemonSet",
    ("apps", "replicasets"): "ReplicaSet",
    ("", "replicationcontrollers"): "ReplicationController",
    ("batch", "jobs"): "Job",
    ("", "pods"): "Pod",
}

READY, WAITING, FAILED = "ready", "waiting", "failed"
#: the detail of a Job that finished and was deleted by its ``ttlSecondsAfterFinished``
REMOVED_BY_TTL = "finished and deleted by its ttlSecondsAfterFinished"


@dataclass(frozen=True)
class State:
    """A workload's state now: ``ready``, ``waiting`` or ``failed``, and why in a few words."""

    state: str
    detail: str = ""


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    items = (obj.get("status") or {}).get("conditions") or []
    return {str(c.get("type")): c for c in items if isinstance(c, Mapping)}


def _observed(obj: Mapping[str, Any]) -> bool:
    generation = _int((obj.get("metadata") or {}).get("generation"))
    return _int((obj.get("status") or {}).get("observedGeneration")) >= generation


def state_of(group: str, resource: str, obj: Mapping[str, Any]) -> State:
    """The readiness of a live workload object (``WORKLOADS``)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if not isinstance(spec, Mapping) or not isinstance(status, Mapping):
        return State(WAITING, "no status yet")
    kind = WORKLOADS.get((group, resource))
    if kind in ("Deployment", "ReplicaSet", "ReplicationController", "StatefulSet"):
        want = _int(spec.get("replicas"), 1)
        field_ = "readyReplicas" if kind == "StatefulSet" else "availableReplicas"
        have = _int(status.get(field_))
        if kind == "Deployment":
            progressing = _conditions(obj).get("Progressing") or {}
            if progressing.get("reason") == "ProgressDeadlineExceeded":
                return State(FAILED, f"progress deadline exceeded ({have}/{want} available)")
        word = "ready" if kind == "StatefulSet" else "available"
        if have >= want and _observed(obj) and (kind != "Deployment" or _int(status.get("updatedReplicas")) >= want):
            return State(READY, f"{have}/{want} {word}")
        return State(WAITING, f"{have}/{want} {word}")
    if kind == "DaemonSet":
        want = _int(status.get("desiredNumberScheduled"))
        have = _int(status.get("numberReady"))
        if _observed(obj) and "desiredNumberScheduled" in status and have >= want:
            return State(READY, f"{have}/{want} ready")
        return State(WAITING, f"{have}/{want} ready")
    if kind == "Job":
        conditions = _conditions(obj)
        if (conditions.get("Complete") or {}).get("status") == "True":
            return State(READY, "complete")
        failed = conditions.get("Failed") or {}
        if failed.get("status") == "True":
            return State(FAILED, f"failed: {failed.get('reason') or failed.get('message') or 'no reason given'}")
        if spec.get("suspend") is True:
            return State(WAITING, "suspended")
        return State(WAITING, f"{_int(status.get('succeeded'))} succeeded, {_int(status.get('active'))} active")
    if kind == "Pod":
        phase = str(status.get("phase") or "Pending")
        if phase == "Succeeded":
            return State(READY, "succeeded")
        if phase == "Failed":
            return State(FAILED, f"failed: {status.get('reason') or status.get('message') or 'no reason given'}")
        if (_conditions(obj).get("Ready") or {}).get("status") == "True":
            return State(READY, "ready")
        return State(WAITING, phase.lower())
    return State(READY, "nothing to wait for")


@dataclass(frozen=True)
class Target:
    """One workload to wait for."""

    group: str
    version: str
    resource: str
    namespace: str
    name: str

    @property
    def kind(self) -> str:
        return WORKLOADS.get((self.group, self.resource), self.resource)


@dataclass
class Outcome:
    """How waiting for one workload ended: its last state, and when it became ready (seconds
    from the start of the wait), if it did."""

    target: Target
    state: State = field(default_factory=lambda: State(WAITING, "not seen yet"))
    ready_after_s: float | None = None
    #: the object as last seen
    last: Mapping[str, Any] | None = None


def _gone(resource: str, last: Mapping[str, Any] | None) -> State:
    """The state of a workload that was there and is not any more."""
    if last is None:
        return State(WAITING, "not found")
    spec = last.get("spec") or {}
    if resource == "jobs" and isinstance(spec, Mapping) and spec.get("ttlSecondsAfterFinished") is not None:
        return State(READY, REMOVED_BY_TTL)  # it can only have gone once finished
    return State(FAILED, "deleted while waiting")


class _TimedOut(Exception):
    pass


def wait_ready(
    session: Session,
    targets: Iterable[Target],
    *,
    timeout: float,
    progress: Callable[[int, int, float], None] | None = None,
) -> list[Outcome]:
    """Wait until every target is ready or has failed, at most ``timeout`` seconds; one list
    request per namespace and resource each round. Returns each target's outcome (those still
    waiting when time ran out say so in their state). ``progress(ready, total, elapsed)``
    hears how far it got, every few seconds."""
    outcomes = {t: Outcome(t) for t in targets}
    started = time.monotonic()
    collections = sorted({(t.group, t.version, t.resource, t.namespace) for t in outcomes})

    def check() -> bool | None:
        elapsed = time.monotonic() - started
        for group, version, resource, namespace in collections:
            pending = {
                t.name: o
                for t, o in outcomes.items()
                if (t.group, t.version, t.resource, t.namespace) == (group, version, resource, namespace)
                and o.state.state == WAITING
            }
            if not pending:
                continue
            listing = session.get_or_none(api_path(group, version, resource, namespace=namespace))
            items = listing.get("items") if isinstance(listing, dict) else None
            items = items if isinstance(items, list) else []
            seen = {}
            for item in items:
                name = (item.get("metadata") or {}).get("name") if isinstance(item, Mapping) else None
                if isinstance(name, str):
                    seen[name] = item
            for name, outcome in pending.items():
                live = seen.get(name)
                outcome.state = state_of(group, resource, live) if live is not None else _gone(resource, outcome.last)
                outcome.last = live if live is not None else outcome.last
                if outcome.state.state == READY:
                    outcome.ready_after_s = round(elapsed, 3)
        return True if all(o.state.state != WAITING for o in outcomes.values()) else None

    def report(elapsed: float) -> None:
        if progress is not None:
            ready = sum(1 for o in outcomes.values() if o.state.state == READY)
            progress(ready, len(outcomes), elapsed)

    if not outcomes:
        return []
    try:
        waiting.poll(check, timeout=timeout, timed_out=_TimedOut, progress=report)
    except _TimedOut:
        pass
    except errors.ApiError as exc:
        raise errors.ConnectorError(f"cannot read the restored workloads: {exc}") from None
    return list(outcomes.values())
