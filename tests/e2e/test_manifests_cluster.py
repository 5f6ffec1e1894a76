"""The manifests layer against the local control plane: every "Done when" point of the issue.

One module-scoped set of seeded namespaces; each test works in its own namespace (or on a copy)
so the tests do not depend on each other's order.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubekeep import api, errors
from kubekeep.engine.repository import Repository
from kubekeep.manifests import serialization
from kubekeep.manifests.fielddiff import ADDED, CHANGED
from kubekeep.manifests.planning import RESTORED_FROM_LABEL
from testenv.rest import resource_path
from tests.support.k8s_fixtures import Seeded, namespace_gone, restorable, snapshot_objects, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def _ns_objects(results: list[dict[str, Any]], action: str) -> set[tuple[str, str]]:
    return {(r["kind"], r["name"]) for r in results if r["action"] == action}


def test_backup_stores_objects_with_status_discovery_and_version(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[0]
    snap = seeded.backup(manifests_repo, include_namespaces=[ns])
    assert snap.kind == "manifests" and snap.warnings == []
    assert snap.source["extra"]["server"] == seeded.cluster.server
    assert snap.source["extra"]["version"].startswith("v1.")
    files = {path for path, node in api.ls(manifests_repo, "latest", recursive=True) if node.type == "file"}
    assert {
        "/discovery.json",
        "/version.json",
        "/cluster/core/namespaces/" + ns + ".yaml",
        "/cluster/core/nodes/kwok-node-0.yaml",
        "/cluster/apiextensions.k8s.io/customresourcedefinitions/widgets.example.kubekeep.test.yaml",
        f"/namespaces/{ns}/example.kubekeep.test/widgets/widget-0.yaml",
        f"/namespaces/{ns}/core/secrets/credentials-0.yaml",
        f"/namespaces/{ns}/apps/deployments/web-0.yaml",
    } <= files
    assert not any("/events/" in f or "/leases/" in f for f in files)  # noisy resources are off by default
    assert not any(f.startswith("/namespaces/") and not f.startswith(f"/namespaces/{ns}/") for f in files)
    widget = serialization.load(
        b"".join(api.cat(manifests_repo, f"latest:/namespaces/{ns}/example.kubekeep.test/widgets/widget-0.yaml"))
    )
    assert widget["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert widget["metadata"]["uid"] and widget["apiVersion"] == "example.kubekeep.test/v1"
    node = next(n for p, n in api.ls(manifests_repo, f"latest:/namespaces/{ns}/apps/deployments/web-0.yaml"))
    assert node.attrs["kind"] == "Deployment" and node.attrs["namespace"] == ns
    discovery = serialization.load(b"".join(api.cat(manifests_repo, "latest:/discovery.json")))
    assert {"group": "apps", "resource": "deployments"}.items() <= next(
        r for r in discovery["resources"] if r["resource"] == "deployments"
    ).items()
    assert snap.metadata["manifests"]["objects"] == len(files) - 2


def test_noisy_resources_and_filters(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[0]
    snap = seeded.backup(
        manifests_repo,
        include_resources=["configmaps", "events", "Widget"],
        include_namespaces=[ns],
        selector="kubekeep.test/seeded=true",
    )
    resources = {
        n.attrs.get("resource")
        for _, n in api.ls(manifests_repo, f"{snap.id}:/namespaces", recursive=True)
        if n.type == "file"
    }
    assert resources <= {"configmaps", "events", "widgets"} and {"configmaps", "widgets"} <= resources
    objects = snapshot_objects(manifests_repo, snap, f"namespaces/{ns}/core/configmaps")
    assert "kube-root-ca.crt" not in {o["metadata"]["name"] for o in objects.values()}  # not labelled: filtered


def test_deleted_namespace_comes_back_equal_including_custom_objects(
    seeded: Seeded, manifests_repo: Repository
) -> None:
    ns = seeded.namespaces[1]
    snap = seeded.backup(manifests_repo, include_namespaces=[ns])
    before = restorable(manifests_repo, snap, ns)
    assert ("Widget", "widget-0") in before and ("Deployment", "web-0") in before
    client = seeded.rest()
    client.delete(resource_path("v1", "namespaces", name=ns))
    results = seeded.restore(
        manifests_repo, snap.id, select=api.ObjectSelector.build(namespaces=[ns])
    )  # waits for termination
    assert not [r for r in results if r["action"] == "failed"]
    assert {(r["kind"], r["name"]) for r in results if r["action"] == "created"} >= set(before) - {
        ("ServiceAccount", "default")
    }  # default may have been recreated by its controller first
    live = seeded.rest().get(resource_path("apps/v1", "deployments", namespace=ns, name="web-0"))
    assert live["metadata"]["labels"][RESTORED_FROM_LABEL] == snap.short_id
    after = restorable(manifests_repo, seeded.backup(manifests_repo, include_namespaces=[ns]), ns)
    assert after == before


def test_a_single_deployment_restores_alone(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[2]
    snap = seeded.backup(manifests_repo, include_namespaces=[ns])
    client = seeded.rest()
    client.delete(resource_path("apps/v1", "deployments", namespace=ns, name="web-1"))
    wait_for(
        "deployment deleted",
        lambda: (
            "web-1"
            not in {
                d["metadata"]["name"]
                for d in client.get(resource_path("apps/v1", "deployments", namespace=ns))["items"]
            }
        ),
    )
    results = seeded.restore(
        manifests_repo, snap.id, select=api.ObjectSelector.build(namespaces=[ns], kinds=["Deployment"], names=["web-1"])
    )
    assert [(r["action"], r["kind"], r["name"]) for r in results] == [("created", "Deployment", "web-1")]
    live = client.get(resource_path("apps/v1", "deployments", namespace=ns, name="web-1"))
    original = snapshot_objects(manifests_repo, snap, f"namespaces/{ns}/apps/deployments")[
        f"namespaces/{ns}/apps/deployments/web-1.yaml"
    ]
    assert live["spec"]["template"] == original["spec"]["template"]
    assert live["metadata"]["uid"] != original["metadata"]["uid"]


def test_namespace_restored_under_a_new_name(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[3]
    new = f"{ns}-copy"
    snap = seeded.backup(manifests_repo, include_namespaces=[ns])
    try:
        results = seeded.restore(
            manifests_repo, snap.id, select=api.ObjectSelector.build(namespaces=[ns]), namespace_map={ns: new}
        )
        assert not [r for r in results if r["action"] == "failed"]
        assert {r["namespace"] for r in results if r["namespace"]} == {new}
        client = seeded.rest()
        binding = client.get(
            resource_path("rbac.authorization.k8s.io/v1", "rolebindings", namespace=new, name="reader-0")
        )
        assert binding["subjects"][0]["namespace"] == new
        copied = restorable(manifests_repo, seeded.backup(manifests_repo, include_namespaces=[new]), new)
        original = restorable(manifests_repo, snap, ns)
        for obj in original.values():
            obj["metadata"]["name" if obj["kind"] == "Namespace" else "namespace"] = new
            for subject in obj.get("subjects") or []:
                subject["namespace"] = new
        assert copied == {(o["kind"], o["metadata"]["name"]): o for o in original.values()}
        assert restorable(manifests_repo, seeded.backup(manifests_repo, include_namespaces=[ns]), ns) == restorable(
            manifests_repo, snap, ns
        )
    finally:
        seeded.rest().delete(resource_path("v1", "namespaces", name=new))


def test_dry_run_changes_nothing_and_shows_field_changes(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[4]
    snap = seeded.backup(manifests_repo, include_namespaces=[ns])
    client = seeded.rest()
    client.delete(resource_path("v1", "configmaps", namespace=ns, name="config-0"))
    client.request(
        "PATCH",
        resource_path("v1", "configmaps", namespace=ns, name="config-1"),
        {"data": {"LOG_LEVEL": "debug"}},
        content_type="application/merge-patch+json",
    )
    before = snapshot_objects(
        manifests_repo, seeded.backup(manifests_repo, include_namespaces=[ns]), f"namespaces/{ns}"
    )
    select = api.ObjectSelector.build(namespaces=[ns])
    for existing in ("skip", "update"):
        results = {
            (r["kind"], r["name"]): r
            for r in seeded.restore(manifests_repo, snap.id, select=select, dry_run=True, existing=existing)
        }
        assert results[("ConfigMap", "config-0")]["action"] == "would create"
        changed = results[("ConfigMap", "config-1")]
        assert {"path": "data.LOG_LEVEL", "op": CHANGED, "old": "debug", "new": "info"} in changed["diff"]
        assert results[("Namespace", ns)]["action"] == ("would skip" if existing == "skip" else "would update")
        assert not [r for r in results.values() if r["action"] == "would fail"]
    copy_results = seeded.restore(manifests_repo, snap.id, select=select, dry_run=True, namespace_map={ns: f"{ns}-dry"})
    assert {r["action"] for r in copy_results if r["namespace"] or r["kind"] == "Namespace"} <= {
        "would create",
        "skipped",
    }
    after = snapshot_objects(manifests_repo, seeded.backup(manifests_repo, include_namespaces=[ns]), f"namespaces/{ns}")
    assert {p: o["metadata"]["resourceVersion"] for p, o in after.items() if "/pods/" not in p} == {
        p: o["metadata"]["resourceVersion"] for p, o in before.items() if "/pods/" not in p
    }
    assert namespace_gone(client, f"{ns}-dry")


def test_two_snapshots_diff_to_exactly_the_changes(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[0]
    first = seeded.backup(manifests_repo, include_namespaces=[ns])
    client = seeded.rest()
    cm = resource_path("v1", "configmaps", namespace=ns, name="config-2")
    client.request(
        "PATCH",
        cm,
        {"data": {"LOG_LEVEL": "warn", "EXTRA": "1"}, "metadata": {"labels": {"tier": "x"}}},
        content_type="application/merge-patch+json",
    )
    client.create(
        resource_path("v1", "configmaps", namespace=ns),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "added"}, "data": {"k": "v"}},
    )
    client.delete(resource_path("v1", "secrets", namespace=ns, name="credentials-2"))
    client.request(
        "PATCH",
        resource_path(f"{'example.kubekeep.test'}/v1", "widgets", namespace=ns, name="widget-4"),
        {"spec": {"color": "black"}},
        content_type="application/merge-patch+json",
    )
    second = seeded.backup(manifests_repo, include_namespaces=[ns])
    changes = api.diff_manifests(manifests_repo, first.id, second.id, path=f"namespaces/{ns}")
    summary = {(c.status, c.kind, c.name, tuple((f.path, f.op, f.old, f.new) for f in c.fields)) for c in changes}
    assert summary == {
        (
            "M",
            "ConfigMap",
            "config-2",
            (
                ("metadata.labels.tier", ADDED, None, "x"),
                ("data.LOG_LEVEL", CHANGED, "info", "warn"),
                ("data.EXTRA", ADDED, None, "1"),
            ),
        ),
        ("+", "ConfigMap", "added", ()),
        ("-", "Secret", "credentials-2", ()),
        ("M", "Widget", "widget-4", (("spec.color", CHANGED, "red", "black"),)),
    }
    churn = api.diff_manifests(manifests_repo, first.id, second.id, path=f"namespaces/{ns}", churn=True)
    widget = next(c for c in churn if c.name == "widget-4")
    assert {f.path for f in widget.fields} >= {"metadata.resourceVersion", "metadata.generation", "spec.color"}


def test_least_privilege_kubeconfig_still_gets_a_snapshot(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[0]
    snap = seeded.backup(manifests_repo, readonly=True, include_namespaces=[ns])
    assert any("cannot list secrets (v1)" in w and "forbidden" in w for w in snap.warnings), snap.warnings
    files = {p for p, n in api.ls(manifests_repo, f"{snap.id}:/namespaces/{ns}", recursive=True) if n.type == "file"}
    assert files and not any("/core/secrets/" in f for f in files)
    assert f"/namespaces/{ns}/core/configmaps/config-0.yaml" in files


def test_a_broken_aggregated_api_is_a_warning(seeded: Seeded, manifests_repo: Repository) -> None:
    client = seeded.rest()
    path = resource_path("apiregistration.k8s.io/v1", "apiservices", name="v1.broken.kubekeep.test")
    client.create(
        resource_path("apiregistration.k8s.io/v1", "apiservices"),
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1.broken.kubekeep.test"},
            "spec": {
                "group": "broken.kubekeep.test",
                "version": "v1",
                "groupPriorityMinimum": 100,
                "versionPriority": 10,
                "insecureSkipTLSVerify": True,
                "service": {"name": "nothing-here", "namespace": "default"},
            },
        },
    )
    try:
        wait_for(
            "the broken API in discovery",
            lambda: "broken.kubekeep.test" in {g["name"] for g in client.get("/apis")["groups"]},
        )
        snap = seeded.backup(manifests_repo, include_namespaces=[seeded.namespaces[0]])
        assert any("broken.kubekeep.test/v1" in w for w in snap.warnings), snap.warnings
        assert snap.metadata["manifests"]["objects"] > 100
    finally:
        client.delete(path)


def test_unreachable_cluster_is_a_one_line_error(manifests_repo: Repository, tmp_path: Any, cluster: Any) -> None:
    kubeconfig = serialization.load(cluster.kubeconfig.read_bytes())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    path = tmp_path / "dead.kubeconfig"
    path.write_bytes(serialization.dump(kubeconfig))
    with pytest.raises(errors.SourceUnreachable) as info:
        api.backup(manifests_repo, "k8s://", options=api.ManifestsSourceOptions(kubeconfig=str(path)))
    assert str(info.value).startswith("cannot reach the Kubernetes API at https://127.0.0.1:9: ")
    assert "\n" not in str(info.value)


def test_restore_to_a_directory_writes_clean_yaml_for_kubectl(
    seeded: Seeded, manifests_repo: Repository, tmp_path: Any
) -> None:
    ns = seeded.namespaces[0]
    snap = seeded.backup(manifests_repo, include_namespaces=[ns])
    select = api.ObjectSelector.build(namespaces=[ns])
    out = tmp_path / "gitops"
    stats = api.restore(manifests_repo, snap.id, f"fs:{out}", select=select)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yaml"))
    assert f"cluster/core/namespaces/{ns}.yaml" in files
    assert "cluster/apiextensions.k8s.io/customresourcedefinitions/widgets.example.kubekeep.test.yaml" in files
    assert f"namespaces/{ns}/example.kubekeep.test/widgets/widget-0.yaml" in files
    assert not any("/pods/" in f or "/replicasets/" in f or "/endpointslices/" in f for f in files)
    assert len(files) == sum(1 for r in stats.results if r["action"] == "written") > 20
    for f in files:
        obj = serialization.load((out / f).read_bytes())
        meta = obj["metadata"]
        assert not {"uid", "resourceVersion", "creationTimestamp", "managedFields", "ownerReferences"} & set(meta), f
        assert "status" not in obj and RESTORED_FROM_LABEL not in (meta.get("labels") or {})
    result = seeded.cluster.kubectl("apply", "--dry-run=server", "-R", "-f", str(out), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(files)

    mapped = tmp_path / "mapped"
    api.restore(
        manifests_repo,
        snap.id,
        f"fs:{mapped}",
        select=select,
        options=api.ManifestsDestinationOptions(namespace_map={ns: f"{ns}-git"}),
    )
    copied = serialization.load((mapped / f"namespaces/{ns}-git/core/configmaps/config-0.yaml").read_bytes())
    assert copied["metadata"]["namespace"] == f"{ns}-git"
    assert (mapped / f"cluster/core/namespaces/{ns}-git.yaml").exists()

    raw = tmp_path / "raw"
    api.restore(
        manifests_repo, f"{snap.id}:/namespaces/{ns}", f"fs:{raw}", options=api.ManifestsDestinationOptions(raw=True)
    )
    assert serialization.load((raw / "core/configmaps/config-0.yaml").read_bytes())["metadata"]["uid"]


def test_custom_objects_wait_for_their_crd_and_owners_are_relinked(
    seeded: Seeded, manifests_repo: Repository, namespace: str
) -> None:
    client = seeded.rest()
    crd = copy.deepcopy(_gadget_crd())
    client.create(resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions"), crd)
    crd_path = resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=crd["metadata"]["name"])
    try:
        wait_for(
            "CRD established",
            lambda: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (client.get(crd_path).get("status") or {}).get("conditions") or []
            ),
        )
        gadgets = resource_path("restore.kubekeep.test/v1", "gadgets", namespace=namespace)
        wait_for("gadgets served", lambda: _served(client, gadgets))
        owner = client.create(
            gadgets,
            {
                "apiVersion": "restore.kubekeep.test/v1",
                "kind": "Gadget",
                "metadata": {"name": "g1"},
                "spec": {"size": 3},
            },
        )
        client.create(
            resource_path("v1", "configmaps", namespace=namespace),
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "owned",
                    "ownerReferences": [
                        {
                            "apiVersion": "restore.kubekeep.test/v1",
                            "kind": "Gadget",
                            "name": "g1",
                            "uid": owner["metadata"]["uid"],
                        }
                    ],
                },
                "data": {"a": "b"},
            },
        )
        snap = seeded.backup(manifests_repo, include_namespaces=[namespace])
        client.delete(crd_path)
        client.delete(resource_path("v1", "namespaces", name=namespace))
        wait_for("CRD deleted", lambda: not _served(client, crd_path), timeout=120)
        results = seeded.restore(manifests_repo, snap.id, select=api.ObjectSelector.build(namespaces=[namespace]))
        assert ("created", "CustomResourceDefinition") in {(r["action"], r["kind"]) for r in results}
        assert not [r for r in results if r["action"] == "failed"]
        gadget = client.get(resource_path("restore.kubekeep.test/v1", "gadgets", namespace=namespace, name="g1"))
        owned = client.get(resource_path("v1", "configmaps", namespace=namespace, name="owned"))
        assert owned["metadata"]["ownerReferences"][0]["uid"] == gadget["metadata"]["uid"] != owner["metadata"]["uid"]
    finally:
        client.delete(crd_path)


def _served(client: Any, path: str) -> bool:
    try:
        client.get(path)
        return True
    except Exception:  # noqa: BLE001 - 404 until served
        return False


def _gadget_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.restore.kubekeep.test"},
        "spec": {
            "group": "restore.kubekeep.test",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


def test_summary_shows_the_cluster_at_that_time(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[0]
    seeded.backup(manifests_repo, include_namespaces=[ns])
    s = api.summary(manifests_repo, "latest", namespaces=[ns])
    assert len(s.nodes) == len(seeded.cluster.node_names) and all(n.ready == "True" for n in s.nodes)
    state = s.namespaces[ns]
    assert state.phase == "Active" and state.objects > 20
    assert {(w.kind, w.name, w.desired) for w in state.workloads} >= {
        ("Deployment", "web-0", 2),
        ("StatefulSet", "db-0", 1),
    }
    assert {c.name for c in state.claims} == {"data-0", "data-1"}
    assert s.info["version"].startswith("v1.") and s.info["short_id"]
    with pytest.raises(errors.UsageError):
        api.summary(manifests_repo, api.backup(manifests_repo, str(seeded.cluster.run_dir / "pki")).id)


def test_an_unchanged_namespace_diffs_to_nothing(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[0]
    first = seeded.backup(manifests_repo, include_namespaces=[ns])
    second = seeded.backup(manifests_repo, include_namespaces=[ns])
    assert api.diff_manifests(manifests_repo, first.id, second.id, path=f"namespaces/{ns}") == []
    assert api.diff_manifests(manifests_repo, first.id, second.id) == []  # nodes' heartbeats are churn
