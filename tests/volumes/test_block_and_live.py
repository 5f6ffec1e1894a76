"""Raw block claims (one image file, chunk-level dedup) and claims that cannot be snapshotted
(no CSI driver, no snapshot class), which are copied live only when asked."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from testenv.rest import resource_path
from testenv.simcsi import NOSNAP_STORAGE_CLASS, SHELL_IMAGE
from tests.cli.helpers import KK, stderr_line, wait_for

from .conftest import Kube

pytestmark = pytest.mark.cluster


def volume(kk: KK, snap_id: str) -> dict[str, Any]:
    return dict(next(s for s in kk.json("snapshots") if s["id"] == snap_id)["metadata"]["volume"])


def test_block_claim_is_one_image_with_chunk_dedup(kube: Kube, kk: KK) -> None:
    image = kube.claim("disk", size="48Mi", block=True)
    assert image is not None and image.is_file()
    rnd = random.Random(7)
    with open(image, "r+b") as f:
        f.write(rnd.randbytes(40 * 1024 * 1024))  # the last 8 MiB stay zero
    first = kk.backup(f"pvc://{kube.ns}/disk")
    listing = kk.json("ls", first)
    assert [(e["path"], e["size"]) for e in listing] == [("/volume.img", 48 * 1024 * 1024)]
    assert volume(kk, first)["claim"]["volumeMode"] == "Block"

    with open(image, "r+b") as f:  # a filesystem changing one block
        f.seek(20 * 1024 * 1024)
        f.write(b"\xff" * 4096)
    second = kk.backup(f"pvc://{kube.ns}/disk")
    transfer = volume(kk, second)["transfer"]
    assert transfer["chunks_fetched"] <= 2 < transfer["chunks_total"]

    kk.run("restore", second, "--to", f"pvc://{kube.ns}/disk-copy")  # a new block claim, as recorded
    claim = kube.get("persistentvolumeclaims", "disk-copy")
    assert claim["spec"]["volumeMode"] == "Block"
    copy = kube.sim.volume_path(kube.ns, "disk-copy")
    assert copy.read_bytes() == image.read_bytes()

    kube.claim("plain")
    line = stderr_line(kk.run("-q", "restore", second, "--to", f"pvc://{kube.ns}/plain", expect=16))
    assert "filesystem volume" in line and "block volume" in line
    kube.wait_clean()


def test_claim_without_snapshot_class_needs_live(kube: Kube, kk: KK) -> None:
    data = kube.claim("data", storage_class=NOSNAP_STORAGE_CLASS)
    assert data is not None
    (data / "db.sqlite").write_bytes(os.urandom(100_000))
    line = stderr_line(kk.run("-q", "backup", f"pvc://{kube.ns}/data", expect=16))
    assert "has no VolumeSnapshotClass" in line and "--live" in line
    proc = kk.run("backup", f"pvc://{kube.ns}/data", "--live", expect=3)  # done, with a warning
    assert "crash-consistent at best" in proc.stderr.decode()
    [snap] = kk.json("snapshots")
    assert snap["metadata"]["volume"]["mode"] == "live"
    assert kk.run("cat", f"{snap['id']}:/db.sqlite").stdout == (data / "db.sqlite").read_bytes()
    kube.wait_clean()


def test_non_csi_claim_is_copied_live_beside_its_user(kube: Kube, kk: KK, tmp_path: Path) -> None:
    host_dir = tmp_path / "hostpath-volume"
    host_dir.mkdir()
    (host_dir / "index.html").write_text("<h1>hello</h1>\n")
    pv = f"hostpath-{uuid.uuid4().hex[:6]}"
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
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [kube.sim.node]}
                                ]
                            }
                        ]
                    }
                },
            },
        },
    )
    try:
        kube.rest.create(
            resource_path("v1", "persistentvolumeclaims", kube.ns),
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "web", "namespace": kube.ns},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        assert wait_for(lambda: kube.phase("web") == "Bound", timeout=30)
        kube.pod("web", "web", image=SHELL_IMAGE)
        line = stderr_line(kk.run("-q", "backup", f"pvc://{kube.ns}/web", expect=16))
        assert "not CSI-backed" in line and "hostPath" in line
        kk.run("backup", f"pvc://{kube.ns}/web", "--live", expect=3)
        [snap] = kk.json("snapshots")
        assert kk.run("cat", f"{snap['id']}:/index.html").stdout == b"<h1>hello</h1>\n"
        kube.wait_clean()
    finally:
        kube.delete("pods", "web")
        kube.rest.delete(resource_path("v1", "persistentvolumes", name=pv))
