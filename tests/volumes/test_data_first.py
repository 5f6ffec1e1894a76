"""A namespace restored with its data in one command, data first: ``restore SNAP --to k8s://`` of
a ``backup k8s:// --volumes`` snapshot creates the claims, writes their files through helper
pods, and only then creates the workloads, so the simulated kubelet's record of each container
start shows the application's first start already saw its files. A claim whose data fails
holds back the workloads that mount it; a dry run shows the plan; an interrupted restore
finishes when run again; ``--volumes-from`` takes a claim's data from its own snapshot."""

from __future__ import annotations

import json
import signal
import time
import uuid
from typing import Any

import pytest

from kubekeep.manifests.cleaning import DATA_RESTORED_ANNOTATION, RESTORED_FROM_LABEL
from testenv import bootstrap
from testenv.rest import ApiError, resource_path
from testenv.simcsi import SHELL_IMAGE
from testenv.simcsi.kubelet import volume_listing
from tests.cli.helpers import KK, make_rich_tree, wait_for

from .conftest import Kube

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def _pod_template(kube: Kube, app: str, claim: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": SHELL_IMAGE, "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        **kube.sim.placement(),
    }
    if claim is not None:
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return {"metadata": {"labels": {"app": app}}, "spec": spec}


def _statefulset(kube: Kube, name: str, replicas: int) -> None:
    kube.rest.create(
        resource_path("apps/v1", "statefulsets", kube.ns),
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": kube.ns},
            "spec": {
                "replicas": replicas,
                "serviceName": name,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": name}},
                "template": _pod_template(kube, name),
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": bootstrap.STORAGE_CLASS,
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
    )


def _deployment(kube: Kube, name: str, claim: str) -> None:
    kube.rest.create(
        resource_path("apps/v1", "deployments", kube.ns),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": kube.ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": _pod_template(kube, name, claim),
            },
        },
    )


def _running(kube: Kube, pod: str) -> bool:
    return kube.get("pods", pod).get("status", {}).get("phase") == "Running"


def _gone(kube: Kube, namespace: str) -> bool:
    try:
        kube.rest.get(resource_path("v1", "namespaces", name=namespace))
    except ApiError as err:
        return err.status == 404
    return False


def _first_start(kube: Kube, namespace: str, pod_prefix: str, since: float) -> dict[str, dict[str, int]]:
    """What the claims held when the first container of a pod named ``pod_prefix...`` started
    after ``since`` (a time.time())."""
    starts = [s for s in kube.sim.container_starts(namespace) if s.pod.startswith(pod_prefix) and s.time >= since]
    assert starts, f"no container of {namespace}/{pod_prefix}* started"
    return starts[0].claims


