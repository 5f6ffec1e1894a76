"""``manifests.restorecheck``: every field the snapshot holds must be in the restored object with
the same value; what only the live object has is the server's."""

from __future__ import annotations

from typing import Any

from kubekeep.manifests.fielddiff import CHANGED, REMOVED, FieldChange
from kubekeep.manifests.restorecheck import AUTOSCALED, HIDDEN, autoscaled, differences, hide_values


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop-drill", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:1.0", "args": ["--port", "8080"]},
                        {"name": "sidecar", "image": "proxy:2"},
                    ],
                    "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                },
            },
        },
    }


def _live() -> dict[str, Any]:
    """What the API server returns for the Deployment: defaults, status and bookkeeping added."""
    live = _deployment()
    live["metadata"].update(
        uid="u-1",
        resourceVersion="77",
        generation=1,
        creationTimestamp="2026-12-05T04:00:00Z",
        managedFields=[{"manager": "kubekeep"}],
        annotations={"deployment.kubernetes.io/revision": "1"},
    )
    live["metadata"]["labels"]["kubekeep.io/restored-from"] = "1a2b3c4d"
    spec = live["spec"]
    spec.update(strategy={"type": "RollingUpdate"}, revisionHistoryLimit=10, progressDeadlineSeconds=600)
    pod = spec["template"]["spec"]
    pod.update(restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
    for c in pod["containers"]:
        c.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log", resources={})
    pod["containers"].reverse()  # matched by name, not position
    pod["tolerations"].append({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"})
    live["status"] = {"replicas": 2, "availableReplicas": 2}
    return live


def test_a_restored_object_with_the_servers_additions_has_no_differences() -> None:
    assert differences(_deployment(), _live()) == []


def test_each_missing_or_changed_field_is_one_difference() -> None:
    live = _live()
    del live["metadata"]["labels"]["app"]
    pod = live["spec"]["template"]["spec"]
    next(c for c in pod["containers"] if c["name"] == "app")["image"] = "mirror.example/app:1.0"
    pod["containers"] = [c for c in pod["containers"] if c["name"] != "sidecar"]
    live["spec"]["replicas"] = 1
    next(c for c in pod["containers"] if c["name"] == "app")["args"] = ["--port", "9090"]
    assert differences(_deployment(), live) == [
        FieldChange("metadata.labels.app", REMOVED, old="web"),
        FieldChange("spec.replicas", CHANGED, old=2, new=1),
        FieldChange(
            "spec.template.spec.containers[name=app].image", CHANGED, old="app:1.0", new="mirror.example/app:1.0"
        ),
        FieldChange(
            "spec.template.spec.containers[name=app].args", CHANGED, old=["--port", "8080"], new=["--port", "9090"]
        ),
        FieldChange(
            "spec.template.spec.containers[name=sidecar]", REMOVED, old={"name": "sidecar", "image": "proxy:2"}
        ),
    ]


def test_unkeyed_lists_positional_when_equal_in_length_else_by_matching_items() -> None:
    expected = {"spec": {"rules": [{"host": "a", "port": 1}, {"host": "b", "port": 2}]}}
    same_length = {"spec": {"rules": [{"host": "a", "port": 1, "extra": True}, {"host": "b", "port": 3}]}}
    assert differences(expected, same_length) == [FieldChange("spec.rules[1].port", CHANGED, old=2, new=3)]
    longer = {"spec": {"rules": [{"host": "z"}, {"host": "b", "port": 2}, {"host": "a", "port": 1}]}}
    assert differences(expected, longer) == []
    without_b = {"spec": {"rules": [{"host": "z"}, {"host": "c"}, {"host": "a", "port": 1}]}}
    assert differences(expected, without_b) == [FieldChange("spec.rules[1]", REMOVED, old={"host": "b", "port": 2})]


def test_type_changes_and_server_fields() -> None:
    expected = {
        "metadata": {"name": "x", "uid": "old", "resourceVersion": "1", "generation": 3},
        "data": {"a": {"b": 1}},
        "status": {"phase": "Bound"},
    }
    live = {"metadata": {"name": "x", "uid": "new", "resourceVersion": "9"}, "data": {"a": "flat"}}
    assert differences(expected, live) == [FieldChange("data.a", CHANGED, old={"b": 1}, new="flat")]
    assert differences({"items": [{"a": 1}]}, {"items": "no"}) == [
        FieldChange("items", CHANGED, old=[{"a": 1}], new="no")
    ]
    assert differences({"key": "value"}, {}) == [FieldChange("key", REMOVED, old="value")]
    assert differences({"weird.key/name": 1}, {"weird.key/name": 2}) == [
        FieldChange('["weird.key/name"]', CHANGED, old=1, new=2)
    ]


def test_a_secrets_values_are_hidden_other_kinds_are_not() -> None:
    changes = [
        FieldChange("data.password", CHANGED, old="c2VjcmV0", new="b3RoZXI="),
        FieldChange("stringData.token", REMOVED, old="plain"),
        FieldChange("metadata.labels.app", REMOVED, old="web"),
    ]
    assert hide_values(changes, "Secret") == [
        FieldChange("data.password", CHANGED, old=HIDDEN, new=HIDDEN),
        FieldChange("stringData.token", REMOVED, old=HIDDEN),
        FieldChange("metadata.labels.app", REMOVED, old="web"),
    ]
    assert hide_values(changes, "ConfigMap") == changes


def test_an_autoscalers_replicas_are_not_a_difference() -> None:
    hpa = {
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop-drill"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
    }
    broken = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"}, "spec": {"scaleTargetRef": "web"}}
    assert autoscaled([hpa, broken, _deployment()]) == {("Deployment", "shop-drill", "web")}
    live = _live()
    live["spec"]["replicas"] = 5
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    assert differences(_deployment(), live, ignore=AUTOSCALED) == [
        FieldChange("spec.template.spec.containers[name=sidecar].image", CHANGED, old="proxy:2", new="other")
    ]
    assert FieldChange("spec.replicas", CHANGED, old=2, new=5) in differences(_deployment(), live)
