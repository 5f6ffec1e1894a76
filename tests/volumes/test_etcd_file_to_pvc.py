"""The mix of two layers: an etcd snapshot (etcd:// importer) written back out into a
PersistentVolumeClaim (pvc:// exporter), byte for byte what ``etcdctl snapshot save`` writes,
where an etcd run from a volume (an operator's restore job) can use it."""

from __future__ import annotations

import hashlib

import pytest

from testenv.cluster import Cluster
from tests.cli.helpers import KK

from .conftest import Kube

pytestmark = pytest.mark.cluster


def test_etcd_snapshot_file_restored_into_a_claim(cluster: Cluster, kube: Kube, kk: KK) -> None:
    etcd = cluster.etcd
    snap = kk.backup(
        f"etcd://{etcd.endpoints[0].removeprefix('https://')}",
        "--cacert",
        str(etcd.ca_file),
        "--cert",
        str(etcd.cert_file),
        "--key",
        str(etcd.key_file),
    )
    status = kk.json("etcd", "status", snap)
    target = kube.claim("etcd-restore")
    assert target is not None
    kk.run("restore", f"{snap}:/etcd/snapshot.db", "--to", f"pvc://{kube.ns}/etcd-restore")
    data = (target / "snapshot.db").read_bytes()
    assert data == kk.run("cat", f"{snap}:/etcd/snapshot.db").stdout
    assert hashlib.sha256(data[:-32]).hexdigest() == data[-32:].hex() == status["file"]["sha256"]
    kube.wait_clean()
