"""A claim's files through the whole volumes layer on the local control plane: snapshot, helper
pod, agent, repository, and back into a new claim, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import KK, assert_same_tree, make_rich_tree, manifest, wait_for

from .conftest import Kube

pytestmark = pytest.mark.cluster


def volume_report(kk: KK, snap_id: str) -> dict[str, Any]:
    [snap] = [s for s in kk.json("snapshots") if s["id"] == snap_id]
    return dict(snap["metadata"]["volume"])


def test_backup_change_backup_delete_restore_byte_for_byte(kube: Kube, kk: KK) -> None:
    data = kube.claim("data", size="2Gi")
    assert data is not None
    make_rich_tree(data, big_mib=24, small_files=300)
    os.symlink("small/file_007.txt", data / "link_to_small")

    first = kk.backup(f"pvc://{kube.ns}/data")
    report = volume_report(kk, first)
    transfer = report["transfer"]
    assert report["mode"] == "snapshot" and report["claim"]["size"] == "2Gi"
    assert transfer["chunks_fetched"] == transfer["chunks_total"] > 24  # everything is new
    assert transfer["bytes_total"] > 24 * 1024 * 1024

    # change a little: 100 bytes in the middle of the big file, one new file, one removed
    with open(data / "big.bin", "r+b") as f:
        f.seek(12 * 1024 * 1024)
        f.write(os.urandom(100))
    (data / "small" / "new.txt").write_text("a new file\n")
    (data / "small" / "file_010.txt").unlink()
    os.replace(data / "link_to_small", data / "old_link")
    os.symlink("small/new.txt", data / "link_to_small")

    second = kk.backup(f"pvc://{kube.ns}/data", "--agent-connect", "pod-ip")  # the in-cluster path
    changed = volume_report(kk, second)["transfer"]
    print(
        f"\nre-backup after a 100-byte change: fetched {changed['chunks_fetched']} of "
        f"{changed['chunks_total']} chunks, {changed['bytes_fetched']} of {changed['bytes_total']} bytes, "
        f"{changed['bytes_on_wire']} bytes on the wire"
    )
    assert 1 <= changed["chunks_fetched"] <= 4  # the changed chunk(s) of big.bin and the new file
    assert changed["bytes_fetched"] < 16 * 1024 * 1024 < changed["bytes_total"]

    third = kk.backup(f"pvc://{kube.ns}/data")
    unchanged = volume_report(kk, third)["transfer"]
    assert unchanged["chunks_fetched"] == 0 and unchanged["bytes_fetched"] == 0
    assert unchanged["bytes_on_wire"] < 64 * 1024  # chunk lists and metadata only
    kube.wait_clean()

    expected = manifest(data)
    kube.delete("persistentvolumeclaims", "data")
    assert wait_for(lambda: not data.exists(), timeout=30), "the deleted claim's volume is still there"

    result = kk.json("restore", third, "--to", f"pvc://{kube.ns}/restored")
    [row] = result["results"]
    assert row["action"] == "written" and row["created"] and row["name"] == "restored"
    restored_claim = kube.get("persistentvolumeclaims", "restored")
    assert restored_claim["spec"]["resources"]["requests"]["storage"] == "2Gi"  # taken from the snapshot
    assert restored_claim["spec"]["storageClassName"] == "kubekeep-hostpath"
    restored = kube.sim.volume_path(kube.ns, "restored")
    assert_same_tree(expected, manifest(restored))
    kube.wait_clean()


def test_restore_into_existing_claim_and_a_subdirectory_to_fs(kube: Kube, kk: KK, tmp_path: Path) -> None:
    data = kube.claim("src")
    assert data is not None
    (data / "conf").mkdir()
    (data / "conf" / "app.ini").write_text("[main]\nkey = value\n")
    (data / "keep.txt").write_text("keep me\n")
    snap = kk.backup(f"pvc://{kube.ns}/src")

    target = kube.claim("existing")
    assert target is not None
    (target / "untouched.txt").write_text("not in the snapshot\n")
    (target / "keep.txt").write_text("will be replaced\n")
    kk.run("restore", snap, "--to", f"pvc://{kube.ns}/existing")
    assert (target / "keep.txt").read_text() == "keep me\n"
    assert (target / "conf" / "app.ini").read_text() == "[main]\nkey = value\n"
    assert (target / "untouched.txt").read_text() == "not in the snapshot\n"  # files not in the snapshot stay

    kk.run("restore", f"{snap}:/conf", "--to", str(tmp_path / "out"))  # a PVC's files to fs:
    assert (tmp_path / "out" / "app.ini").read_text() == "[main]\nkey = value\n"
    kube.wait_clean()
