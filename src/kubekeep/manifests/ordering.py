"""Restore tiers: what must exist before what.

A restore creates tier by tier, the objects of one tier in parallel:

1. ``definitions``: CustomResourceDefinitions and Namespaces; everything else lives in them.
2. ``cluster-config``: cluster-wide classes and policies objects refer to by name
   (StorageClasses, PriorityClasses, RuntimeClasses, IngressClasses, ...).
3. ``storage``: PersistentVolumes, then claims can bind to them.
4. ``config``: ServiceAccounts, Secrets, ConfigMaps, LimitRanges, ResourceQuotas: what pods
   mount or are admitted against.
5. ``rbac``: (Cluster)Roles and their bindings.
6. ``services``: Services, Endpoints, Ingresses, NetworkPolicies.
7. ``workloads``: Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, bare Pods, ReplicaSets,
   autoscalers and disruption budgets: they start pods, so they come after what pods need.
8. ``custom``: custom objects and anything else not known here, after the CRDs of tier 1 are
   Established (operators usually expect the built-in objects above to exist).
9. ``admission``: webhook configurations, admission policies and APIServices last, so a webhook
   whose backend is not running yet cannot reject the rest of the restore.
"""

from __future__ import annotations

from typing import NamedTuple

TIERS = ("definitions", "cluster-config", "storage", "config", "rbac", "services", "workloads", "custom", "admission")

_TABLE: dict[str, dict[str, tuple[str, ...]]] = {
    "definitions": {"apiextensions.k8s.io": ("customresourcedefinitions",), "": ("namespaces",)},
    "cluster-config": {
        "storage.k8s.io": ("storageclasses", "csidrivers", "volumeattributesclasses"),
        "scheduling.k8s.io": ("priorityclasses",),
        "node.k8s.io": ("runtimeclasses",),
        "networking.k8s.io": ("ingressclasses",),
        "flowcontrol.apiserver.k8s.io": ("flowschemas", "prioritylevelconfigurations"),
        "resource.k8s.io": ("deviceclasses",),
    },
    "storage": {"": ("persistentvolumes", "persistentvolumeclaims")},
    "config": {
        "": ("serviceaccounts", "secrets", "configmaps", "limitranges", "resourcequotas", "podtemplates"),
        "resource.k8s.io": ("resourceclaimtemplates", "resourceclaims"),
    },
    "rbac": {"rbac.authorization.k8s.io": ("clusterroles", "roles", "clusterrolebindings", "rolebindings")},
    "services": {
        "": ("services", "endpoints"),
        "networking.k8s.io": ("ingresses", "networkpolicies"),
    },
    "workloads": {
        "apps": ("deployments", "statefulsets", "daemonsets", "replicasets"),
        "": ("replicationcontrollers", "pods"),
        "batch": ("cronjobs", "jobs"),
        "autoscaling": ("horizontalpodautoscalers",),
        "policy": ("poddisruptionbudgets",),
    },
    "admission": {
        "admissionregistration.k8s.io": (
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations",
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
            "mutatingadmissionpolicies",
            "mutatingadmissionpolicybindings",
        ),
        "apiregistration.k8s.io": ("apiservices",),
    },
}

_TIER_OF: dict[tuple[str, str], int] = {
    (group, resource): TIERS.index(tier)
    for tier, groups in _TABLE.items()
    for group, resources in groups.items()
    for resource in resources
}
CUSTOM = TIERS.index("custom")


class Tier(NamedTuple):
    rank: int
    name: str


def tier_of(group: str, resource: str) -> Tier:
    """The tier an object of ``resource`` in ``group`` is restored in."""
    index = _TIER_OF.get((group, resource), CUSTOM)
    return Tier(index, TIERS[index])
