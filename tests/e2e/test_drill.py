"""Restore drills against the local control plane (docs/drills.md): a namespace with a
Deployment (kwok's simulated nodes make its pods ready), a Job (kwok completes its pod), a
ConfigMap and a Service is backed up and drilled; a drill of a snapshot whose object the cluster changes on create reports the
difference and fails; the scratch namespaces are gone afterwards either way."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api, errors
from kubekeep.api.restore_drills import scratch_name
from kubekeep.engine.repository import Repository
from testenv.cluster import Cluster
from testenv.rest import ApiError, RestClient, resource_path
from tests.cli.helpers import KK, RepoSpec
from tests.support.k8s_fixtures import namespace_gone, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

GROUP = "drill.kubekeep.test"
CRD = f"gadgets.{GROUP}"


def _app(client: RestClient, ns: str) -> None:
    labels = {"app": "web"}
    client.create(
        resource_path("apps/v1", "deployments", namespace=ns),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels, "annotations": {"team": "payments"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "registry.kubekeep.test/app:1.0",
                                "env": [{"name": "MODE", "value": "live"}],
                                "ports": [{"containerPort": 8080}],
                            }
                        ]
                    },
                },
            },
        },
    )
    client.create(
        resource_path("v1", "configmaps", namespace=ns),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"LOG_LEVEL": "info"}},
    )
    client.create(
        resource_path("v1", "services", namespace=ns),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )

    client.create(
        resource_path("batch/v1", "jobs", namespace=ns),
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "migrate"},
            "spec": {
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "m", "image": "registry.kubekeep.test/m:1"}],
                    }
                },
            },
        },
    )

    def available() -> bool:
        status = client.get(resource_path("apps/v1", "deployments", namespace=ns, name="web")).get("status") or {}
        job = client.get(resource_path("batch/v1", "jobs", namespace=ns, name="migrate")).get("status") or {}
        return status.get("availableReplicas") == 2 and job.get("succeeded") == 1

    wait_for("the Deployment available and the Job complete", available, timeout=120)


def _backup(repo: Repository, cluster: Cluster, ns: str) -> api.Snapshot:
    options = api.ManifestsSourceOptions(kubeconfig=str(cluster.kubeconfig), include_namespaces=(ns,))
    return api.backup(repo, "k8s://", options=options)


def test_drill_restores_waits_compares_times_and_cleans_up(
    cluster: Cluster, namespace: str, manifests_repo: Repository
) -> None:
    client = cluster.rest()
    _app(client, namespace)
    snap = _backup(manifests_repo, cluster, namespace)
    lines: list[str] = []
    report = api.drill(
        manifests_repo,
        snap.id,
        "k8s://",
        api.DrillOptions(kubeconfig=str(cluster.kubeconfig), namespaces=(namespace,), timeout=120),
        status=lines.append,
    )
    assert report.ok, report.reason
    assert report.reason == "" and report.snapshot == snap.id
    [ns] = report.namespaces
    target = scratch_name(namespace, report.token)
    assert target.endswith(f"-drill-{report.token}") and len(target) <= 63
    assert (ns.source, ns.target) == (namespace, target)
    assert ns.ready and ns.failed == 0 and ns.differences == 0 and ns.workloads == 2
    compared = {(o.kind, o.name) for o in report.objects if o.compared and not o.differences}
    assert {
        ("Namespace", target),
        ("Deployment", "web"),
        ("ConfigMap", "settings"),
        ("Service", "web"),
        ("Job", "migrate"),
    } <= compared
    assert all(o.target_namespace == target for o in report.objects if o.kind != "Namespace")
    assert sorted((w.kind, w.namespace, w.name, w.state, w.detail) for w in report.workloads) == [
        ("Deployment", target, "web", "ready", "2/2 available"),
        ("Job", target, "migrate", "ready", "complete"),  # it ran again, to completion
    ]
    # the figures: restore, time to ready after it (0 when kwok had the pods ready before the
    # restore ended), their sum the RTO, all within the whole drill
    assert report.restore_s > 0 and report.ready_s is not None and report.ready_s >= 0
    assert report.rto_s == pytest.approx(report.restore_s + report.ready_s, abs=0.01)
    assert ns.rto_s == pytest.approx(report.rto_s, abs=0.01) and report.rto_s < report.total_s
    # cleaned up: the scratch namespace is gone, the source untouched
    assert report.cleanup.removed == [f"Namespace {target}"] and report.cleanup.problems == []
    assert namespace_gone(client, target)
    assert client.get(resource_path("apps/v1", "deployments", namespace=namespace, name="web"))
    assert any(line.startswith("waiting up to 2m for 2 workload") for line in lines)
    # stored: the report and a run record for monitoring
    stored, damaged = api.drills(manifests_repo)
    assert damaged == [] and [r.id for r in stored] == [report.id]
    assert api.drill_report(manifests_repo, report.id[:8]).to_dict() == report.to_dict()
    runs = [r for r in api.repository_metrics(manifests_repo).runs if r.command == "drill"]
    assert [(r.source, r.runs, r.failures, r.last_ok) for r in runs] == [(snap.uri, 1, 0, True)]
    client.close()


def _crd(preserve_unknown: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "object", "properties": {"size": {"type": "integer"}}}
    if preserve_unknown:
        spec["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}},
                }
            ],
        },
    }


@pytest.fixture
def gadgets(cluster: Cluster) -> Iterator[RestClient]:
    """The Gadget CRD, its schema keeping unknown fields; removed afterwards."""
    client = cluster.rest()
    path = resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=CRD)
    client.apply(path, _crd(preserve_unknown=True))

    def established() -> bool:
        conditions = (client.get(path).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for("the Gadget CRD established", established)
    try:
        yield client
    finally:
        client.delete(path)
        client.close()


def _pruned(client: RestClient, ns: str) -> bool:
    """Whether the API server now prunes unknown Gadget fields (a dry-run create tells)."""
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": f"probe-{uuid.uuid4().hex[:6]}"}}
    body["spec"] = {"size": 1, "colour": "red"}
    try:
        created = client.request(
            "POST", resource_path(f"{GROUP}/v1", "gadgets", namespace=ns), body, params={"dryRun": "All"}
        )
    except ApiError:
        return False
    return "colour" not in created["spec"]


def test_drill_reports_what_the_cluster_changed_on_create_and_fails(
    cluster: Cluster, namespace: str, gadgets: RestClient, tmp_path: Path
) -> None:
    """The Gadget's schema changes after the backup so that the API server prunes a field the
    snapshot holds: the restore succeeds, the restored object lacks the field, the drill says so."""
    client = gadgets
    client.create(
        resource_path("v1", "configmaps", namespace=namespace),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"A": "1"}},
    )
    client.create(
        resource_path(f"{GROUP}/v1", "gadgets", namespace=namespace),
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Gadget",
            "metadata": {"name": "gadget-0"},
            "spec": {"size": 3, "colour": "red"},
        },
    )
    kk = KK(RepoSpec(str(tmp_path / "repo")), cache_dir=tmp_path / "cache")
    kk.run("init")
    kubeconfig = str(cluster.kubeconfig)
    snap = kk.json("backup", "k8s://", "--kubeconfig", kubeconfig, "--include-namespace", namespace)["id"]
    client.apply(resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=CRD), _crd(False))
    wait_for("unknown Gadget fields pruned", lambda: _pruned(client, namespace))

    started = time.monotonic()
    proc = kk.run("drill", snap[:8], "--to", "k8s://", "--kubeconfig", kubeconfig, "-n", namespace, expect=18)
    assert time.monotonic() - started < 120
    stderr = proc.stderr.decode().strip().splitlines()
    assert stderr[-1].startswith("error: drill failed: 1 difference(s) in 1 object(s) (Gadget ")
    assert stderr[-1].endswith(": spec.colour)")
    out = proc.stdout.decode()
    assert "FAILED" in out and '- spec.colour: "red" (missing)' in out

    report = kk.json("drill", snap[:8], "--to", "k8s://", "--kubeconfig", kubeconfig, "-n", namespace, expect=18)
    assert report["ok"] is False and report["outcome"] == "failure"
    gadget = next(o for o in report["objects"] if o["kind"] == "Gadget")
    assert gadget["action"] == "created" and gadget["compared"] is True
    assert gadget["differences"] == [{"path": "spec.colour", "op": "removed", "old": "red", "new": None}]
    crd = next(o for o in report["objects"] if o["kind"] == "CustomResourceDefinition")
    assert (crd["action"], crd["compared"]) == ("skipped", False)  # it existed: not the drill's to compare or delete
    others = [o for o in report["objects"] if o["kind"] != "Gadget"]
    assert all(o["differences"] == [] for o in others)
    target = report["namespaces"][0]["target"]
    assert namespace_gone(client, target)
    assert client.get(resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=CRD))
    assert report["cleanup"]["removed"] == [f"Namespace {target}"]
    # both drills are stored: listed, shown, exported
    listed = kk.out("drills").splitlines()
    assert len(listed) == 2 and all("failed" in line and "1 differences" in line for line in listed)
    assert listed[-1].split()[2] == report["id"][:8]
    assert '- spec.colour: "red" (missing)' in kk.out("drills", report["id"][:8])
    assert [r["id"] for r in kk.json("drills")][-1] == report["id"]


def _scratch_namespaces(client: RestClient, token: str = "") -> list[str]:
    selector = "kubekeep.io/purpose=drill" + (f",kubekeep.io/run=drill-{token}" if token else "")
    items = client.get(resource_path("v1", "namespaces"), labelSelector=selector)["items"]
    return [ns["metadata"]["name"] for ns in items if not ns["metadata"].get("deletionTimestamp")]


def test_sigterm_mid_drill_removes_the_scratch_namespace_and_records_it(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """A drill terminated while it waits (a Deployment no node can take) unwinds like Ctrl-C:
    exit 130, the scratch namespace deleted, the report stored as interrupted."""
    client = cluster.rest()
    _stuck(client, namespace)
    kk = KK(RepoSpec(str(tmp_path / "repo")), cache_dir=tmp_path / "cache")
    kk.run("init")
    kubeconfig = str(cluster.kubeconfig)
    kk.run("backup", "k8s://", "--kubeconfig", kubeconfig, "--include-namespace", namespace)
    before = set(_scratch_namespaces(client))
    proc = kk.popen("drill", "latest", "--to", "k8s://", "--kubeconfig", kubeconfig, "-n", namespace, "--timeout", "5m")
    try:
        wait_for("the drill waiting for its workload", lambda: bool(set(_scratch_namespaces(client)) - before))
        [scratch] = set(_scratch_namespaces(client)) - before
        wait_for(
            "the Deployment restored",
            lambda: bool(client.get(resource_path("apps/v1", "deployments", namespace=scratch))["items"]),
        )
        time.sleep(1)  # into the wait
        proc.terminate()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()
    assert stderr.decode().strip().splitlines()[-1] == "interrupted"
    assert namespace_gone(client, scratch)
    [report] = api_reports(tmp_path)
    assert report.reason == "interrupted" and not report.ok
    assert report.cleanup.removed == [f"Namespace {scratch}"] and report.namespaces[0].target == scratch
    client.close()


def api_reports(tmp_path: Path) -> list[api.DrillRecord]:
    repo = api.open_repository(
        api.RepositoryOptions(str(tmp_path / "repo"), "correct horse", cache_dir=tmp_path / "c2")
    )
    try:
        reports, damaged = api.drills(repo)
        assert damaged == []
        return reports
    finally:
        repo.close()


def test_a_drill_never_writes_into_or_deletes_a_namespace_it_did_not_create(
    cluster: Cluster, namespace: str, manifests_repo: Repository
) -> None:
    """--same-names in the cluster the snapshot came from: the namespace exists, so the drill
    stops before restoring anything, and the namespace is left alone."""
    client = cluster.rest()
    client.create(
        resource_path("v1", "configmaps", namespace=namespace),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"A": "1"}},
    )
    snap = _backup(manifests_repo, cluster, namespace)
    client.request(
        "PATCH",
        resource_path("v1", "configmaps", namespace=namespace, name="settings"),
        {"data": {"A": "changed since"}},
        content_type="application/merge-patch+json",
    )
    options = api.DrillOptions(kubeconfig=str(cluster.kubeconfig), namespaces=(namespace,), same_names=True)
    with pytest.raises(errors.UsageError, match=f"namespace {namespace} exists already"):
        api.drill(manifests_repo, snap.id, "k8s://", options)
    [report], _ = api.drills(manifests_repo)  # stored all the same
    assert not report.ok and report.reason.startswith(f"namespace {namespace} exists already")
    assert report.objects == [] and report.cleanup.removed == []
    live = client.get(resource_path("v1", "configmaps", namespace=namespace, name="settings"))
    assert live["data"] == {"A": "changed since"} and not live["metadata"].get("deletionTimestamp")
    assert not client.get(resource_path("v1", "namespaces", name=namespace))["metadata"].get("deletionTimestamp")
    client.close()


def test_a_killed_drills_namespace_is_what_kubekeep_cleanup_removes(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """SIGKILL leaves the scratch namespace; it is labelled as a kubekeep run whose process is
    gone, so ``kubekeep cleanup`` finds and removes it (and only it, with --namespace)."""
    client = cluster.rest()
    _stuck(client, namespace)
    kk = KK(RepoSpec(str(tmp_path / "repo")), cache_dir=tmp_path / "cache")
    kk.run("init")
    kubeconfig = str(cluster.kubeconfig)
    kk.run("backup", "k8s://", "--kubeconfig", kubeconfig, "--include-namespace", namespace)
    before = set(_scratch_namespaces(client))
    proc = kk.popen("drill", "latest", "--to", "k8s://", "--kubeconfig", kubeconfig, "-n", namespace)
    try:
        wait_for("the scratch namespace", lambda: bool(set(_scratch_namespaces(client)) - before))
    finally:
        proc.kill()
        proc.wait(timeout=30)
    [scratch] = set(_scratch_namespaces(client)) - before
    listed = kk.run("cleanup", "--kubeconfig", kubeconfig, "--namespace", scratch, "--dry-run").stdout.decode()
    assert listed.splitlines() == [f"would remove namespaces {scratch} (run drill-{scratch.rsplit('-', 1)[1]})"]
    kk.run("cleanup", "--kubeconfig", kubeconfig, "--namespace", scratch, "--wait", "2m")
    assert namespace_gone(client, scratch)
    client.close()


def _stuck(client: RestClient, ns: str) -> None:
    """A Deployment no node can take: the drill waits for it until its timeout."""
    labels = {"app": "stuck"}
    client.create(
        resource_path("apps/v1", "deployments", namespace=ns),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "stuck"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {"kubekeep.test/no-such-node": "true"},
                        "containers": [{"name": "app", "image": "registry.kubekeep.test/app:1.0"}],
                    },
                },
            },
        },
    )


def test_keep_leaves_the_scratch_namespace_labelled_but_not_a_leftover(
    cluster: Cluster, namespace: str, manifests_repo: Repository
) -> None:
    client = cluster.rest()
    client.create(
        resource_path("v1", "configmaps", namespace=namespace),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"A": "1"}},
    )
    snap = _backup(manifests_repo, cluster, namespace)
    target = f"{namespace[:40]}-kept"
    options = api.DrillOptions(
        kubeconfig=str(cluster.kubeconfig), namespaces=(namespace,), namespace_map={namespace: target}, keep=True
    )
    try:
        report = api.drill(manifests_repo, snap.id, "k8s://", options)
        assert report.ok and report.cleanup.kept and report.cleanup.removed == []
        assert report.namespaces[0].target == target
        meta = client.get(resource_path("v1", "namespaces", name=target))["metadata"]
        assert meta["labels"]["kubekeep.io/run"] == f"drill-{report.token}"
        assert meta["labels"]["kubekeep.io/purpose"] == "drill"
        assert "kubekeep.io/owner" not in (meta.get("annotations") or {})  # kept on purpose, not a leftover
        assert client.get(resource_path("v1", "configmaps", namespace=target, name="settings"))["data"] == {"A": "1"}
    finally:
        client.delete(resource_path("v1", "namespaces", name=target))
        client.close()
