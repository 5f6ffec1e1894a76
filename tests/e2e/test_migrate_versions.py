"""Migration across Kubernetes versions: a namespace backed up from the pinned cluster is restored
into a second cluster of ``versions.NEWER_KUBERNETES_VERSION``, then backed up there and restored
into the pinned one again.

Its CustomResourceDefinition has two versions, with a different one served on each side
(``v1alpha1`` on the pinned cluster, ``v1`` on the newer one), so the objects stored at one must
be sent at the other, both ways, and a field only the old schema has is refused by the new one.
A second CRD exists on the pinned cluster only: the restore brings it along, and its objects
count as served at its versions. A built-in kind only the newer release serves
(MutatingAdmissionPolicy) is reported with what the pinned one serves.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api
from kubekeep.engine.repository import Repository
from testenv import versions
from testenv.cluster import Cluster
from testenv.rest import ApiError, RestClient, resource_path
from tests.cli.helpers import KK, RepoSpec
from tests.support.k8s_fixtures import namespace_gone, restorable, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

IMAGE = "registry.kubekeep.test/app:1.0"


def _schema(*fields: str) -> dict[str, Any]:
    props = {name: {"type": "integer" if name == "size" else "string"} for name in fields}
    return {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": props}},
        }
    }


def _crd(group: str, plural: str, kind: str, served: str, versions_: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """A namespaced CRD declaring ``versions_`` (name -> schema fields), only ``served`` served and stored."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [
                {"name": v, "served": v == served, "storage": v == served, "schema": _schema(*fields)}
                for v, fields in versions_.items()
            ],
        },
    }


def _established(client: RestClient, name: str) -> bool:
    crd = client.get(resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=name))
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


@dataclass
class Side:
    """One of the two clusters, with the CRDs this test gave it."""

    cluster: Cluster
    client: RestClient
    crds: list[str]

    def backup(self, repo: Repository, ns: str) -> api.Snapshot:
        options = api.ManifestsSourceOptions(kubeconfig=str(self.cluster.kubeconfig), include_namespaces=[ns])
        return api.backup(repo, "k8s://", options=options)

    def restore(self, repo: Repository, ref: str, ns: str, **options: Any) -> list[dict[str, Any]]:
        stats = api.restore(
            repo,
            ref,
            "k8s://",
            select=api.ObjectSelector.build(namespaces=[ns]),
            options=api.ManifestsDestinationOptions(kubeconfig=str(self.cluster.kubeconfig), **options),
        )
        return stats.results

    def get(self, api_version: str, plural: str, ns: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(resource_path(api_version, plural, namespace=ns, name=name))
        return result


@pytest.fixture
def group() -> str:
    return f"m{uuid.uuid4().hex[:6]}.migrate.kubekeep.test"


def _side(cluster: Cluster, crds: list[dict[str, Any]]) -> Side:
    client = cluster.rest()
    for crd in crds:
        client.create(resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions"), crd)
    for crd in crds:
        wait_for(
            f"CRD {crd['metadata']['name']} Established", lambda c=crd: _established(client, c["metadata"]["name"])
        )
    return Side(cluster, client, [c["metadata"]["name"] for c in crds])


@pytest.fixture
def sides(cluster: Cluster, newer_cluster: Cluster, group: str) -> Iterator[tuple[Side, Side]]:
    """The pinned cluster (Gadgets served at v1alpha1, and Doohickeys) and the newer one (Gadgets
    at v1 only, no Doohickeys); both declare both Gadget versions."""
    gadget_versions = {"v1alpha1": ("size", "legacyColor"), "v1": ("size",)}
    old = _side(
        cluster,
        [
            _crd(group, "gadgets", "Gadget", "v1alpha1", gadget_versions),
            _crd(group, "doohickeys", "Doohickey", "v1alpha1", {"v1alpha1": ("size",)}),
        ],
    )
    new = _side(newer_cluster, [_crd(group, "gadgets", "Gadget", "v1", gadget_versions)])
    new.crds.append(f"doohickeys.{group}")  # the restore brings it along
    try:
        yield old, new
    finally:
        for side in (old, new):
            for name in side.crds:
                side.client.delete(resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=name))
            side.client.close()


def _fill(client: RestClient, ns: str, group: str) -> None:
    def create(api_version: str, plural: str, obj: dict[str, Any]) -> None:
        kind = obj.pop("kind")
        meta = {"namespace": ns, **obj.pop("metadata")}
        body = {"apiVersion": api_version, "kind": kind, "metadata": meta, **obj}
        client.create(resource_path(api_version, plural, namespace=ns), body)

    client.create(
        resource_path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    labels = {"app": "web"}
    create("v1", "configmaps", {"kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast"}})
    create(
        "apps/v1",
        "deployments",
        {
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": IMAGE, "ports": [{"containerPort": 8080}]}]},
                },
            },
        },
    )
    create(
        "v1",
        "services",
        {"kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
    )  # fmt: skip
    create(
        "v1",
        "persistentvolumeclaims",
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
    )  # fmt: skip
    create(f"{group}/v1alpha1", "gadgets", {"kind": "Gadget", "metadata": {"name": "plain"}, "spec": {"size": 3}})
    create(
        f"{group}/v1alpha1",
        "gadgets",
        {"kind": "Gadget", "metadata": {"name": "legacy"}, "spec": {"size": 1, "legacyColor": "red"}},
    )
    create(f"{group}/v1alpha1", "doohickeys", {"kind": "Doohickey", "metadata": {"name": "odd"}, "spec": {"size": 7}})


def _by_name(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["kind"], r["name"]): r for r in results}


