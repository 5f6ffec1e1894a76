"""Objects testenv puts into a fresh cluster: RBAC, CRDs, nodes, storage classes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from testenv import kwok, pki
from testenv.rest import ApiError, RestClient, resource_path

#: Test CSI driver name used by the StorageClass and VolumeSnapshotClass.
CSI_DRIVER = "hostpath.csi.kubekeep.test"
STORAGE_CLASS = "kubekeep-hostpath"
SNAPSHOT_CLASS = "kubekeep-hostpath-snapclass"
READONLY_ROLE = "kubekeep:readonly"

_READ_VERBS = ["get", "list", "watch"]


def readonly_rules(client: RestClient) -> list[dict[str, Any]]:
    """RBAC rules granting read on every served resource except Secrets.

    RBAC cannot subtract, so core resources are enumerated from discovery and
    every other API group is granted wholesale. Call :func:`sync_readonly_role`
    again after adding CRDs in new groups.
    """
    core = client.get("/api/v1")["resources"]
    core_names = sorted({r["name"] for r in core if r["name"].split("/")[0] != "secrets"})
    groups = sorted(g["name"] for g in client.get("/apis")["groups"])
    return [
        {"apiGroups": [""], "resources": core_names, "verbs": _READ_VERBS},
        {"apiGroups": groups, "resources": ["*"], "verbs": _READ_VERBS},
    ]


def sync_readonly_role(client: RestClient) -> None:
    """Create or update the least-privilege ClusterRole and its binding."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": READONLY_ROLE, "labels": {"app.kubernetes.io/managed-by": "kubekeep-testenv"}},
        "rules": readonly_rules(client),
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": READONLY_ROLE, "labels": {"app.kubernetes.io/managed-by": "kubekeep-testenv"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READONLY_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": pki.READONLY_GROUP}],
    }
    rbac = "rbac.authorization.k8s.io/v1"
    client.apply(resource_path(rbac, "clusterroles", name=READONLY_ROLE), role)
    client.apply(resource_path(rbac, "clusterrolebindings", name=READONLY_ROLE), binding)


def load_manifests(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """All YAML documents in ``paths`` (empty documents skipped)."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def create_crds(client: RestClient, crds: Iterable[dict[str, Any]]) -> list[str]:
    """Create (or update) CustomResourceDefinitions; return their names."""
    names = []
    for crd in crds:
        name = crd["metadata"]["name"]
        client.apply(resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=name), crd)
        names.append(name)
    return names


def crds_established(client: RestClient, names: Iterable[str]) -> bool:
    """Whether every named CRD has condition Established=True."""
    for name in names:
        obj = client.get(resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=name))
        conds = obj.get("status", {}).get("conditions", [])
        if not any(c["type"] == "Established" and c["status"] == "True" for c in conds):
            return False
    return True


def create_nodes(client: RestClient, names: Iterable[str]) -> None:
    """Create the kwok-managed fake nodes."""
    for index, name in enumerate(names):
        client.create(resource_path("v1", "nodes"), kwok.node_manifest(name, index), exist_ok=True)


def nodes_ready(client: RestClient, names: Iterable[str]) -> bool:
    """Whether every named node reports Ready=True."""
    wanted = set(names)
    for node in client.get(resource_path("v1", "nodes"))["items"]:
        conds = node.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            wanted.discard(node["metadata"]["name"])
    return not wanted


def create_storage_class(client: RestClient) -> None:
    """Default StorageClass provisioned by the test CSI driver."""
    sc = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": CSI_DRIVER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }
    client.apply(resource_path("storage.k8s.io/v1", "storageclasses", name=STORAGE_CLASS), sc)


def create_snapshot_class(client: RestClient) -> None:
    """Default VolumeSnapshotClass for the test CSI driver (needs the CRDs established)."""
    vsc = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {
            "name": SNAPSHOT_CLASS,
            "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"},
        },
        "driver": CSI_DRIVER,
        "deletionPolicy": "Delete",
    }
    client.apply(resource_path("snapshot.storage.k8s.io/v1", "volumesnapshotclasses", name=SNAPSHOT_CLASS), vsc)


NO_PROXY_POLICY = "kubekeep-testenv-no-proxy"


def create_no_proxy_policy(client: RestClient) -> None:
    """Deny the pods/proxy and services/proxy subresources, for everyone.

    They make the apiserver dial pod IPs, which here are simulated addresses in
    10.244.0.0/16 that must never receive traffic. (exec, logs, port-forward
    dial the node's loopback InternalIP and are refused on the spot.)
    """
    api = "admissionregistration.k8s.io/v1"
    labels = {"app.kubernetes.io/managed-by": "kubekeep-testenv"}
    policy = {
        "apiVersion": api,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": NO_PROXY_POLICY, "labels": labels},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CONNECT"],
                        "resources": ["pods/proxy", "services/proxy"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "false",
                    "message": "testenv: pod and service IPs are simulated; the proxy subresources are disabled",
                }
            ],
        },
    }
    binding = {
        "apiVersion": api,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": NO_PROXY_POLICY, "labels": labels},
        "spec": {"policyName": NO_PROXY_POLICY, "validationActions": ["Deny"]},
    }
    client.apply(resource_path(api, "validatingadmissionpolicies", name=NO_PROXY_POLICY), policy)
    client.apply(resource_path(api, "validatingadmissionpolicybindings", name=NO_PROXY_POLICY), binding)


def default_service_account_exists(client: RestClient, namespace: str = "default") -> bool:
    """Whether the ServiceAccount controller has created ``default`` in ``namespace``."""
    try:
        client.get(resource_path("v1", "serviceaccounts", namespace=namespace, name="default"))
    except ApiError as err:
        if err.status == 404:
            return False
        raise
    return True
