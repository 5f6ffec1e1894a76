"""``kube.workloads.state_of``: when each kind of workload counts as ready, and when waiting
for it cannot help."""

from __future__ import annotations

from typing import Any

import pytest

from kubekeep.kube.workloads import FAILED, READY, WAITING, State, state_of


def _obj(spec: dict[str, Any], status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "x", "generation": generation}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("group", "resource", "obj", "expected"),
    [
        # Deployments: every replica available, updated, and the newest spec observed
        ("apps", "deployments", _obj({"replicas": 2}, {}), State(WAITING, "0/2 available")),
        (
            "apps",
            "deployments",
            _obj({"replicas": 2}, {"observedGeneration": 1, "availableReplicas": 2, "updatedReplicas": 2}),
            State(READY, "2/2 available"),
        ),
        (
            "apps",
            "deployments",
            _obj({"replicas": 2}, {"observedGeneration": 1, "availableReplicas": 2, "updatedReplicas": 1}),
            State(WAITING, "2/2 available"),
        ),
        (
            "apps",
            "deployments",
            _obj({"replicas": 2}, {"observedGeneration": 0, "availableReplicas": 2, "updatedReplicas": 2}, 1),
            State(WAITING, "2/2 available"),
        ),
        (
            "apps",
            "deployments",
            _obj(
                {"replicas": 1},
                {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]},
            ),
            State(FAILED, "progress deadline exceeded (0/1 available)"),
        ),
        ("apps", "deployments", _obj({"replicas": 0}, {"observedGeneration": 1}), State(READY, "0/0 available")),
        ("apps", "deployments", _obj({}, {"observedGeneration": 1}), State(WAITING, "0/1 available")),  # default 1
        # StatefulSets count ready replicas; ReplicaSets and ReplicationControllers available ones
        (
            "apps",
            "statefulsets",
            _obj({"replicas": 3}, {"observedGeneration": 1, "readyReplicas": 3}),
            State(READY, "3/3 ready"),
        ),
        (
            "apps",
            "statefulsets",
            _obj({"replicas": 3}, {"observedGeneration": 1, "readyReplicas": 2}),
            State(WAITING, "2/3 ready"),
        ),
        (
            "apps",
            "replicasets",
            _obj({"replicas": 1}, {"observedGeneration": 1, "availableReplicas": 1}),
            State(READY, "1/1 available"),
        ),
        (
            "",
            "replicationcontrollers",
            _obj({"replicas": 1}, {"observedGeneration": 1}),
            State(WAITING, "0/1 available"),
        ),
        # DaemonSets: ready wherever they are scheduled, once the controller has counted
        ("apps", "daemonsets", _obj({}, {"observedGeneration": 1}), State(WAITING, "0/0 ready")),
        (
            "apps",
            "daemonsets",
            _obj({}, {"observedGeneration": 1, "desiredNumberScheduled": 3, "numberReady": 3}),
            State(READY, "3/3 ready"),
        ),
        # Jobs complete, or failed for good
        ("batch", "jobs", _obj({}, {"conditions": [{"type": "Complete", "status": "True"}]}), State(READY, "complete")),
        (
            "batch",
            "jobs",
            _obj({}, {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
            State(FAILED, "failed: BackoffLimitExceeded"),
        ),
        ("batch", "jobs", _obj({"suspend": True}, {}), State(WAITING, "suspended")),
        ("batch", "jobs", _obj({}, {"active": 1}), State(WAITING, "0 succeeded, 1 active")),
        # Pods ready or succeeded; failed for good
        (
            "",
            "pods",
            _obj({}, {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
            State(READY, "ready"),
        ),
        (
            "",
            "pods",
            _obj({}, {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}),
            State(WAITING, "running"),
        ),
        ("", "pods", _obj({}, {"phase": "Succeeded"}), State(READY, "succeeded")),
        ("", "pods", _obj({}, {"phase": "Failed", "reason": "Evicted"}), State(FAILED, "failed: Evicted")),
        ("", "pods", _obj({}, {}), State(WAITING, "pending")),
        # hostile or unknown: no crash
        ("apps", "deployments", {"spec": "nonsense", "status": 3}, State(WAITING, "no status yet")),
        ("apps", "deployments", _obj({"replicas": "2"}, {"availableReplicas": True}), State(WAITING, "0/1 available")),
        ("", "configmaps", _obj({}, {}), State(READY, "nothing to wait for")),
    ],
)
def test_state_of(group: str, resource: str, obj: dict[str, Any], expected: State) -> None:
    assert state_of(group, resource, obj) == expected


def test_a_workload_that_goes_away() -> None:
    from kubekeep.kube.workloads import REMOVED_BY_TTL, _gone

    assert _gone("jobs", None) == State(WAITING, "not found")  # never seen: not created yet
    assert _gone("jobs", _obj({"ttlSecondsAfterFinished": 0}, {})) == State(READY, REMOVED_BY_TTL)
    assert _gone("jobs", _obj({}, {})) == State(FAILED, "deleted while waiting")
    assert _gone("deployments", _obj({"replicas": 1}, {})) == State(FAILED, "deleted while waiting")
