"""What a restore strips from objects, and what it keeps."""

from __future__ import annotations

import copy
from typing import Any

from kubekeep.manifests.cleaning import CleanOptions, clean

META = {
    "name": "x",
    "namespace": "web",
    "uid": "u1",
    "resourceVersion": "42",
    "generation": 3,
    "creationTimestamp": "2026-01-01T00:00:00Z",
    "selfLink": "/x",
    "deletionTimestamp": "2026-01-02T00:00:00Z",
    "deletionGracePeriodSeconds": 30,
    "finalizers": ["example.com/keep"],
    "ownerReferences": [{"kind": "Thing", "name": "t", "uid": "u0"}],
    "labels": {"app": "x", "kubekeep.io/restored-from": "0123abcd"},
    "annotations": {"deployment.kubernetes.io/revision": "4", "note": "kept"},
    "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:data": {}}}],
}


def _obj(kind: str = "ConfigMap", **body: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": copy.deepcopy(META), **copy.deepcopy(body)}


def test_server_fields_status_and_managed_fields_are_stripped() -> None:
    out = clean(_obj(data={"a": "1"}, status={"phase": "x"}), "", "configmaps")
    assert out == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {"a": "1"},
        "metadata": {
            "name": "x",
            "namespace": "web",
            "labels": {"app": "x"},
            "finalizers": ["example.com/keep"],
            "annotations": {"note": "kept"},
        },
    }


def test_status_and_managed_fields_kept_on_request_and_namespace_mapped() -> None:
    opts = CleanOptions(restore_status=True, keep_managed_fields=True, namespace_map={"web": "web2"})
    out = clean(_obj(status={"phase": "x"}), "", "configmaps", opts)
    assert out["status"] == {"phase": "x"}
    assert out["metadata"]["managedFields"] == META["managedFields"]
    assert out["metadata"]["namespace"] == "web2"


def _service(spec: dict[str, Any], managed_spec: dict[str, Any]) -> dict[str, Any]:
    obj = _obj("Service", spec=spec)
    obj["metadata"]["managedFields"] = [{"manager": "m", "fieldsV1": {"f:spec": managed_spec}}]
    return obj


def test_service_drops_allocated_ips_and_ports_but_keeps_explicit_ones() -> None:
    spec = {
        "type": "NodePort",
        "clusterIP": "10.96.0.5",
        "clusterIPs": ["10.96.0.5"],
        "healthCheckNodePort": 31000,
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 443, "nodePort": 30443}],
    }
    out = clean(_service(spec, {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {"f:port": {}}}}), "", "services")
    assert out["spec"] == {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443}]}
    explicit = {
        "f:clusterIP": {},
        "f:clusterIPs": {},
        "f:healthCheckNodePort": {},
        "f:ports": {'k:{"port":443,"protocol":"TCP"}': {"f:nodePort": {}}},
    }
    out = clean(_service(spec, explicit), "", "services")
    assert out["spec"]["clusterIP"] == "10.96.0.5" and out["spec"]["healthCheckNodePort"] == 31000
    assert out["spec"]["ports"] == [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443}]


def test_headless_service_keeps_none() -> None:
    out = clean(_service({"clusterIP": "None", "clusterIPs": ["None"]}, {}), "", "services")
    assert out["spec"] == {"clusterIP": "None", "clusterIPs": ["None"]}


def test_pod_pvc_pv_job_namespace_bindings() -> None:
    pod = clean(_obj("Pod", spec={"nodeName": "n1", "containers": []}), "", "pods")
    assert pod["spec"] == {"containers": []}

    pvc = _obj("PersistentVolumeClaim", spec={"volumeName": "pv-1", "storageClassName": "fast"})
    pvc["metadata"]["annotations"].update(
        {"pv.kubernetes.io/bind-completed": "yes", "volume.kubernetes.io/selected-node": "n1"}
    )
    assert clean(copy.deepcopy(pvc), "", "persistentvolumeclaims")["spec"] == {"storageClassName": "fast"}
    kept = clean(pvc, "", "persistentvolumeclaims", CleanOptions(restored_volumes=frozenset({"pv-1"})))
    assert kept["spec"]["volumeName"] == "pv-1"
    assert kept["metadata"]["annotations"] == {"note": "kept"}

    pv = _obj(
        "PersistentVolume",
        spec={
            "claimRef": {
                "namespace": "web",
                "name": "data",
                "uid": "u",
                "resourceVersion": "1",
                "kind": "PersistentVolumeClaim",
            }
        },
    )
    pv = clean(pv, "", "persistentvolumes", CleanOptions(namespace_map={"web": "web2"}))
    assert pv["spec"]["claimRef"] == {"namespace": "web2", "name": "data", "kind": "PersistentVolumeClaim"}

    job = _obj(
        "Job",
        spec={
            "selector": {"matchLabels": {"controller-uid": "u"}},
            "template": {
                "metadata": {
                    "labels": {"controller-uid": "u", "job-name": "j", "batch.kubernetes.io/controller-uid": "u"}
                }
            },
        },
    )
    job = clean(job, "batch", "jobs")
    assert job["spec"] == {"template": {"metadata": {"labels": {"job-name": "j"}}}}
    manual = clean(_obj("Job", spec={"manualSelector": True, "selector": {"matchLabels": {"a": "b"}}}), "batch", "jobs")
    assert manual["spec"]["selector"] == {"matchLabels": {"a": "b"}}

    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "spec": {"finalizers": ["kubernetes"]},
        "metadata": {"name": "web", "labels": {"kubernetes.io/metadata.name": "web", "team": "a"}},
    }
    ns = clean(ns, "", "namespaces", CleanOptions(namespace_map={"web": "web2"}))
    assert ns == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web2", "labels": {"team": "a"}}}

    rb = _obj(
        "RoleBinding",
        subjects=[{"kind": "ServiceAccount", "name": "sa", "namespace": "web"}, {"kind": "User", "name": "u"}],
    )
    rb = clean(rb, "rbac.authorization.k8s.io", "rolebindings", CleanOptions(namespace_map={"web": "web2"}))
    assert rb["subjects"][0]["namespace"] == "web2" and rb["metadata"]["namespace"] == "web2"
