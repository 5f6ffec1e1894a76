"""The cluster at the time of a snapshot: nodes and their conditions, and per namespace the
workloads with desired/ready replicas, pods by phase and claims with their binding.

``SummaryBuilder`` is fed objects of ``RESOURCES`` (and, for the object counts, every node's
attrs); it reads only status and spec fields, so a summary of a 10,000-object snapshot reads
the few hundred objects it needs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

#: (group, resource) of the objects a summary reads.
RESOURCES = frozenset(
    {
        ("", "nodes"),
        ("", "namespaces"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("", "pods"),
        ("", "persistentvolumeclaims"),
    }
)
_PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


@dataclass
class NodeState:
    name: str
    ready: str  # "True", "False" or "Unknown" (the Ready condition)
    problems: list[str] = field(default_factory=list)
    unschedulable: bool = False
    roles: list[str] = field(default_factory=list)
    version: str = ""
    cpu: str = ""
    memory: str = ""


@dataclass
class WorkloadState:
    kind: str
    name: str
    desired: int
    ready: int
    available: int
    updated: int

    @property
    def healthy(self) -> bool:
        return self.ready >= self.desired and self.available >= self.desired


@dataclass
class ClaimState:
    name: str
    phase: str
    volume: str
    storage_class: str
    capacity: str


@dataclass
class NamespaceState:
    name: str
    phase: str = ""  # "" when the Namespace object is not in the snapshot
    objects: int = 0
    workloads: list[WorkloadState] = field(default_factory=list)
    pods: dict[str, int] = field(default_factory=dict)  # phase -> count
    pods_not_ready: list[str] = field(default_factory=list)  # Running but not Ready, or Terminating
    claims: list[ClaimState] = field(default_factory=list)

    @property
    def unhealthy_workloads(self) -> list[WorkloadState]:
        return [w for w in self.workloads if not w.healthy]


class SummaryInfo(TypedDict, total=False):
    """Which snapshot a summary is of, and of which cluster."""

    snapshot: str
    short_id: str
    time: str
    source: str
    cluster: str
    server: str
    version: str
    objects: int | None


@dataclass
class ClusterSummary:
    nodes: list[NodeState] = field(default_factory=list)
    namespaces: dict[str, NamespaceState] = field(default_factory=dict)
    info: SummaryInfo = field(default_factory=SummaryInfo)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for ns, state in zip(d["namespaces"].values(), self.namespaces.values(), strict=True):
            for w, workload in zip(ns["workloads"], state.workloads, strict=True):
                w["healthy"] = workload.healthy
        return d


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    cond: dict[str, Any]  # a condition is an object (the API server's schema)
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


class SummaryBuilder:
    """Collects objects and counts, then ``build()``s the summary."""

    def __init__(self, namespaces: set[str] | None = None) -> None:
        self.only = namespaces
        self.summary = ClusterSummary()

    def _ns(self, name: str) -> NamespaceState | None:
        if self.only is not None and name not in self.only:
            return None
        state = self.summary.namespaces.get(name)
        if state is None:
            state = self.summary.namespaces[name] = NamespaceState(name)
        return state

    def count(self, namespace: str) -> None:
        """One more object in ``namespace``."""
        state = self._ns(namespace)
        if state is not None:
            state.objects += 1

    def add(self, group: str, resource: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if (group, resource) == ("", "nodes"):
            self.summary.nodes.append(_node(obj))
            return
        if (group, resource) == ("", "namespaces"):
            state = self._ns(name)
            if state is not None:
                state.phase = (obj.get("status") or {}).get("phase", "")
            return
        state = self._ns(meta.get("namespace", ""))
        if state is None:
            return
        status = obj.get("status") or {}
        spec = obj.get("spec") or {}
        if group == "apps" and resource in ("deployments", "statefulsets"):
            desired = _int(spec.get("replicas"), 1)
            state.workloads.append(
                WorkloadState(
                    obj.get("kind", ""),
                    name,
                    desired,
                    _int(status.get("readyReplicas")),
                    _int(status.get("availableReplicas"), _int(status.get("readyReplicas"))),
                    _int(status.get("updatedReplicas")),
                )
            )
        elif (group, resource) == ("apps", "daemonsets"):
            state.workloads.append(
                WorkloadState(
                    "DaemonSet",
                    name,
                    _int(status.get("desiredNumberScheduled")),
                    _int(status.get("numberReady")),
                    _int(status.get("numberAvailable")),
                    _int(status.get("updatedNumberScheduled")),
                )
            )
        elif (group, resource) == ("", "pods"):
            phase = status.get("phase") or "Unknown"
            state.pods[phase] = state.pods.get(phase, 0) + 1
            ready = _condition(obj, "Ready")
            if meta.get("deletionTimestamp"):
                state.pods_not_ready.append(f"{name} (terminating)")
            elif phase == "Running" and (ready is None or ready.get("status") != "True"):
                state.pods_not_ready.append(name)
        elif (group, resource) == ("", "persistentvolumeclaims"):
            requested = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "")
            state.claims.append(
                ClaimState(
                    name,
                    status.get("phase", ""),
                    spec.get("volumeName", ""),
                    spec.get("storageClassName") or "",
                    (status.get("capacity") or {}).get("storage", requested),
                )
            )

    def build(self) -> ClusterSummary:
        s = self.summary
        s.nodes.sort(key=lambda n: n.name)
        s.namespaces = dict(sorted(s.namespaces.items()))
        for state in s.namespaces.values():
            state.workloads.sort(key=lambda w: (w.kind, w.name))
            state.claims.sort(key=lambda c: c.name)
            state.pods = dict(sorted(state.pods.items()))
            state.pods_not_ready.sort()
        return s


def _node(obj: dict[str, Any]) -> NodeState:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    ready = _condition(obj, "Ready")
    problems = [
        c["type"] for c in status.get("conditions") or [] if c.get("type") in _PRESSURE and c.get("status") == "True"
    ]
    if ready is not None and ready.get("status") != "True" and ready.get("reason"):
        problems.insert(0, f"NotReady: {ready['reason']}")
    roles = sorted(k.split("/", 1)[1] for k in (meta.get("labels") or {}) if k.startswith("node-role.kubernetes.io/"))
    allocatable = status.get("allocatable") or {}
    return NodeState(
        meta.get("name", ""),
        ready.get("status", "Unknown") if ready else "Unknown",
        problems,
        bool((obj.get("spec") or {}).get("unschedulable")),
        roles,
        (status.get("nodeInfo") or {}).get("kubeletVersion", ""),
        allocatable.get("cpu", ""),
        allocatable.get("memory", ""),
    )


def pod_phase_totals(summary: ClusterSummary) -> dict[str, int]:
    total: Counter[str] = Counter()
    for state in summary.namespaces.values():
        total.update(state.pods)
    return dict(sorted(total.items()))
