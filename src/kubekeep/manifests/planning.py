"""From selected snapshot objects to a restore plan: what is created, in which tier, and what is
left out and why.

Left out are objects the target cluster owns (nodes, events, leases, endpoint slices, legacy
service-account tokens, mirror pods, what the API server and its controllers create on their
own) and objects whose controller is restored too (a ReplicaSet whose Deployment is restored,
that Deployment's Pods): the controller creates them again, and a copy would compete with it.
PersistentVolumeClaims are the exception: they name the data, so they are always restored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from kubekeep.manifests import cleaning, ordering, transforms
from kubekeep.manifests.layout import split_api_version

if TYPE_CHECKING:
    from kubekeep.manifests.api_versions import VersionChange

RESTORED_FROM_LABEL = cleaning.RESTORED_FROM_LABEL

#: Resources whose objects always belong to the cluster they were taken from.
CLUSTER_OWNED: dict[tuple[str, str], str] = {
    ("", "nodes"): "nodes register themselves",
    ("", "events"): "events are recorded by the cluster",
    ("events.k8s.io", "events"): "events are recorded by the cluster",
    ("coordination.k8s.io", "leases"): "leases are held by running components",
    ("discovery.k8s.io", "endpointslices"): "endpoint slices are maintained by the cluster",
    ("", "componentstatuses"): "component statuses are computed by the API server",
    ("storage.k8s.io", "csinodes"): "CSI nodes are registered by kubelets",
    ("storage.k8s.io", "volumeattachments"): "volume attachments are managed by the attach/detach controller",
    ("networking.k8s.io", "ipaddresses"): "service IP addresses are allocated by the API server",
    ("networking.k8s.io", "servicecidrs"): "service CIDRs are configured by the API server",
    ("resource.k8s.io", "resourceslices"): "resource slices are published by drivers",
    ("certificates.k8s.io", "certificatesigningrequests"): "certificate requests belong to the cluster's CA",
}

_APISERVER_CONFIGMAPS = {
    ("kube-system", "extension-apiserver-authentication"),
    ("kube-system", "kube-apiserver-legacy-service-account-token-tracking"),
}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _secret(obj: Mapping[str, Any]) -> str | None:
    if obj.get("type") == "kubernetes.io/service-account-token":
        return "legacy service-account tokens are issued by the target cluster"
    return None


def _pod(obj: Mapping[str, Any]) -> str | None:
    if "kubernetes.io/config.mirror" in _annotations(obj):
        return "mirror pods are created by kubelets from static pod files"
    return None


def _configmap(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    if meta.get("name") == "kube-root-ca.crt":
        return "kube-root-ca.crt is published by the target cluster in every namespace"
    if (meta.get("namespace"), meta.get("name")) in _APISERVER_CONFIGMAPS:
        return "written by the API server"
    return None


def _service(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    if (meta.get("namespace"), meta.get("name")) == ("default", "kubernetes"):
        return "the kubernetes Service is maintained by the API server"
    return None


def _endpoints(obj: Mapping[str, Any]) -> str | None:
    if _labels(obj).get("endpoints.kubernetes.io/managed-by") == "endpoint-controller":
        return "endpoints of Services with selectors are maintained by the endpoints controller"
    return None


def _bootstrap_rbac(obj: Mapping[str, Any]) -> str | None:
    if (
        _labels(obj).get("kubernetes.io/bootstrapping") == "rbac-defaults"
        and _annotations(obj).get("rbac.authorization.kubernetes.io/autoupdate") != "false"
    ):
        return "default RBAC is reconciled by the API server"
    return None


def _flowcontrol(obj: Mapping[str, Any]) -> str | None:
    if _annotations(obj).get("apf.kubernetes.io/autoupdate-spec") == "true":
        return "default flow control is reconciled by the API server"
    return None


def _apiservice(obj: Mapping[str, Any]) -> str | None:
    if "kube-aggregator.kubernetes.io/automanaged" in _labels(obj):
        return "built-in API services are registered by the API server"
    return None


_OWNED_IF: dict[tuple[str, str], Callable[[Mapping[str, Any]], str | None]] = {
    ("", "secrets"): _secret,
    ("", "pods"): _pod,
    ("", "configmaps"): _configmap,
    ("", "services"): _service,
    ("", "endpoints"): _endpoints,
    ("rbac.authorization.k8s.io", "clusterroles"): _bootstrap_rbac,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _bootstrap_rbac,
    ("rbac.authorization.k8s.io", "roles"): _bootstrap_rbac,
    ("rbac.authorization.k8s.io", "rolebindings"): _bootstrap_rbac,
    ("flowcontrol.apiserver.k8s.io", "flowschemas"): _flowcontrol,
    ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations"): _flowcontrol,
    ("apiregistration.k8s.io", "apiservices"): _apiservice,
}


def cluster_owned(obj: Mapping[str, Any], group: str, resource: str) -> str | None:
    """Why an object is never restored, or None."""
    reason = CLUSTER_OWNED.get((group, resource))
    if reason is not None:
        return reason
    check = _OWNED_IF.get((group, resource))
    return check(obj) if check is not None else None


class ReportLine(TypedDict):
    """The identifying part of an object's line in a restore report (the exporter adds what it did)."""

    path: str
    apiVersion: str
    kind: str
    namespace: str
    name: str
    tier: str
    #: the transforms that changed the object (``transforms.Transforms.apply``), when any did
    transforms: NotRequired[list[str]]


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object read from a snapshot: its path, node attrs and content."""

    path: str
    attrs: Mapping[str, Any]
    obj: dict[str, Any]


@dataclass
class PlannedObject:
    """One object of a restore: cleaned content, target identity, tier, or why it is skipped."""

    path: str
    group: str
    resource: str
    obj: dict[str, Any]
    tier: ordering.Tier
    skip: str | None = None
    old_uid: str = ""
    owner_references: list[dict[str, Any]] = field(default_factory=list)
    #: sent at another version than stored, or not sendable (set by ``api_versions.resolve``)
    version_change: VersionChange | None = None
    #: the transforms that changed ``obj``, in the order applied
    transforms: list[str] = field(default_factory=list)
    #: why a transform could not be applied: the object is not restored, and that is a failure
    failed: str | None = None

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def namespace(self) -> str:
        return str((self.obj.get("metadata") or {}).get("namespace") or "")

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def version(self) -> str:
        return split_api_version(self.api_version)[1]

    def describe(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    def report(self) -> ReportLine:
        """The identifying part of this object's line in a restore report."""
        line: ReportLine = {
            "path": self.path,
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "tier": self.tier.name,
        }
        if self.transforms:
            line["transforms"] = list(self.transforms)
        return line


