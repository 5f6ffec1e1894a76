"""Snapshots crossing layers: any snapshot's files into a claim (the cluster's own etcd snapshot),
and a claim's files out as plain objects in an S3 bucket on the local S3 server."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from testenv.cluster import Cluster
from tests.cli.helpers import KK, stderr_line
from tests.support.s3server import S3Server

from .conftest import Kube

pytestmark = pytest.mark.cluster


def test_etcd_snapshot_restored_into_a_claim(cluster: Cluster, kube: Kube, kk: KK) -> None:
    etcd = cluster.etcd
    result = kk.json(
        "backup",
        etcd.endpoints[0].replace("https://", "etcds://"),
        "--cacert",
        str(etcd.ca_file),
        "--cert",
        str(etcd.cert_file),
        "--key",
        str(etcd.key_file),
    )
    assert result["source"]["kind"] == "etcd"
    stored = kk.run("cat", f"{result['id']}:/etcd/snapshot.db").stdout

    line = stderr_line(kk.run("-q", "restore", result["id"], "--to", f"pvc://{kube.ns}/etcd-backup", expect=2))
    assert "give --size" in line  # an etcd snapshot records no claim to copy the size from

    kk.run(
        "restore",
        f"{result['id']}:/etcd",
        "--to",
        f"pvc://{kube.ns}/etcd-backup",
        "--size",
        "2Gi",
        "--storage-class",
        "kubekeep-hostpath",
    )
    claim = kube.get("persistentvolumeclaims", "etcd-backup")
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    written = kube.sim.volume_path(kube.ns, "etcd-backup") / "snapshot.db"
    assert hashlib.sha256(written.read_bytes()).hexdigest() == hashlib.sha256(stored).hexdigest()
    kube.wait_clean()


def test_claim_files_exported_to_an_s3_bucket(
    kube: Kube, kk: KK, s3_server: S3Server, s3_bucket: str, s3_admin: Any
) -> None:
    data = kube.claim("data")
    assert data is not None
    files = {
        "report.csv": b"a,b\n1,2\n",
        "nested/deeper/blob.bin": bytes(range(256)) * 200_000,  # multipart
        "empty": b"",
    }
    for rel, content in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
    (data / "report.csv").chmod(0o640)
    (data / "link").symlink_to("report.csv")
    snap = kk.backup(f"pvc://{kube.ns}/data")

    env = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": s3_server.region,
        "KUBEKEEP_S3_ENDPOINT": s3_server.endpoint_url,
    }
    proc = kk.run("restore", snap, "--to", f"s3://{s3_bucket}/exports/data", env=env)
    assert "1 symlink(s) not written" in proc.stderr.decode()

    listed = s3_admin.list_objects_v2(Bucket=s3_bucket, Prefix="exports/data/")
    keys = sorted(o["Key"] for o in listed.get("Contents", ()))
    assert keys == sorted(f"exports/data/{rel}" for rel in files)
    for rel, content in files.items():
        obj = s3_admin.get_object(Bucket=s3_bucket, Key=f"exports/data/{rel}")
        assert obj["Body"].read() == content, rel
    head = s3_admin.head_object(Bucket=s3_bucket, Key="exports/data/report.csv")
    assert head["Metadata"]["kubekeep-mode"] == "0640"

    missing = stderr_line(kk.run("-q", "restore", snap, "--to", f"s3://{s3_bucket}-nope/x", env=env, expect=16))
    assert "does not exist" in missing
    kube.wait_clean()


def test_restore_to_fs_keeps_a_volume_tree(kube: Kube, kk: KK, tmp_path: Path) -> None:
    data = kube.claim("data")
    assert data is not None
    (data / "a" / "b").mkdir(parents=True)
    (data / "a" / "b" / "c.txt").write_text("c\n")
    snap = kk.backup(f"pvc://{kube.ns}/data")
    kk.run("restore", snap, "--to", str(tmp_path / "out"))
    assert (tmp_path / "out" / "a" / "b" / "c.txt").read_text() == "c\n"