def test_a_namespace_moves_to_the_newer_release_and_back(
    sides: tuple[Side, Side], group: str, manifests_repo: Repository, tmp_path: Path
) -> None:
    old, new = sides
    assert new.cluster.versions["kubernetes"] == versions.NEWER_KUBERNETES_VERSION
    assert new.client.get("/version")["gitVersion"] == versions.NEWER_KUBERNETES_VERSION
    assert old.client.get("/version")["gitVersion"] == versions.KUBERNETES_VERSION
    ns = f"migrate-{uuid.uuid4().hex[:6]}"
    _fill(old.client, ns, group)
    first = old.backup(manifests_repo, ns)
    before = restorable(manifests_repo, first, ns)
    assert before[("Gadget", "plain")]["apiVersion"] == f"{group}/v1alpha1"

    # pinned -> newer, dry run first: the version change is shown before anything is written
    planned = _by_name(new.restore(manifests_repo, first.id, ns, dry_run=True))
    gadget = planned[("Gadget", "plain")]
    assert gadget["action"] == "would create" and gadget["apiVersion"] == f"{group}/v1"
    assert gadget["storedApiVersion"] == f"{group}/v1alpha1"
    assert gadget["reason"].startswith(
        f"sent as {group}/v1 (stored as {group}/v1alpha1; the target serves Gadget at v1 only)"
    )
    odd = planned[("Doohickey", "odd")]  # its CRD comes with the namespace: served at its own versions
    assert odd["action"] == "would create" and "storedApiVersion" not in odd
    assert planned[("CustomResourceDefinition", f"doohickeys.{group}")]["action"] == "would create"
    assert planned[("CustomResourceDefinition", f"gadgets.{group}")]["action"] == "would skip"
    # the same from the command line, the version forced by --api-version-map
    kk = KK(RepoSpec(str(tmp_path / "repo")), password="pw", cache_dir=tmp_path / "cli-cache",
            extra_env={"KUBECONFIG": str(new.cluster.kubeconfig)})  # fmt: skip
    mapping = f"{group}/v1alpha1={group}/v1"
    proc = kk.run("restore", first.id, "--to", "k8s://", "-n", ns, "--dry-run", "--api-version-map", mapping, expect=16)
    text = proc.stdout.decode()
    assert re.search(
        rf"would create +Gadget {ns}/plain: sent as {group}/v1 \(stored as {group}/v1alpha1; --api-version-map\)", text
    ), text
    # the mapping takes the whole group version: the Doohickey's definition serves v1alpha1 only
    assert re.search(
        rf"would fail +Doohickey {ns}/odd: --api-version-map sends {group}/v1alpha1 as {group}/v1, "
        rf"but the target serves Doohickey at {group}/v1alpha1 only",
        text,
    ), text
    assert b"2 would fail" in proc.stderr
    with pytest.raises(ApiError):
        new.client.get(resource_path("v1", "namespaces", name=ns))  # the dry runs wrote nothing

    moved = _by_name(new.restore(manifests_repo, first.id, ns))
    for key in [("Namespace", ns), ("ConfigMap", "settings"), ("Deployment", "web"), ("Service", "web"),
                ("PersistentVolumeClaim", "data"), ("Gadget", "plain")]:  # fmt: skip
        assert moved[key]["action"] == "created", moved[key]
    assert moved[("Gadget", "plain")]["storedApiVersion"] == f"{group}/v1alpha1"
    legacy = moved[("Gadget", "legacy")]
    assert legacy["action"] == "failed" and legacy["storedApiVersion"] == f"{group}/v1alpha1"
    assert legacy["reason"].startswith(f"sent as {group}/v1 (stored as {group}/v1alpha1;")
    assert "legacyColor" in legacy["reason"]  # the server's strict validation names the field v1 lacks
    assert moved[("Doohickey", "odd")]["action"] == "created"
    assert moved[("Doohickey", "odd")]["apiVersion"] == f"{group}/v1alpha1"

    assert new.get(f"{group}/v1", "gadgets", ns, "plain")["spec"] == {"size": 3}
    assert new.get("v1", "configmaps", ns, "settings")["data"] == {"mode": "fast"}
    deployment = new.get("apps/v1", "deployments", ns, "web")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert new.get("v1", "services", ns, "web")["spec"]["ports"][0]["targetPort"] == 8080
    claim = new.get("v1", "persistentvolumeclaims", ns, "data")["spec"]
    assert claim["resources"]["requests"]["storage"] == "1Gi" and claim["accessModes"] == ["ReadWriteOnce"]
    wait_for(
        "the newer cluster's Deployment ready",
        lambda: new.get("apps/v1", "deployments", ns, "web").get("status", {}).get("readyReplicas") == 2,
    )

    # newer -> pinned: the namespace is deleted on the pinned cluster and comes back from the newer one
    second = new.backup(manifests_repo, ns)
    assert restorable(manifests_repo, second, ns)[("Gadget", "plain")]["apiVersion"] == f"{group}/v1"
    old.client.delete(resource_path("v1", "namespaces", name=ns))
    wait_for("the pinned cluster's namespace gone", lambda: namespace_gone(old.client, ns), timeout=120)
    back = _by_name(old.restore(manifests_repo, second.id, ns))
    assert not [r for r in back.values() if r["action"] == "failed"], back
    returned = back[("Gadget", "plain")]
    assert returned["action"] == "created" and returned["apiVersion"] == f"{group}/v1alpha1"
    assert returned["storedApiVersion"] == f"{group}/v1"

    after = restorable(manifests_repo, old.backup(manifests_repo, ns), ns)
    lost = {("Gadget", "legacy")}  # refused by the newer cluster: not in its backup
    assert set(after) == set(before) - lost
    assert after == {k: v for k, v in before.items() if k not in lost}
    old.client.delete(resource_path("v1", "namespaces", name=ns))
    new.client.delete(resource_path("v1", "namespaces", name=ns))


