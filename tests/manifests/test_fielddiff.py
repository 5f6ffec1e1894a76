"""Field-level object diffs: keyed list matching, readable paths, churn ignored by default."""

from __future__ import annotations

from kubekeep.manifests.fielddiff import ADDED, CHANGED, REMOVED, FieldChange, diff_objects


def _deploy(image: str = "app:1", replicas: int = 2, rv: str = "1", extra_container: bool = False) -> dict:
    containers = [{"name": "app", "image": image, "ports": [{"containerPort": 80}]}]
    if extra_container:
        containers.insert(0, {"name": "sidecar", "image": "proxy:1"})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "api",
            "resourceVersion": rv,
            "generation": int(rv),
            "labels": {"app.kubernetes.io/name": "api"},
            "managedFields": [{"manager": "m", "time": rv}],
        },
        "spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}},
        "status": {
            "observedGeneration": int(rv),
            "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": rv, "lastTransitionTime": "t0"}],
        },
    }


def test_identical_objects_and_churn_only_changes_report_nothing() -> None:
    assert diff_objects(_deploy(), _deploy()) == []
    assert diff_objects(_deploy(rv="1"), _deploy(rv="2")) == []


def test_churn_is_reported_when_asked() -> None:
    paths = {c.path for c in diff_objects(_deploy(rv="1"), _deploy(rv="2"), churn=True)}
    assert paths == {
        "metadata.resourceVersion",
        "metadata.generation",
        "metadata.managedFields[0].time",
        "status.observedGeneration",
        "status.conditions[type=Available].lastUpdateTime",
    }


def test_changes_have_readable_paths() -> None:
    old, new = _deploy(), _deploy(image="app:2", replicas=3, extra_container=True)
    new["metadata"]["labels"]["app.kubernetes.io/version"] = "2"
    del new["metadata"]["labels"]["app.kubernetes.io/name"]
    assert diff_objects(old, new) == [
        FieldChange('metadata.labels["app.kubernetes.io/name"]', REMOVED, old="api"),
        FieldChange('metadata.labels["app.kubernetes.io/version"]', ADDED, new="2"),
        FieldChange("spec.replicas", CHANGED, old=2, new=3),
        FieldChange("spec.template.spec.containers[name=app].image", CHANGED, old="app:1", new="app:2"),
        FieldChange("spec.template.spec.containers[name=sidecar]", ADDED, new={"name": "sidecar", "image": "proxy:1"}),
    ]


def test_lists_without_keys_compare_by_position_and_scalar_lists_whole() -> None:
    old = {"spec": {"rules": [{"host": "a"}, {"host": "b"}], "args": ["x", "y"]}}
    new = {"spec": {"rules": [{"host": "a"}, {"host": "c"}, {"host": "d"}], "args": ["x"]}}
    assert [c.to_dict() for c in diff_objects(old, new)] == [
        {"path": "spec.rules[1].host", "op": CHANGED, "old": "b", "new": "c"},
        {"path": "spec.rules[2]", "op": ADDED, "new": {"host": "d"}},
        {"path": "spec.args", "op": CHANGED, "old": ["x", "y"], "new": ["x"]},
    ]


def test_type_changes_are_changes() -> None:
    assert diff_objects({"a": {"b": 1}}, {"a": "text"}) == [FieldChange("a", CHANGED, old={"b": 1}, new="text")]
