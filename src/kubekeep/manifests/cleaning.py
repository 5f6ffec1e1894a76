"""What a restore must not send back to an API server, and why (docs/manifests.md, "Cleaning").

A snapshot stores objects exactly as the API returned them. Before an object is created again
(in a cluster, or as a file for ``kubectl apply``) it loses:

* identity and bookkeeping the server assigns: ``uid``, ``resourceVersion``,
  ``creationTimestamp``, ``generation``, ``selfLink``, ``deletionTimestamp``,
  ``deletionGracePeriodSeconds``; a create carrying a ``resourceVersion`` is refused;
* ``managedFields``: a create makes the creating client the manager of every field it sends,
  whatever the request says, so the old entries cannot simply be sent along (they can be put
  back by a second request, ``keep_managed_fields``); the snapshot keeps them for investigation;
* ``status``, unless asked for: controllers recompute it, and most resources ignore it on create;
* ``ownerReferences``: they name owners by uid, which a new owner will not have. Objects whose
  controller is restored too are not restored at all (``planning``); the exporter rewrites the
  references it can resolve to the new owners' uids and drops the rest (the garbage collector
  would otherwise delete an object whose owner uid does not exist);
* values the server allocated and would refuse or misuse: a Service's ``clusterIP(s)``, node
  ports and health-check node port unless the object's ``managedFields`` show that a client set
  them explicitly (allocated values never appear there; ``None`` for headless Services is kept);
  a Pod's ``nodeName``; a PersistentVolumeClaim's binding annotations and, unless its volume is
  restored too, ``volumeName``; a PersistentVolume's ``claimRef`` uid (the namespace follows a
  namespace mapping); a Job's generated selector and ``controller-uid`` labels; annotations
  controllers write (``deployment.kubernetes.io/revision``), the namespace-name label the API
  server sets, and the label of an earlier restore (``kubekeep.io/restored-from``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)
PVC_BINDING_ANNOTATIONS = (
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
)
JOB_GENERATED_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
#: Set by a restore on every object it creates; an earlier restore's value is dropped.
RESTORED_FROM_LABEL = "kubekeep.io/restored-from"
#: Set by a data-first cluster restore on a claim once its data is written (the data's snapshot
#: id); dropped from claims restored again, whose data is not written yet.
DATA_RESTORED_ANNOTATION = "kubekeep.io/data-restored"


@dataclass(frozen=True)
class CleanOptions:
    restore_status: bool = False
    keep_managed_fields: bool = False
    namespace_map: Mapping[str, str] = field(default_factory=dict)
    restored_volumes: frozenset[str] = frozenset()  # PersistentVolumes restored in the same run


def clean(obj: dict[str, Any], group: str, resource: str, opts: CleanOptions = CleanOptions()) -> dict[str, Any]:
    """Strip ``obj`` (in place) for a restore and apply the namespace mapping; returns it."""
    meta = obj.setdefault("metadata", {})
    managed = meta.get("managedFields") or []
    for key in SERVER_METADATA:
        meta.pop(key, None)
    if not opts.keep_managed_fields:
        meta.pop("managedFields", None)
    meta.pop("ownerReferences", None)
    if not opts.restore_status:
        obj.pop("status", None)
    _drop_keys(meta, "annotations", CONTROLLER_ANNOTATIONS)
    _drop_keys(meta, "labels", (RESTORED_FROM_LABEL,))
    ns = meta.get("namespace")
    if ns and ns in opts.namespace_map:
        meta["namespace"] = opts.namespace_map[ns]
    special = _SPECIAL.get((group, resource))
    if special is not None:
        special(obj, opts, managed)
    return obj


def _drop_keys(parent: dict[str, Any], key: str, names: tuple[str, ...]) -> None:
    d = parent.get(key)
    if not d:
        return
    for name in names:
        d.pop(name, None)
    if not d:
        parent.pop(key, None)


def explicit_fields(managed: list[dict[str, Any]]) -> dict[str, Any]:
    """Union of the field sets (``fieldsV1``) every manager of an object owns."""
    union: dict[str, Any] = {}

    def merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
        for k, v in src.items():
            if isinstance(v, dict):
                merge(dst.setdefault(k, {}), v)

    for entry in managed:
        if isinstance(entry.get("fieldsV1"), dict):
            merge(union, entry["fieldsV1"])
    return union


def _service(obj: dict[str, Any], opts: CleanOptions, managed: list[dict[str, Any]]) -> None:
    spec = obj.get("spec") or {}
    owned = explicit_fields(managed).get("f:spec", {})
    if spec.get("clusterIP") != "None" and "f:clusterIP" not in owned:
        spec.pop("clusterIP", None)
    if spec.get("clusterIP") != "None" and "f:clusterIPs" not in owned:
        spec.pop("clusterIPs", None)
    if "f:healthCheckNodePort" not in owned:
        spec.pop("healthCheckNodePort", None)
    explicit_ports = set()
    for key, fields in owned.get("f:ports", {}).items():
        if key.startswith("k:") and "f:nodePort" in fields:
            try:
                k = orjson.loads(key[2:])
                explicit_ports.add((k.get("port"), k.get("protocol", "TCP")))
            except orjson.JSONDecodeError:
                continue
    for port in spec.get("ports") or []:
        if (port.get("port"), port.get("protocol", "TCP")) not in explicit_ports:
            port.pop("nodePort", None)


def _pod(obj: dict[str, Any], opts: CleanOptions, managed: list[dict[str, Any]]) -> None:
    (obj.get("spec") or {}).pop("nodeName", None)


def _pvc(obj: dict[str, Any], opts: CleanOptions, managed: list[dict[str, Any]]) -> None:
    _drop_keys(obj["metadata"], "annotations", (*PVC_BINDING_ANNOTATIONS, DATA_RESTORED_ANNOTATION))
    spec = obj.get("spec") or {}
    if spec.get("volumeName") and spec["volumeName"] not in opts.restored_volumes:
        spec.pop("volumeName")


def _pv(obj: dict[str, Any], opts: CleanOptions, managed: list[dict[str, Any]]) -> None:
    ref = (obj.get("spec") or {}).get("claimRef")
    if ref:
        ref.pop("uid", None)
        ref.pop("resourceVersion", None)
        if ref.get("namespace") in opts.namespace_map:
            ref["namespace"] = opts.namespace_map[ref["namespace"]]


def _namespace(obj: dict[str, Any], opts: CleanOptions, managed: list[dict[str, Any]]) -> None:
    meta = obj["metadata"]
    if meta.get("name") in opts.namespace_map:
        meta["name"] = opts.namespace_map[meta["name"]]
    _drop_keys(meta, "labels", (NAMESPACE_NAME_LABEL,))
    spec = obj.get("spec")
    if spec and spec.get("finalizers") == ["kubernetes"]:
        obj.pop("spec")  # the API server's own finalizer, set on every create


def _job(obj: dict[str, Any], opts: CleanOptions, managed: list[dict[str, Any]]) -> None:
    spec = obj.get("spec") or {}
    if spec.get("manualSelector"):
        return
    spec.pop("selector", None)
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    _drop_keys(template_meta, "labels", JOB_GENERATED_LABELS)


def _bindings(obj: dict[str, Any], opts: CleanOptions, managed: list[dict[str, Any]]) -> None:
    for subject in obj.get("subjects") or []:
        if subject.get("namespace") in opts.namespace_map:
            subject["namespace"] = opts.namespace_map[subject["namespace"]]


_SPECIAL = {
    ("", "services"): _service,
    ("", "pods"): _pod,
    ("", "persistentvolumeclaims"): _pvc,
    ("", "persistentvolumes"): _pv,
    ("", "namespaces"): _namespace,
    ("batch", "jobs"): _job,
    ("rbac.authorization.k8s.io", "rolebindings"): _bindings,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _bindings,
}
