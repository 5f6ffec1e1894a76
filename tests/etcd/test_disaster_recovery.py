"""Disaster recovery against a real control plane, through the ``kubekeep`` command.

A dedicated testenv cluster (not the session's shared one) gets a namespace, ConfigMaps, a
Secret and a Deployment with running (kwok) pods; kubekeep backs up its etcd over TLS while
the API server runs. Then everything stops and the etcd data is deleted; ``kubekeep etcd
restore-dir --bump-revision --mark-compacted`` builds a new data directory, etcd and
kube-apiserver start on it with the cluster's certificates, and the objects are there, with
their uids, while an object created after the backup is not. New writes get revisions above
the bump, and reads and watches at the old revisions are refused as compacted / 410 Gone, so
no informer can miss events across the restore.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubekeep.engine.repository import Repository
from testenv.cluster import Cluster
from testenv.health import https_get, tls_context, wait_for
from testenv.processes import ManagedProcess, free_ports
from tests.cli.helpers import FAST_KDF, KK, RepoSpec

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

NS = "dr-test"
BUMP = 1_000_000
MANIFEST = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: db-password, namespace: {NS}}}
stringData: {{password: "s3cr3t"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "registry.invalid/web:1"}}]
""" + "".join(
    f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {NS}}}\n"
    f'data: {{index: "{i}", payload: "{"x" * (100 * i)}"}}\n'
    for i in range(10)
)


