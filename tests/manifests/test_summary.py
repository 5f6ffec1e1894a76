"""The cluster-at-that-time model built from objects."""

from __future__ import annotations

from kubekeep.manifests.summary import SummaryBuilder, pod_phase_totals


def _node(name: str, ready: str, reason: str = "", pressure: bool = False) -> dict:
    conds = [{"type": "Ready", "status": ready, "reason": reason}]
    if pressure:
        conds.append({"type": "MemoryPressure", "status": "True"})
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": {"node-role.kubernetes.io/agent": ""}},
        "spec": {"unschedulable": name == "n2"},
        "status": {
            "conditions": conds,
            "nodeInfo": {"kubeletVersion": "v1.34"},
            "allocatable": {"cpu": "4", "memory": "8Gi"},
        },
    }


def _pod(name: str, ns: str, phase: str, ready: bool = True, terminating: bool = False) -> dict:
    meta = {"name": name, "namespace": ns}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "kind": "Pod",
        "metadata": meta,
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_summary_of_a_small_cluster() -> None:
    b = SummaryBuilder()
    b.add("", "nodes", _node("n1", "True"))
    b.add("", "nodes", _node("n2", "False", reason="KubeletNotReady", pressure=True))
    b.add("", "namespaces", {"metadata": {"name": "web"}, "status": {"phase": "Active"}})
    b.add(
        "apps",
        "deployments",
        {
            "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "web"},
            "spec": {"replicas": 3},
            "status": {"readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 3},
        },
    )
    b.add(
        "apps",
        "statefulsets",
        {
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "web"},
            "spec": {},
            "status": {"readyReplicas": 1, "updatedReplicas": 1},
        },
    )
    b.add(
        "apps",
        "daemonsets",
        {
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system"},
            "status": {
                "desiredNumberScheduled": 2,
                "numberReady": 2,
                "numberAvailable": 2,
                "updatedNumberScheduled": 2,
            },
        },
    )
    for pod in (
        _pod("a", "web", "Running"),
        _pod("b", "web", "Running", ready=False),
        _pod("c", "web", "Pending"),
        _pod("d", "web", "Running", terminating=True),
    ):
        b.add("", "pods", pod)
    b.add(
        "",
        "persistentvolumeclaims",
        {
            "metadata": {"name": "data", "namespace": "web"},
            "spec": {"volumeName": "pv-1", "storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}},
        },
    )
    for _ in range(5):
        b.count("web")
    s = b.build()
    assert [(n.name, n.ready, n.problems, n.unschedulable, n.roles) for n in s.nodes] == [
        ("n1", "True", [], False, ["agent"]),
        ("n2", "False", ["NotReady: KubeletNotReady", "MemoryPressure"], True, ["agent"]),
    ]
    web = s.namespaces["web"]
    assert web.phase == "Active" and web.objects == 5
    assert [(w.kind, w.name, w.desired, w.ready, w.healthy) for w in web.workloads] == [
        ("Deployment", "api", 3, 2, False),
        ("StatefulSet", "db", 1, 1, True),
    ]
    assert [w.name for w in web.unhealthy_workloads] == ["api"]
    assert web.pods == {"Pending": 1, "Running": 3}
    assert web.pods_not_ready == ["b", "d (terminating)"]
    assert [(c.name, c.phase, c.volume, c.capacity) for c in web.claims] == [("data", "Bound", "pv-1", "2Gi")]
    assert s.namespaces["kube-system"].workloads[0].healthy
    assert pod_phase_totals(s) == {"Pending": 1, "Running": 3}
    d = s.to_dict()
    assert d["namespaces"]["web"]["workloads"][0]["healthy"] is False


def test_namespace_filter() -> None:
    b = SummaryBuilder({"web"})
    b.add("", "pods", _pod("a", "other", "Running"))
    b.add("", "pods", _pod("b", "web", "Running"))
    b.count("other")
    assert list(b.build().namespaces) == ["web"]
