"""Point-in-time recovery of a real control plane, through the ``kubekeep`` command (issue 17).

A dedicated testenv cluster runs while ``kubekeep etcd follow`` stores full snapshots of its etcd
(over TLS) every 20 s and the watch events between them every second. ConfigMaps, a Secret
and Deployments are created, changed and deleted in phases, with a wall-clock instant recorded
between phases (nothing in the test namespace changes for a second and a half either side).
Meanwhile the follower is SIGKILLed and restarted, which must leave no gap in the timeline,
and etcd's history is compacted under it, which it must survive.

Then everything stops. ``kubekeep etcd restore-dir --at T`` for an instant between the second
and the third full snapshot (events on both sides) builds a data directory; etcd and
kube-apiserver start on it with the cluster's certificates and see exactly the objects of T:
same names, uids, resourceVersions and values, nothing created after T, nothing deleted
before it. A ``--revision`` restore is checked directly in etcd.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubekeep.engine.repository import Repository
from testenv.cluster import Cluster
from testenv.health import https_get, tls_context, wait_for
from testenv.processes import ManagedProcess, free_ports
from tests.cli.helpers import FAST_KDF, KK, KUBEKEEP, RepoSpec

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

NS = "pitr-test"
BUMP = 1_000_000
FULL_EVERY = 20  # seconds between full snapshots
QUIET = 1.5  # seconds without writes on either side of a recorded instant
RV = "jsonpath={.metadata.resourceVersion}"
KINDS = "configmaps,secrets,deployments,replicasets,pods"


def objects(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object for everything of interest in the test namespace."""
    out = kubectl("get", KINDS, "-n", NS, "-o", "json").stdout
    return {
        (o["kind"], o["metadata"]["name"]): o
        for o in json.loads(out)["items"]
        if not o["metadata"]["name"].startswith("kube-root-ca")
    }


def summary(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str, Any]]:
    """What must match between the live cluster at T and the restored one."""
    return {
        key: (o["metadata"]["uid"], o["metadata"]["resourceVersion"], o.get("data", o.get("spec")))
        for key, o in objs.items()
    }


def instant() -> str:
    """Now, after and before a quiet spell, as the RFC 3339 text `restore-dir --at` takes."""
    time.sleep(QUIET)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(QUIET)
    return now


