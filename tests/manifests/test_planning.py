"""Restore plans: tiers, cluster-owned objects, objects recreated by their controllers."""

from __future__ import annotations

from typing import Any

from kubekeep.manifests import layout, ordering
from kubekeep.manifests.cleaning import CleanOptions
from kubekeep.manifests.planning import RESTORED_FROM_LABEL, StoredObject, cluster_owned, plan


def _stored(
    api_version: str, kind: str, resource: str, name: str, ns: str = "", uid: str = "", **extra: Any
) -> StoredObject:
    meta: dict[str, Any] = {"name": name, "uid": uid or f"uid-{kind}-{name}"}
    if ns:
        meta["namespace"] = ns
    meta.update(extra.pop("meta", {}))
    obj = {"apiVersion": api_version, "kind": kind, "metadata": meta, **extra}
    group = layout.split_api_version(api_version)[0]
    return StoredObject(layout.object_path(group, resource, ns, name), layout.object_attrs(obj, group, resource), obj)


def test_tiers_put_definitions_first_and_admission_last() -> None:
    order = [
        ordering.tier_of(g, r).name
        for g, r in [
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("", "namespaces"),
            ("storage.k8s.io", "storageclasses"),
            ("", "persistentvolumeclaims"),
            ("", "configmaps"),
            ("rbac.authorization.k8s.io", "roles"),
            ("", "services"),
            ("apps", "deployments"),
            ("example.com", "widgets"),
            ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
        ]
    ]
    assert order == [
        "definitions",
        "definitions",
        "cluster-config",
        "storage",
        "config",
        "rbac",
        "services",
        "workloads",
        "custom",
        "admission",
    ]
    assert [ordering.tier_of(g, r).rank for g, r in [("", "namespaces"), ("x.io", "y")]] == [0, ordering.CUSTOM]


def test_cluster_owned_objects() -> None:
    assert cluster_owned({}, "", "nodes")
    assert cluster_owned({}, "coordination.k8s.io", "leases")
    assert cluster_owned({"type": "kubernetes.io/service-account-token"}, "", "secrets")
    assert cluster_owned({"type": "Opaque"}, "", "secrets") is None
    assert cluster_owned({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}}, "", "pods")
    assert cluster_owned({"metadata": {"name": "kube-root-ca.crt", "namespace": "web"}}, "", "configmaps")
    assert cluster_owned({"metadata": {"name": "kubernetes", "namespace": "default"}}, "", "services")
    assert cluster_owned(
        {"metadata": {"labels": {"endpoints.kubernetes.io/managed-by": "endpoint-controller"}}}, "", "endpoints"
    )
    assert cluster_owned({"metadata": {"name": "manual"}}, "", "endpoints") is None
    bootstrap = {
        "metadata": {
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        }
    }
    assert cluster_owned(bootstrap, "rbac.authorization.k8s.io", "clusterroles")
    bootstrap["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = "false"
    assert cluster_owned(bootstrap, "rbac.authorization.k8s.io", "clusterroles") is None
    assert cluster_owned(
        {"metadata": {"labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}}},
        "apiregistration.k8s.io",
        "apiservices",
    )


def test_plan_skips_children_of_restored_controllers_and_orders_by_tier() -> None:
    deploy = _stored("apps/v1", "Deployment", "deployments", "api", "web", uid="d1")
    rs = _stored(
        "apps/v1",
        "ReplicaSet",
        "replicasets",
        "api-1",
        "web",
        uid="r1",
        meta={"ownerReferences": [{"kind": "Deployment", "name": "api", "uid": "d1", "controller": True}]},
    )
    pod = _stored(
        "v1",
        "Pod",
        "pods",
        "api-1-x",
        "web",
        uid="p1",
        meta={"ownerReferences": [{"kind": "ReplicaSet", "name": "api-1", "uid": "r1", "controller": True}]},
    )
    orphan = _stored(
        "v1",
        "Pod",
        "pods",
        "lonely",
        "web",
        meta={"ownerReferences": [{"kind": "ReplicaSet", "name": "gone", "uid": "zz", "controller": True}]},
    )
    claim = _stored(
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "data-db-0",
        "web",
        meta={"ownerReferences": [{"kind": "StatefulSet", "name": "db", "uid": "s1", "controller": True}]},
    )
    sts = _stored("apps/v1", "StatefulSet", "statefulsets", "db", "web", uid="s1")
    ns = _stored("v1", "Namespace", "namespaces", "web")
    node = _stored("v1", "Node", "nodes", "n1")
    widget = _stored("example.com/v1", "Widget", "widgets", "w", "web", status={"phase": "Ready"})
    result = plan(
        [widget, pod, rs, deploy, orphan, claim, sts, ns, node], CleanOptions(), label=(RESTORED_FROM_LABEL, "abc")
    )
    by_name = {p.name: p for p in result}
    assert by_name["api-1"].skip == "recreated by its controller Deployment api"
    assert by_name["api-1-x"].skip == "recreated by its controller ReplicaSet api-1"
    assert by_name["lonely"].skip is None and by_name["lonely"].owner_references[0]["uid"] == "zz"
    assert by_name["data-db-0"].skip is None
    assert by_name["n1"].skip == "nodes register themselves"
    assert [p.tier.name for p in result if p.skip is None] == [
        "definitions",
        "storage",
        "workloads",
        "workloads",
        "workloads",
        "custom",
    ]
    api = by_name["api"]
    assert api.obj["metadata"] == {"name": "api", "namespace": "web", "labels": {RESTORED_FROM_LABEL: "abc"}}
    assert api.old_uid == "d1" and api.describe() == "Deployment web/api" and api.version == "v1"
    assert "labels" not in by_name["n1"].obj["metadata"]
    assert "status" not in by_name["w"].obj
    assert by_name["api"].report()["tier"] == "workloads"


def test_plan_keeps_claim_volume_when_the_volume_is_restored_too() -> None:
    pv = _stored("v1", "PersistentVolume", "persistentvolumes", "pv-1")
    pvc = _stored("v1", "PersistentVolumeClaim", "persistentvolumeclaims", "data", "web", spec={"volumeName": "pv-1"})
    lone = _stored("v1", "PersistentVolumeClaim", "persistentvolumeclaims", "other", "web", spec={"volumeName": "pv-9"})
    result = {p.name: p for p in plan([pv, pvc, lone], CleanOptions())}
    assert result["data"].obj["spec"] == {"volumeName": "pv-1"}
    assert result["other"].obj["spec"] == {}
