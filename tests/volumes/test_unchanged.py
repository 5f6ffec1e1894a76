"""Unchanged volumes cost no reading (issue 16): through the whole volumes layer on the local
control plane, a re-backup of an unchanged claim has its agent skip every file (each night's
snapshot clone has new inodes and ctimes, the same sizes and mtimes), a file with a new mtime
or size is read again, ``--force-read`` reads everything, and the re-backup restores byte for
byte."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.cli.helpers import KK, assert_same_tree, make_rich_tree, manifest

from .conftest import Kube

pytestmark = pytest.mark.cluster


def snapshot(kk: KK, snap_id: str) -> dict[str, Any]:
    [snap] = [s for s in kk.json("snapshots") if s["id"] == snap_id]
    return dict(snap)


def test_unchanged_claim_is_not_read_changed_files_are(kube: Kube, kk: KK) -> None:
    data = kube.claim("data", size="2Gi")
    assert data is not None
    make_rich_tree(data, big_mib=24, small_files=300)
    uri = f"pvc://{kube.ns}/data"

    first = snapshot(kk, kk.backup(uri))
    t1 = first["metadata"]["volume"]["transfer"]
    assert t1["bytes_read"] == t1["bytes_total"] > 24 * 1024 * 1024 and t1["files_unchanged"] == 0

    second = snapshot(kk, kk.backup(uri))
    t2 = second["metadata"]["volume"]["transfer"]
    stats = second["stats"]
    print(
        f"\nunchanged re-backup: agent read {t2['bytes_read']} of {t2['bytes_total']} bytes, "
        f"{t2['files_unchanged']} of {stats['files']} files unchanged; transfer "
        f"{second['metadata']['volume']['timings']['transfer_s']} s (first "
        f"{first['metadata']['volume']['timings']['transfer_s']} s)"
    )
    assert second["parent"] == first["id"]
    assert t2["bytes_read"] < t2["bytes_total"] / 100 and stats["bytes_read"] < stats["bytes_total"] / 100
    assert t2["files_unchanged"] == stats["files_unchanged"] == stats["files"] == t2["parent_files"] > 300
    assert t2["files_reread"] == 0 and t2["bytes_fetched"] == 0

    # same size, new mtime; new size; everything else as it was
    same = data / "small" / "file_005.txt"
    st = same.stat()
    same.write_bytes(bytes(reversed(same.read_bytes())))
    os.utime(same, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    grown = data / "small" / "file_006.txt"
    with open(grown, "ab") as f:
        f.write(b"one more line\n")
    third = snapshot(kk, kk.backup(uri))
    t3 = third["metadata"]["volume"]["transfer"]
    assert t3["bytes_read"] == same.stat().st_size + grown.stat().st_size
    assert t3["files_unchanged"] == third["stats"]["files"] - 2

    forced = snapshot(kk, kk.backup(uri, "--force-read"))
    tf = forced["metadata"]["volume"]["transfer"]
    assert tf["files_unchanged"] == 0 and tf["bytes_read"] == tf["bytes_total"] == forced["stats"]["bytes_read"]
    kube.wait_clean()

    expected = manifest(data)
    kk.run("restore", third["id"], "--to", f"pvc://{kube.ns}/restored")
    assert_same_tree(expected, manifest(kube.sim.volume_path(kube.ns, "restored")))
    kube.wait_clean()


def test_cluster_backup_skips_unchanged_files_of_each_claim(kube: Kube, kk: KK) -> None:
    """``k8s:// --volumes``: each claim's files are looked up under its own directory of the
    parent snapshot (volumes/<namespace>/<claim>/)."""
    for name in ("a", "b"):
        path = kube.claim(name)
        assert path is not None
        make_rich_tree(path, big_mib=2, small_files=20)
    args = ("backup", "k8s://", "--include-namespace", kube.ns, "--volumes")
    kk.run(*args)
    b = kube.sim.volume_path(kube.ns, "b")
    (b / "new.txt").write_text("new\n")
    kk.run(*args)
    latest = kk.json("snapshots")[-1]
    volumes = latest["metadata"]["volumes"]["volumes"]
    ta, tb = volumes[f"{kube.ns}/a"]["transfer"], volumes[f"{kube.ns}/b"]["transfer"]
    assert ta["bytes_read"] == 0 and ta["files_unchanged"] == ta["parent_files"] > 20
    assert tb["bytes_read"] == len("new\n") and tb["files_unchanged"] == tb["parent_files"]
    kube.wait_clean()