def objects(kubectl: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object for everything of interest in the test namespace."""
    out = kubectl("get", "configmaps,secrets,deployments,replicasets,pods", "-n", NS, "-o", "json").stdout
    return {
        (o["kind"], o["metadata"]["name"]): o
        for o in json.loads(out)["items"]
        if not o["metadata"]["name"].startswith("kube-root-ca")
    }


def start(name: str, argv: list[str], logs: Path, procs: list[ManagedProcess]) -> ManagedProcess:
    proc = ManagedProcess(name=name, argv=argv, log_path=logs / f"{name}.log", die_with_parent=True)
    procs.append(proc)
    proc.start()
    return proc


def test_backup_stop_everything_restore_and_find_the_objects(tmp_path: Path) -> None:
    spec = RepoSpec(str(tmp_path / "repo"))
    Repository.init(spec.backend(), "pw", kdf=FAST_KDF, no_cache=True).close()
    kk = KK(spec, password="pw", cache_dir=tmp_path / "cache")
    run_dir = tmp_path / "cluster"
    cluster = Cluster(nodes=1, run_dir=run_dir, keep_run_dir=True)

    # -- a live cluster with state, backed up while the API server runs --------------------
    cluster.start()
    try:
        cluster.kubectl("apply", "-f", "-", input=MANIFEST)
        cluster.kubectl("rollout", "status", "-n", NS, "deployment/web", "--timeout=90s")
        before = objects(cluster.kubectl)
        assert {k for k, _ in before} == {"ConfigMap", "Secret", "Deployment", "ReplicaSet", "Pod"}
        assert sum(k == "Pod" for k, _ in before) == 2
        etcd = cluster.etcd
        host_port = etcd.endpoints[0].removeprefix("https://")
        result = kk.json(
            "backup",
            f"etcd://{host_port}",
            "--cacert",
            str(etcd.ca_file),
            "--cert",
            str(etcd.cert_file),
            "--key",
            str(etcd.key_file),
            "--tag",
            "dr",
        )
        cluster.kubectl("create", "configmap", "after-backup", "-n", NS, "--from-literal=k=v")
    finally:
        cluster.stop()
    bins, pki = cluster.binaries, cluster._pki
    assert pki is not None
    shutil.rmtree(run_dir / "etcd-data")  # the disaster: etcd's data is gone

    status = kk.json("etcd", "status", result["id"][:12])
    revision = status["file"]["revision"]
    recorded = status["recorded"]
    assert status["matches_recorded"] is True and status["file"]["hash_ok"] is True
    assert recorded["revision"] <= revision <= recorded["revision_after"]
    assert recorded["members"][0]["name"] == "testenv"

    # -- a new data directory from the stored snapshot -------------------------------------
    etcd_port, peer_port = free_ports(2)
    peer_url = f"https://127.0.0.1:{peer_port}"
    data_dir = tmp_path / "restored-etcd"
    kk.json(
        "etcd",
        "restore-dir",
        "latest",
        "--data-dir",
        str(data_dir),
        "--name",
        "testenv",
        "--initial-cluster",
        f"testenv={peer_url}",
        "--initial-advertise-peer-urls",
        peer_url,
        "--initial-cluster-token",
        "kubekeep-restored",
        "--bump-revision",
        str(BUMP),
        "--mark-compacted",
        "--etcdutl",
        str(bins["etcdutl"]),
    )

    # -- etcd and kube-apiserver on it, with the cluster's certificates ----------------------
    etcd_argv = [
        f"--data-dir={data_dir}" if a.startswith("--data-dir=") else a
        for a in cluster._etcd_argv(bins["etcd"], etcd_port, peer_port)
    ]
    assert f"--data-dir={data_dir}" in etcd_argv
    api_port = int(cluster.server.rsplit(":", 1)[1])
    procs: list[ManagedProcess] = []
    logs = tmp_path / "restored-logs"
    try:
        etcd_proc = start("etcd", etcd_argv, logs, procs)
        etcd_tls = tls_context(pki.etcd_ca.cert, pki.etcd_client.cert, pki.etcd_client.key)
        wait_for(
            "restored etcd /health",
            lambda: (
                True
                if '"health":"true"' in https_get(f"https://127.0.0.1:{etcd_port}/health", etcd_tls)[1].replace(" ", "")
                else None
            ),
            timeout=60,
            watch=[etcd_proc],
        )
        api = start("kube-apiserver", cluster._apiserver_argv(bins["kube-apiserver"], api_port, etcd_port), logs, procs)
        api_tls = tls_context(pki.ca.cert, pki.admin.cert, pki.admin.key)
        wait_for(
            "kube-apiserver /readyz on the restored etcd",
            lambda: True if https_get(f"{cluster.server}/readyz", api_tls)[0] == 200 else None,
            timeout=120,
            watch=[api, etcd_proc],
        )

        # the objects that existed at backup time, the same objects (uids), same content
        after = objects(cluster.kubectl)
        assert set(after) == set(before)
        for key, obj in before.items():
            assert after[key]["metadata"]["uid"] == obj["metadata"]["uid"], key
            assert after[key].get("data") == obj.get("data"), key
        missing = cluster.kubectl("get", "configmap", "after-backup", "-n", NS, check=False)
        assert missing.returncode != 0 and "NotFound" in missing.stderr

        # revisions continue above the bump; the old ones are compacted for readers and watchers
        created = json.loads(
            cluster.kubectl("create", "configmap", "after-restore", "-n", NS, "--from-literal=k=v", "-o", "json").stdout
        )
        assert int(created["metadata"]["resourceVersion"]) > revision + BUMP
        old_rv = before[("ConfigMap", "cm-0")]["metadata"]["resourceVersion"]
        watch = cluster.kubectl(
            "get",
            "--raw",
            f"/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={old_rv}&timeoutSeconds=2",
            check=False,
        )
        assert '"code":410' in watch.stdout.replace(" ", ""), watch.stdout + watch.stderr
        old_read = subprocess.run(
            [
                str(bins["etcdctl"]),
                f"--endpoints=https://127.0.0.1:{etcd_port}",
                f"--cacert={pki.etcd_ca.cert}",
                f"--cert={pki.etcd_client.cert}",
                f"--key={pki.etcd_client.key}",
                "get",
                f"/registry/configmaps/{NS}/cm-0",
                f"--rev={revision}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert old_read.returncode != 0 and "compacted" in old_read.stderr, old_read.stderr
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=10)
        shutil.rmtree(run_dir, ignore_errors=True)