def _by(rows: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [row] = [r for r in rows if r["kind"] == kind and r["name"] == name]
    return row


def test_statefulset_comes_back_with_its_data_before_its_pods(kube: Kube, kk: KK) -> None:
    ns = kube.ns
    _statefulset(kube, "web", 2)
    assert wait_for(lambda: _running(kube, "web-0") and _running(kube, "web-1"), timeout=90)
    make_rich_tree(kube.sim.volume_path(ns, "data-web-0"), big_mib=2, small_files=30)
    (kube.sim.volume_path(ns, "data-web-1") / "replica.txt").write_text("I am web-1\n")
    # a claim whose storage class is gone when the restore comes: its helper pod cannot start
    gone = f"gone-{uuid.uuid4().hex[:6]}"
    kube.rest.create(
        resource_path("storage.k8s.io/v1", "storageclasses"),
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": gone},
            "provisioner": bootstrap.CSI_DRIVER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        },
    )
    try:
        lost = kube.claim("lost", storage_class=gone)
        assert lost is not None
        (lost / "precious.txt").write_text("gone with its class\n")
        _deployment(kube, "reader", "lost")
        expected = {c: volume_listing(str(kube.sim.volume_path(ns, c))) for c in ("data-web-0", "data-web-1")}
        assert len(expected["data-web-0"]) > 30

        kk.run("backup", "k8s://", "--include-namespace", ns, "--volumes")
        [snap] = kk.json("snapshots")
    finally:
        kube.rest.delete(resource_path("storage.k8s.io/v1", "storageclasses", name=gone))
    kube.rest.delete(resource_path("v1", "namespaces", name=ns))
    assert wait_for(lambda: _gone(kube, ns), timeout=120, interval=0.5), "the namespace was not deleted"

    # the plan: claims with the bytes to write, workloads after (or held by) their claims
    plan = kk.json("restore", snap["id"], "--to", "k8s://", "-n", ns, "--dry-run")
    claims = {c["name"]: c for c in plan["claims"]}
    assert claims["data-web-0"]["action"] == "would write"
    assert claims["data-web-0"]["bytes_planned"] == sum(expected["data-web-0"].values())
    assert claims["data-web-0"]["files_planned"] == len(expected["data-web-0"])
    assert claims["lost"]["bytes_planned"] == len("gone with its class\n")
    assert claims["data-web-1"]["workloads"] == [f"StatefulSet {ns}/web"]
    sts = _by(plan["results"], "StatefulSet", "web")
    assert sts["action"] == "would create" and f"after the data of {ns}/data-web-0, {ns}/data-web-1" in sts["reason"]
    assert f"after the data of {ns}/lost" in _by(plan["results"], "Deployment", "reader")["reason"]
    assert not kube.get("persistentvolumeclaims", "data-web-0")  # nothing was changed

    restored_at = time.time()
    proc = kk.run(
        "--json", "restore", snap["id"], "--to", "k8s://", "-n", ns, "--helper-start-timeout", "20s", expect=16
    )
    report = json.loads(proc.stdout)
    print(
        f"\ndata-first restore: {len(report['results'])} objects, "
        + ", ".join(f"{c['name']} {c['action']} {c['bytes_written']} B in {c['seconds']} s" for c in report["claims"])
        + f"; {report['duration_s']} s in all"
    )
    error = proc.stderr.decode().strip().splitlines()[-1]
    assert f"1 of 3 claims' data not restored ({ns}/lost:" in error
    assert f"1 workload(s) not created (Deployment {ns}/reader)" in error
    claims = {c["name"]: c for c in report["claims"]}
    for name in ("data-web-0", "data-web-1"):
        assert claims[name]["action"] == "written" and claims[name]["claim"] == "created"
        assert claims[name]["bytes_written"] == claims[name]["bytes_planned"] == sum(expected[name].values())
        assert claims[name]["seconds"] > 0
    assert claims["lost"]["action"] == "failed" and claims["lost"]["workloads"] == [f"Deployment {ns}/reader"]
    reader = _by(report["results"], "Deployment", "reader")
    assert reader["action"] == "not created" and f"claim {ns}/lost has no data" in reader["reason"]
    assert _by(report["results"], "StatefulSet", "web")["action"] == "created"
    assert not kube.get("deployments", "reader", "apps/v1")

    # the StatefulSet controller adopted the restored claims; its pods' first start saw the files
    assert wait_for(lambda: _running(kube, "web-0") and _running(kube, "web-1"), timeout=90)
    for i in (0, 1):
        assert _first_start(kube, ns, f"web-{i}", restored_at) == {f"data-web-{i}": expected[f"data-web-{i}"]}
        claim = kube.get("persistentvolumeclaims", f"data-web-{i}")
        assert claim["metadata"]["annotations"][DATA_RESTORED_ANNOTATION] == snap["short_id"]
        assert claim["metadata"]["labels"][RESTORED_FROM_LABEL] == snap["short_id"]
    assert not [s for s in kube.sim.container_starts(ns) if s.pod.startswith("reader") and s.time >= restored_at]
    kube.wait_clean(timeout=60)