class Follower:
    """``kubekeep etcd follow`` as a subprocess, its stderr (the log) in a file per run."""

    def __init__(self, kk: KK, uri: str, tls: list[str], logs: Path) -> None:
        self.kk, self.uri, self.tls, self.logs = kk, uri, tls, logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.logs / f"follow-{self.runs}.log"

    def start(self) -> None:
        self.runs += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        argv = [*KUBEKEEP, "etcd", "follow", self.uri, *self.tls]
        argv += ["--interval", "1s", "--full-every", f"{FULL_EVERY}s", "--idle-every", "2s", "--tag", "pitr"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env=self.kk.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def count(self, pattern: str) -> int:
        return sum(bool(re.search(pattern, line)) for line in self.lines())

    def wait(self, pattern: str, at_least: int = 1, timeout: float = 60) -> None:
        """Until this run's log has ``at_least`` lines matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while self.count(pattern) < at_least:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"follow exited {self.proc.returncode}:\n" + "\n".join(self.lines()[-30:]))
            if time.monotonic() > deadline:
                raise AssertionError(f"no {at_least}x {pattern!r} in {timeout}s:\n" + "\n".join(self.lines()[-30:]))
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.proc = None
        return code

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def start(name: str, argv: list[str], logs: Path, procs: list[ManagedProcess]) -> ManagedProcess:
    proc = ManagedProcess(name=name, argv=argv, log_path=logs / f"{name}.log", die_with_parent=True)
    procs.append(proc)
    proc.start()
    return proc


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_follow_then_restore_the_cluster_as_it_was_at_an_instant(tmp_path: Path) -> None:
    spec = RepoSpec(str(tmp_path / "repo"))
    Repository.init(spec.backend(), "pw", kdf=FAST_KDF, no_cache=True).close()
    kk = KK(spec, password="pw", cache_dir=tmp_path / "cache")
    run_dir = tmp_path / "cluster"
    cluster = Cluster(nodes=1, run_dir=run_dir, keep_run_dir=True)
    kubectl = cluster.kubectl

    def apply(manifest: str) -> None:
        kubectl("apply", "-f", "-", input=manifest)

    def configmap(name: str, value: str) -> str:
        return (
            f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {NS}}}\ndata: {{v: {value}}}\n"
        )

    def deployment(name: str) -> str:
        return (
            f"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {NS}}}\n"
            f"spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n"
            f"  template:\n    metadata: {{labels: {{app: {name}}}}}\n"
            f'    spec:\n      containers: [{{name: c, image: "registry.invalid/{name}:1"}}]\n'
        )

    cluster.start()
    follower: Follower | None = None
    try:
        etcd = cluster.etcd
        tls = ["--cacert", str(etcd.ca_file), "--cert", str(etcd.cert_file), "--key", str(etcd.key_file)]
        follower = Follower(kk, "etcd://" + etcd.endpoints[0].removeprefix("https://"), tls, tmp_path / "logs")
        kubectl("create", "namespace", NS)

        # -- phase 1, during the first chain: then the follower dies hard and comes back -------
        follower.start()
        follower.wait("stored full snapshot")
        apply(configmap("a", "phase1") + configmap("b", "phase1") + configmap("doomed", "phase1"))
        kubectl("create", "secret", "generic", "s", "-n", NS, "--from-literal=password=s3cr3t")
        apply(deployment("web"))
        kubectl("rollout", "status", "-n", NS, "deployment/web", "--timeout=90s")
        follower.wait("stored segment .*: [1-9]")
        apply(configmap("unsaved", "phase1"))  # received, most likely not stored yet
        follower.kill()
        apply(configmap("while-down", "phase1"))  # only in etcd's history
        down_rev = int(kubectl("get", "configmap", "while-down", "-n", NS, "-o", RV).stdout)
        follower.start()
        follower.wait(r"resumed after revision \d+")
        follower.wait("stored segment .*: [1-9]")  # the catch-up from etcd's history

        timeline = kk.json("etcd", "timeline", "--segments")
        assert len(timeline) == 1, timeline
        tl = timeline[0]
        assert len(tl["runs"]) == 1 and len(tl["windows"]) == 1, tl  # no gap across the restart
        (catch_up,) = [s for s in tl["segments"] if s["outage"]]  # its events have no times
        assert catch_up["after_revision"] < down_rev <= catch_up["upto_revision"], catch_up

        # -- phase 2, in the first chain after the restart -----------------------------------
        kubectl("delete", "configmap", "doomed", "-n", NS)
        apply(configmap("mid", "phase2") + configmap("a", "phase2"))  # a last: rev2 is the phase's end
        rev2 = int(kubectl("get", "configmap", "a", "-n", NS, "-o", RV).stdout)
        t_early = instant()

        # -- phase 3, after the second full snapshot: T --------------------------------------
        follower.wait("stored full snapshot")  # the restarted run's first
        apply(configmap("a", "phase3") + configmap("x", "phase3"))
        kubectl("delete", "configmap", "b", "-n", NS)
        time.sleep(QUIET)
        at_t = summary(objects(kubectl))
        t = instant()
        assert summary(objects(kubectl)) == at_t  # nothing moved in the namespace around T
        expected = {name for kind, name in at_t if kind in ("ConfigMap", "Secret", "Deployment")}
        assert expected == {"a", "mid", "x", "unsaved", "while-down", "s", "web"}, expected

        # -- phase 4, after T: changes, a compaction, the third full snapshot, more changes ---
        apply(configmap("a", "phase4") + configmap("late", "phase4") + deployment("late"))
        kubectl("delete", "configmap", "mid", "-n", NS)
        kubectl("delete", "secret", "s", "-n", NS)
        status = json.loads(cluster.etcdctl("endpoint", "status", "-w", "json").stdout)
        compact_rev = int(status[0]["Status"]["header"]["revision"])
        cluster.etcdctl("compact", str(compact_rev))
        gone = cluster.etcdctl("get", f"/registry/configmaps/{NS}/a", f"--rev={rev2}", check=False)
        assert gone.returncode != 0 and "compacted" in gone.stderr, gone.stderr
        segments_before = follower.count("stored segment .*: [1-9]")
        apply(configmap("after-compaction", "phase4"))
        follower.wait("stored segment .*: [1-9]", segments_before + 1)  # the follower goes on
        follower.wait("stored full snapshot", 2)  # the third full snapshot
        apply(configmap("a", "phase5"))
        follower.wait("stored segment .*: [1-9]", follower.count("stored segment .*: [1-9]") + 1)
        assert follower.terminate() == 0
        log = "\n".join(follower.lines())
        assert "Traceback" not in log and "compacted" not in log and "watch failed" not in log, log
        assert follower.count("watching etcd") == 1, log  # the same watch all along, compaction or not
    finally:
        if follower is not None:
            follower.close()
        cluster.stop()
    bins, pki = cluster.binaries, cluster._pki
    assert pki is not None
    shutil.rmtree(run_dir / "etcd-data")

    # -- the timeline: three full snapshots or more, one gapless window around T ---------------
    (tl,) = kk.json("etcd", "timeline")
    assert len(tl["full_snapshots"]) >= 3 and len(tl["runs"]) == 1 and len(tl["windows"]) == 1, tl
    fulls = sorted(parse_time(f["time"]) for f in tl["full_snapshots"])
    assert fulls[1] < parse_time(t) < fulls[-1], (t, fulls)
    assert fulls[0] < parse_time(t_early) < fulls[1], (t_early, fulls)
    (window,) = kk.json("etcd", "status")
    assert window["gaps"] == 0 and window["full_snapshots"] == len(tl["full_snapshots"])
    assert parse_time(window["earliest"]["time"]) < parse_time(t_early) < parse_time(t)
    assert parse_time(t) < parse_time(window["latest"]["time"])

    etcd_port, peer_port = free_ports(2)
    peer_url = f"https://127.0.0.1:{peer_port}"

    def restore_dir(data_dir: Path, *point: str) -> dict[str, Any]:
        report: dict[str, Any] = kk.json(
            "etcd", "restore-dir", *point,
            "--data-dir", str(data_dir), "--name", "testenv",
            "--initial-cluster", f"testenv={peer_url}", "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster-token", "kubekeep-restored",
            "--bump-revision", str(BUMP), "--mark-compacted", "--etcdutl", str(bins["etcdutl"]),
        )  # fmt: skip
        return report

    def etcd_argv(data_dir: Path) -> list[str]:
        argv = [
            f"--data-dir={data_dir}" if a.startswith("--data-dir=") else a
            for a in cluster._etcd_argv(bins["etcd"], etcd_port, peer_port)
        ]
        assert f"--data-dir={data_dir}" in argv
        return argv

    def etcdctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(bins["etcdctl"]),
                f"--endpoints=https://127.0.0.1:{etcd_port}",
                f"--cacert={pki.etcd_ca.cert}",
                f"--cert={pki.etcd_client.cert}",
                f"--key={pki.etcd_client.key}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    etcd_tls = tls_context(pki.etcd_ca.cert, pki.etcd_client.cert, pki.etcd_client.key)

    def etcd_healthy() -> bool | None:
        body = https_get(f"https://127.0.0.1:{etcd_port}/health", etcd_tls)[1]
        return True if '"health":"true"' in body.replace(" ", "") else None

    procs: list[ManagedProcess] = []
    logs = tmp_path / "restored-logs"
    try:
        # -- at a revision (the second phase, in the first chain): read etcd directly ----------
        by_rev = restore_dir(tmp_path / "at-revision", "--revision", str(rev2))
        assert by_rev["target"]["revision"] == rev2 and by_rev["replayed"]["to_revision"] == rev2
        etcd_proc = start("etcd-at-revision", etcd_argv(tmp_path / "at-revision"), logs, procs)
        wait_for("etcd restored at a revision", etcd_healthy, timeout=60, watch=[etcd_proc])
        keys = etcdctl("get", "--prefix", f"/registry/configmaps/{NS}/", "--keys-only").stdout.split()
        names = sorted(k.rsplit("/", 1)[1] for k in keys)
        assert names == ["a", "b", "kube-root-ca.crt", "mid", "unsaved", "while-down"], keys
        got = json.loads(etcdctl("get", f"/registry/configmaps/{NS}/a", "-w", "json").stdout)
        assert got["kvs"][0]["mod_revision"] == rev2
        assert b"phase2" in base64.b64decode(got["kvs"][0]["value"])
        assert got["header"]["revision"] > rev2 + BUMP - 1
        etcd_proc.stop(timeout=10)
        procs.remove(etcd_proc)

        # -- at T (between the second and the third full snapshot): the API server's view -----
        report = restore_dir(tmp_path / "at-t", "--at", t)
        assert report["target"]["time"] == t
        full_times = {f["id"]: parse_time(f["time"]) for f in tl["full_snapshots"]}
        assert full_times[report["full_snapshot"]["id"]] == fulls[1], report  # the newest before T
        assert report["replayed"]["revisions"] > 0 and report["replayed"]["events"] > 0, report
        etcd_proc = start("etcd", etcd_argv(tmp_path / "at-t"), logs, procs)
        wait_for("etcd restored at T", etcd_healthy, timeout=60, watch=[etcd_proc])
        api_port = int(cluster.server.rsplit(":", 1)[1])
        api = start("kube-apiserver", cluster._apiserver_argv(bins["kube-apiserver"], api_port, etcd_port), logs, procs)
        api_tls = tls_context(pki.ca.cert, pki.admin.cert, pki.admin.key)
        wait_for(
            "kube-apiserver /readyz on etcd restored at T",
            lambda: True if https_get(f"{cluster.server}/readyz", api_tls)[0] == 200 else None,
            timeout=120,
            watch=[api, etcd_proc],
        )
        restored = summary(objects(kubectl))
        assert set(restored) == set(at_t)
        assert restored == at_t  # the same objects: uids, resourceVersions, values
        assert restored[("ConfigMap", "a")][2] == {"v": "phase3"}
        for name in ("b", "doomed", "late", "after-compaction"):
            missing = kubectl("get", "configmap", name, "-n", NS, check=False)
            assert missing.returncode != 0 and "NotFound" in missing.stderr, name
        secret = json.loads(kubectl("get", "secret", "s", "-n", NS, "-o", "json").stdout)
        assert secret["data"]["password"] == "czNjcjN0"  # base64 of s3cr3t
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=10)
        shutil.rmtree(run_dir, ignore_errors=True)