def test_a_built_in_kind_only_the_newer_release_serves_is_reported(
    sides: tuple[Side, Side], group: str, manifests_repo: Repository
) -> None:
    """MutatingAdmissionPolicy is GA (admissionregistration.k8s.io/v1) in the newer release; the
    pinned one serves it at no version by default. Without a binding the policy does nothing."""
    old, new = sides
    name = f"kubekeep-{group.split('.')[0]}"
    path = resource_path("admissionregistration.k8s.io/v1", "mutatingadmissionpolicies")
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}
                ]
            },
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "Never",
            "mutations": [
                {
                    "patchType": "ApplyConfiguration",
                    "applyConfiguration": {
                        "expression": 'Object{metadata: Object.metadata{labels: {"kubekeep.test/mutated": "true"}}}'
                    },
                }
            ],
        },
    }
    new.client.create(path, policy)
    try:
        snap = api.backup(
            manifests_repo,
            "k8s://",
            options=api.ManifestsSourceOptions(
                kubeconfig=str(new.cluster.kubeconfig), include_resources=["mutatingadmissionpolicies"]
            ),
        )
        select = api.ObjectSelector.build(kinds=["MutatingAdmissionPolicy"], names=[name])
        for dry_run in (True, False):
            stats = api.restore(
                manifests_repo,
                snap.id,
                "k8s://",
                select=select,
                options=api.ManifestsDestinationOptions(kubeconfig=str(old.cluster.kubeconfig), dry_run=dry_run),
            )
            [line] = stats.results
            assert line["action"] == ("would fail" if dry_run else "failed")
            assert line["reason"].startswith(
                "the target does not serve MutatingAdmissionPolicy (stored as admissionregistration.k8s.io/v1) "
                "at any version; it serves admissionregistration.k8s.io at v1"
            ), line
        # forcing a version the pinned cluster does not serve either is refused the same way, clearly
        stats = api.restore(
            manifests_repo,
            snap.id,
            "k8s://",
            select=select,
            options=api.ManifestsDestinationOptions(
                kubeconfig=str(old.cluster.kubeconfig),
                api_version_map={"admissionregistration.k8s.io/v1": "admissionregistration.k8s.io/v1beta1"},
            ),
        )
        [line] = stats.results
        assert line["action"] == "failed"
        assert line["reason"].startswith(
            "--api-version-map sends admissionregistration.k8s.io/v1 as admissionregistration.k8s.io/v1beta1, "
            "but the target does not serve MutatingAdmissionPolicy in admissionregistration.k8s.io"
        ), line
    finally:
        new.client.delete(resource_path("admissionregistration.k8s.io/v1", "mutatingadmissionpolicies", name=name))