def plan(
    objects: Iterable[StoredObject],
    opts: cleaning.CleanOptions,
    *,
    label: tuple[str, str] | None = None,
    transform: transforms.Transforms | None = None,
) -> list[PlannedObject]:
    """The restore plan for ``objects``, sorted by tier then path.

    Cleaned objects carry no ``ownerReferences``; each plan entry keeps the original ones so
    that an exporter can point them at the new owners. ``transform`` changes the objects that
    are restored after cleaning (a failure marks the entry ``failed``); ``label`` is set on
    every restored object after that.
    """
    objects = list(objects)
    uids = {(o.obj.get("metadata") or {}).get("uid") for o in objects} - {None, ""}
    volumes = frozenset(
        o.attrs.get("name", "")
        for o in objects
        if o.attrs.get("group", "") == "" and o.attrs.get("resource") == "persistentvolumes"
    )
    opts = dataclasses.replace(opts, restored_volumes=volumes | opts.restored_volumes)
    planned: list[PlannedObject] = []
    for stored in objects:
        group = stored.attrs.get("group", "")
        resource = stored.attrs.get("resource", "")
        obj = stored.obj
        meta = obj.get("metadata") or {}
        skip = cluster_owned(obj, group, resource)
        refs = list(meta.get("ownerReferences") or [])
        if skip is None and (group, resource) != ("", "persistentvolumeclaims"):
            controller = next((r for r in refs if r.get("controller") and r.get("uid") in uids), None)
            if controller is not None:
                skip = f"recreated by its controller {controller.get('kind')} {controller.get('name')}"
        old_uid = str(meta.get("uid") or "")
        cleaning.clean(obj, group, resource, opts)
        changed: list[str] = []
        failed = None
        if transform and skip is None:
            try:
                changed = transform.apply(obj, group, resource)
            except transforms.TransformFailed as exc:
                failed = str(exc)
        if label is not None and skip is None and failed is None:
            obj["metadata"].setdefault("labels", {})[label[0]] = label[1]
        planned.append(
            PlannedObject(
                stored.path,
                group,
                resource,
                obj,
                ordering.tier_of(group, resource),
                skip,
                old_uid,
                refs,
                transforms=changed,
                failed=failed,
            )
        )
    planned.sort(key=lambda p: (p.tier.rank, p.path))
    return planned
