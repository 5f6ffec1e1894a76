"""Cluster backups with volumes: ``k8s:// --volumes`` puts a namespace's manifests and its
claims' files in one snapshot (volumes/<namespace>/<claim>/), skipping with the reason what
cannot be snapshotted; one cluster restore brings the namespace back with its claims and data."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from testenv.rest import resource_path
from testenv.simcsi import SHELL_IMAGE
from tests.cli.helpers import KK, assert_same_tree, make_rich_tree, manifest, wait_for

from .conftest import Kube

pytestmark = pytest.mark.cluster


def test_namespace_with_volumes_backed_up_and_brought_back(kube: Kube, kk: KK, tmp_path: Path) -> None:
    db = kube.claim("db")
    logs = kube.claim("logs")
    assert db is not None and logs is not None
    make_rich_tree(db, big_mib=3, small_files=40)
    (logs / "app.log").write_text("started\n" * 1000)
    kube.pod("app", "db", image=SHELL_IMAGE, annotations={"hooks.kubekeep.io/pre-command": "echo flushed"})
    host_dir = tmp_path / "legacy"
    host_dir.mkdir()
    pv = f"legacy-{uuid.uuid4().hex[:6]}"
    kube.rest.create(
        resource_path("v1", "persistentvolumes"),
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(host_dir)},
            },
        },
    )
    clone = f"{kube.ns}-clone"
    try:
        kube.rest.create(
            resource_path("v1", "persistentvolumeclaims", kube.ns),
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "legacy", "namespace": kube.ns},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        assert wait_for(lambda: kube.phase("legacy") == "Bound", timeout=30)

        proc = kk.run(
            "backup", "k8s://", "--include-namespace", kube.ns, "--volumes", "--volume-parallel", "2", expect=3
        )  # done, with a warning: one claim was skipped
        assert f"volume {kube.ns}/legacy skipped" in proc.stderr.decode()
        [snap] = kk.json("snapshots")
        volumes = snap["metadata"]["volumes"]
        assert sorted(volumes["volumes"]) == [f"{kube.ns}/db", f"{kube.ns}/logs"]
        assert volumes["volumes"][f"{kube.ns}/db"]["hooks"][0]["stdout"] == "flushed\n"
        [skipped] = volumes["skipped"]
        assert skipped["claim"] == f"{kube.ns}/legacy" and "not CSI-backed" in skipped["reason"]
        listing = {e["path"] for e in kk.json("ls", "--recursive", snap["id"])}
        assert f"/volumes/{kube.ns}/db/big.bin" in listing and f"/volumes/{kube.ns}/logs/app.log" in listing
        assert f"/namespaces/{kube.ns}/core/persistentvolumeclaims/db.yaml" in listing
        kube.wait_clean()

        # bring the namespace back with its data in one command (as a copy: the original may take a
        # while to be deleted); the claim that was skipped at backup comes back empty
        report = kk.json(
            "restore", snap["id"], "--to", "k8s://", "--namespace", kube.ns, "--namespace-map", f"{kube.ns}={clone}"
        )
        claims = {c["name"]: c for c in report["claims"]}
        assert claims["db"]["action"] == claims["logs"]["action"] == "written"
        assert claims["db"]["namespace"] == clone and claims["db"]["workloads"] == [f"Pod {clone}/app"]
        assert claims["legacy"]["action"] == "no data"
        copy = Kube(kube.cluster, kube.sim, clone)
        assert copy.phase("db") == "Bound" and copy.phase("logs") == "Bound"
        assert_same_tree(manifest(db), manifest(kube.sim.volume_path(clone, "db")))
        assert (kube.sim.volume_path(clone, "logs") / "app.log").read_text() == "started\n" * 1000
        copy.wait_clean()
    finally:
        kube.rest.delete(resource_path("v1", "namespaces", name=clone))
        kube.delete("pods", "app")
        kube.rest.delete(resource_path("v1", "persistentvolumes", name=pv))