def test_interrupted_restore_finishes_when_run_again_with_data_from_volume_snapshots(kube: Kube, kk: KK) -> None:
    ns = kube.ns
    clone = f"{ns}-c"
    db = kube.claim("db")
    assert db is not None
    make_rich_tree(db, big_mib=1, small_files=20)
    _deployment(kube, "app", "db")
    kk.run("backup", "k8s://", "--include-namespace", ns, "--volumes")
    [manifests] = kk.json("snapshots")
    (db / "newer.txt").write_text("only in the volume snapshot\n")
    volume = kk.backup(f"pvc://{ns}/db")
    expected = volume_listing(str(db))
    assert "newer.txt" in expected

    args = ["restore", manifests["id"], "--to", "k8s://", "-n", ns, "--namespace-map", f"{ns}={clone}"]
    args += ["--volumes-from", volume]
    copy = Kube(kube.cluster, kube.sim, clone)
    try:
        # killed while the claim's helper pod is starting: the claim exists, the workload does not
        kube.sim.settings.pod_start_delay = 30
        proc = kk.popen(*args)
        helper = lambda: any(p.startswith("pods/kubekeep-agent") for p in copy.labelled())  # noqa: E731
        assert wait_for(helper, timeout=60, interval=0.2), proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        claim = copy.get("persistentvolumeclaims", "db")
        assert claim["metadata"]["labels"][RESTORED_FROM_LABEL] == manifests["short_id"]
        assert DATA_RESTORED_ANNOTATION not in (claim["metadata"].get("annotations") or {})
        assert not copy.get("deployments", "app", "apps/v1")
        kube.sim.settings.pod_start_delay = 0
        kk.run("cleanup")  # what the killed run left (its helper pod and Secret)

        # run again: the claim is this restore's and has no data mark, so its data is written
        report = kk.json(*args)
        [claim_report] = report["claims"]
        assert claim_report["claim"] == "existing" and claim_report["action"] == "written"
        assert "earlier run of this restore" in claim_report["reason"]
        assert claim_report["source"] == volume[:8]
        assert _by(report["results"], "Deployment", "app")["action"] == "created"
        assert wait_for(lambda: any(s.pod.startswith("app-") for s in kube.sim.container_starts(clone)), timeout=60), (
            "the application did not start"
        )
        assert _first_start(kube, clone, "app-", 0) == {"db": expected}

        # and once more: nothing left to do
        again = kk.json(*args)
        [claim_report] = again["claims"]
        assert claim_report["action"] == "skipped" and volume[:8] in claim_report["reason"]
        assert {r["action"] for r in again["results"]} == {"skipped"}
        human = kk.run(*args)
        assert f"skipped  data of PersistentVolumeClaim {clone}/db: its data was restored from" in human.stdout.decode()
        assert "claims' data: 1 skipped" in human.stderr.decode()

        # a claim that existed before and is not this restore's is left alone
        other = kk.json("restore", manifests["id"], "--to", "k8s://", "-n", ns)
        [claim_report] = other["claims"]
        assert claim_report["action"] == "left alone" and claim_report["claim"] == "existing"
        copy.wait_clean(timeout=60)
    finally:
        kube.sim.settings.pod_start_delay = 0
        kube.rest.delete(resource_path("v1", "namespaces", name=clone))


def test_sigterm_during_the_data_phase_unwinds_and_creates_no_workload(kube: Kube, kk: KK) -> None:
    ns = kube.ns
    clone = f"{ns}-t"
    db = kube.claim("db")
    assert db is not None
    (db / "data.txt").write_text("some data\n")
    _deployment(kube, "app", "db")
    kk.run("backup", "k8s://", "--include-namespace", ns, "--volumes")
    [snap] = kk.json("snapshots")
    copy = Kube(kube.cluster, kube.sim, clone)
    try:
        kube.sim.settings.pod_start_delay = 3
        proc = kk.popen("restore", snap["id"], "--to", "k8s://", "-n", ns, "--namespace-map", f"{ns}={clone}")
        helper = lambda: any(p.startswith("pods/kubekeep-agent") for p in copy.labelled())  # noqa: E731
        assert wait_for(helper, timeout=60, interval=0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        copy.wait_clean(timeout=30)  # the run removed its helper pod and Secret itself
        assert copy.get("persistentvolumeclaims", "db")
        assert not copy.get("deployments", "app", "apps/v1")
    finally:
        kube.sim.settings.pod_start_delay = 0
        kube.rest.delete(resource_path("v1", "namespaces", name=clone))
