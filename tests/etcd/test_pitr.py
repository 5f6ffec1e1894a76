"""Point-in-time recovery against a real etcd: ``etcd follow`` stores full snapshots and the
watch events between them; ``etcd restore-dir --at/--revision`` rebuilds the store at any
point, which a real etcd started on the result must serve exactly (keys, values, revisions).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api, errors
from kubekeep.engine.repository import Repository
from kubekeep.etcd import services
from kubekeep.etcd._proto import rpc_pb2
from kubekeep.etcd.client import EtcdClient
from tests.cli.helpers import FAST_KDF, KK, RepoSpec, stderr_line, wait_for

from .etcdserver import CuttingProxy, EtcdServer, Pki, Tools, free_port

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def server(etcd_tools: Tools, pki: Pki, fast_tmp: Path, request: pytest.FixtureRequest) -> Iterator[EtcdServer]:
    """A fresh etcd of its own (its own cluster id and revisions)."""
    srv = EtcdServer(etcd_tools, pki, fast_tmp / f"pitr-{request.node.name}-{time.monotonic_ns()}")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def kk(tmp_path: Path) -> KK:
    spec = RepoSpec(str(tmp_path / "repo"))
    Repository.init(spec.backend(), "pw", kdf=FAST_KDF, no_cache=True).close()
    return KK(spec, password="pw", cache_dir=tmp_path / "cache")


def tls(srv: EtcdServer) -> api.EtcdSourceOptions:
    return api.EtcdSourceOptions(cacert=str(srv.pki.ca), cert=str(srv.pki.client_cert), key=str(srv.pki.client_key))


def tls_flags(srv: EtcdServer) -> list[str]:
    return ["--cacert", str(srv.pki.ca), "--cert", str(srv.pki.client_cert), "--key", str(srv.pki.client_key)]


class Following:
    """``api.etcd_follow`` in a thread, stopped on exit."""

    def __init__(self, repo: Repository, srv: EtcdServer, **options: float) -> None:
        self.stop = threading.Event()
        self.lines: list[str] = []
        self.report: api.FollowReport | None = None
        self.error: BaseException | None = None
        opts = api.FollowOptions(**{"interval": 0.3, "idle_every": 1.0, **options})  # type: ignore[arg-type]

        def run() -> None:
            try:
                self.report = api.etcd_follow(
                    repo, f"etcd://{srv.endpoint}", tls(srv), opts, stop=self.stop, log=self.lines.append
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised by the test
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> Following:
        self.thread.start()
        assert wait_for(lambda: any("stored full snapshot" in line for line in self.lines) or self.error is not None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        if self.error is not None:
            raise self.error

    def wait_stored(self, revision: int) -> None:
        """Until a segment holding ``revision`` is stored."""

        def stored() -> bool:
            for line in self.lines:
                if "stored segment" in line:
                    upto = int(line.split("revisions ")[1].split("..")[1].split(",")[0])
                    if upto >= revision:
                        return True
            return False

        assert wait_for(stored, timeout=30), self.lines[-5:]


def txn(client: EtcdClient, *ops: rpc_pb2.RequestOp) -> int:
    return int(services.kv(client._chan()).Txn(rpc_pb2.TxnRequest(success=list(ops)), timeout=10).header.revision)


def put_op(key: bytes, value: bytes, lease: int = 0) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def del_op(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key))


def instant() -> dt.datetime:
    """A moment with quiet on both sides of it."""
    time.sleep(0.4)
    now = dt.datetime.now(dt.UTC)
    time.sleep(0.4)
    return now


def state(client: EtcdClient) -> dict[bytes, tuple[bytes, int]]:
    """key -> (value, mod_revision) of the test's keys."""
    return {kv.key: (kv.value, kv.mod_revision) for kv in client.range(b"/t/", b"/t0").kvs}


def served(srv: EtcdServer, data_dir: Path, name: str, peer_port: int) -> tuple[dict[bytes, tuple[bytes, int]], int]:
    """Start etcd on a restored data directory; its test keys and revision."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    peer = f"http://127.0.0.1:{peer_port}"
    log = open(data_dir.parent / f"{data_dir.name}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(srv.tools.etcd), "--name", name, "--data-dir", str(data_dir), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"{name}={peer}", "--unsafe-no-fsync", "--listen-metrics-urls="],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = EtcdClient(url, connect_timeout=1.0)
        assert wait_for(lambda: _answers(client), timeout=30)
        with client:
            return state(client), client.status().revision
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _answers(client: EtcdClient) -> bool:
    try:
        client.connect()
        client.status()
        return True
    except errors.KubekeepError:
        client.close()
        return False


def restore(repo: Repository, srv: EtcdServer, target: Path, **point: object) -> dict[str, object]:
    peer_port = free_port()
    report = api.etcd_restore_point(
        repo,
        target,
        name="m1",
        initial_advertise_peer_urls=f"http://127.0.0.1:{peer_port}",
        etcdutl=str(srv.tools.etcdutl),
        etcd=str(srv.tools.etcd),
        **point,  # type: ignore[arg-type]
    )
    report["peer_port"] = peer_port
    return report


def test_restore_at_any_time_or_revision_between_full_snapshots(server: EtcdServer, tmp_path: Path) -> None:
    repo = Repository.init(RepoSpec(str(tmp_path / "repo")).backend(), "pw", kdf=FAST_KDF, no_cache=True)
    c = server.client()
    c.put(b"/t/a", b"a1")
    c.put(b"/t/b", b"b1")
    seen: dict[str, tuple[dt.datetime, dict[bytes, tuple[bytes, int]], int]] = {}
    with Following(repo, server, full_every=3.0) as f:
        seen["t0"] = (instant(), state(c), c.status().revision)
        # one revision of three events: a put, a changed value and a delete
        txn(c, put_op(b"/t/c", b"c1"), put_op(b"/t/a", b"a2"), del_op(b"/t/b"))
        seen["t1"] = (instant(), state(c), c.status().revision)
        lease = services.lease(c._chan()).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=600), timeout=10).ID
        lease_rev = txn(c, put_op(b"/t/d", b"d1", lease))
        for i in range(20):
            c.put(b"/t/n", str(i).encode())
        seen["t2"] = (instant(), state(c), c.status().revision)
        assert wait_for(lambda: sum("stored full snapshot" in line for line in f.lines) >= 2, timeout=30)
        c.delete(b"/t/c")
        c.put(b"/t/a", b"a3")
        seen["t3"] = (instant(), state(c), c.status().revision)
        f.wait_stored(c.status().revision)
    assert f.report is not None and len(f.report.full_snapshots) >= 2

    (window,) = api.recovery_windows(repo)
    assert window.latest is not None and window.latest.revision == seen["t3"][2]
    for name, (when, expected, revision) in seen.items():
        at = restore(repo, server, tmp_path / f"at-{name}", at=when)
        got, rev = served(server, tmp_path / f"at-{name}", "m1", int(str(at["peer_port"])))
        assert (got, rev) == (expected, revision), name
        full = at["full_snapshot"]
        if revision >= lease_rev and full["revision"] < lease_rev:  # type: ignore[index]
            assert at["replayed"]["leases_granted"] == 1  # type: ignore[index]
        by_rev = restore(repo, server, tmp_path / f"rev-{name}", revision=revision)
        assert served(server, tmp_path / f"rev-{name}", "m1", int(str(by_rev["peer_port"])))[0] == expected


def test_kill_and_restart_follow_without_a_gap(server: EtcdServer, kk: KK, tmp_path: Path) -> None:
    c = server.client()
    follow = ["etcd", "follow", f"etcd://{server.endpoint}", *tls_flags(server), "--interval", "0.3s"]
    proc = kk.popen(*follow)
    try:
        assert wait_for(lambda: bool(_timeline(kk)), timeout=60)
        c.put(b"/t/first", b"1")
        assert wait_for(lambda: _segments(kk) >= 1, timeout=60)
        for i in range(5):
            c.put(b"/t/k", str(i).encode())
        before = c.status().revision
        assert wait_for(lambda: _latest(kk) >= before, timeout=30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    outage_start = dt.datetime.now(dt.UTC)
    for i in range(5, 10):
        c.put(b"/t/k", str(i).encode())  # while nobody follows
    down_rev = c.status().revision
    time.sleep(0.5)
    proc = kk.popen(*follow)
    try:
        c.put(b"/t/k", b"after")
        last = c.status().revision
        assert wait_for(lambda: _latest(kk) >= last, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    (tl,) = kk.json("etcd", "timeline")
    assert len(tl["full_snapshots"]) == 1, "a restart resumes: no new full snapshot"
    assert len(tl["runs"]) == 1 and len(tl["windows"]) == 1, tl["runs"]
    assert tl["runs"][0]["upto_revision"] == last and any(s["outage"] for s in tl["segments"])
    # a time inside the outage cannot be placed; a revision inside it can
    peer = f"http://127.0.0.1:{free_port()}"
    line = stderr_line(
        kk.run("etcd", "restore-dir", "--at", (outage_start + dt.timedelta(seconds=0.2)).isoformat(),
               "--data-dir", str(tmp_path / "x"), "--name", "m1", "--initial-advertise-peer-urls", peer,
               "--etcdutl", str(server.tools.etcdutl), expect=2)
    )  # fmt: skip
    assert line.startswith("error: ") and "outage" in line, line
    report = kk.json(
        "etcd", "restore-dir", "--revision", str(down_rev), "--data-dir", str(tmp_path / "rev"), "--name", "m1",
        "--initial-advertise-peer-urls", peer, "--etcdutl", str(server.tools.etcdutl),
        "--bump-revision", "1000", "--mark-compacted",
    )  # fmt: skip
    assert report["target"]["revision"] == report["revision"] == down_rev
    got, rev = served(server, tmp_path / "rev", "m1", int(peer.rsplit(":", 1)[1]))
    assert got[b"/t/k"][0] == b"9" and rev == down_rev + 1000


def _timeline(kk: KK) -> list[dict[str, Any]]:
    result = kk.run("etcd", "timeline", "--json", expect=None)
    return list(json.loads(result.stdout)) if result.returncode == 0 else []


def _segments(kk: KK) -> int:
    return sum(len(tl["segments"]) for tl in _timeline(kk))


def _latest(kk: KK) -> int:
    return max((int(s["upto_revision"]) for tl in _timeline(kk) for s in tl["segments"]), default=0)


def test_compaction_during_follow_and_while_stopped(server: EtcdServer, tmp_path: Path) -> None:
    repo = Repository.init(RepoSpec(str(tmp_path / "repo")).backend(), "pw", kdf=FAST_KDF, no_cache=True)
    c = server.client()
    with Following(repo, server) as f:
        for i in range(10):
            c.put(b"/t/k", str(i).encode())
        server.etcdctl("compact", str(c.status().revision))  # the live watch is not affected
        c.put(b"/t/k", b"after compaction")
        f.wait_stored(c.status().revision)
    assert f.report is not None and f.report.compactions == 0
    stopped_at = c.status().revision
    for i in range(5):
        c.put(b"/t/j", str(i).encode())
    server.etcdctl("compact", str(c.status().revision))  # history the restart needs is gone
    with Following(repo, server) as f2:
        c.put(b"/t/j", b"last")
        f2.wait_stored(c.status().revision)
    assert f2.report is not None and f2.report.compactions == 1 and len(f2.report.full_snapshots) == 1
    assert any("compacted" in line and "full snapshot" in line for line in f2.lines), f2.lines
    (tl,) = api.timelines(repo)
    windows = tl.windows()
    assert len(windows) == 2 and windows[0][1].revision == stopped_at, "the lost stretch is a gap"
    with pytest.raises(errors.UsageError, match="gap|no full snapshot"):
        api.etcd_restore_point(
            repo, tmp_path / "gap", name="m1", revision=stopped_at + 2, etcdutl=str(server.tools.etcdutl)
        )


def test_forget_keeps_segments_with_their_full_snapshot(server: EtcdServer, tmp_path: Path) -> None:
    repo = Repository.init(RepoSpec(str(tmp_path / "repo")).backend(), "pw", kdf=FAST_KDF, no_cache=True)
    c = server.client()
    with Following(repo, server, full_every=1.5) as f:
        for i in range(40):
            c.put(b"/t/k", str(i).encode())
            time.sleep(0.1)
        assert wait_for(lambda: sum("stored full snapshot" in line for line in f.lines) >= 3, timeout=30)
        f.wait_stored(c.status().revision)
    snaps = repo.snapshots()
    fulls = [s for s in snaps if s.kind == "etcd"]
    newest = fulls[-1]
    # every closed chain's segments were merged into one; the open chain keeps its own
    for full in fulls[:-1]:
        assert sum(s.extends == full.chain for s in snaps) <= 1, full.short_id
    assert any("merged" in line for line in f.lines), f.lines
    (before,) = api.timelines(repo)
    assert len(before.windows()) == 1
    report = api.forget(repo, api.Policy(last=1))
    kept = {d.snapshot.id for d in report.decisions if d.keep}
    assert {s.id for s in fulls if s.id in kept} == {newest.id}
    # every segment of the newest chain stays, every other goes
    for s in snaps:
        if s.extends is not None:
            assert (s.id in kept) == (s.extends == newest.chain), s.short_id
    # the window now starts at the kept full snapshot and still reaches the last revision
    (window,) = api.recovery_windows(repo)
    assert window.latest is not None and window.latest.revision == c.status().revision
    # naming a full snapshot takes its segments along
    api.forget(repo, ids=[newest.id])
    assert not [s for s in repo.snapshots() if s.extends == newest.chain]


def test_one_line_errors(server: EtcdServer, kk: KK, tmp_path: Path) -> None:
    def error(*args: str) -> str:
        line = stderr_line(kk.run(*args, expect=None))
        assert line.startswith("error: "), line
        return line

    restore_args = ["--data-dir", str(tmp_path / "d"), "--name", "m1", "--etcdutl", str(server.tools.etcdutl)]
    assert "no etcd snapshot" in error("etcd", "restore-dir", "--revision", "5", *restore_args)
    proc = kk.popen("etcd", "follow", f"etcd://{server.endpoint}", *tls_flags(server), "--interval", "0.3s")
    try:
        assert wait_for(lambda: bool(_timeline(kk)), timeout=60)
        server.client().put(b"/t/first", b"1")
        assert wait_for(lambda: _segments(kk) >= 1, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "before the earliest" in error("etcd", "restore-dir", "--at", "2020-01-01T00:00:00Z", *restore_args)
    assert "after the latest" in error("etcd", "restore-dir", "--at", "2999-01-01T00:00:00Z", *restore_args)
    assert "bad time" in error("etcd", "restore-dir", "--at", "yesterday", *restore_args)
    assert "not both" in error("etcd", "restore-dir", "latest", "--revision", "3", *restore_args)
    assert "no etcd endpoint answered" in error(
        "etcd", "follow", f"etcd://127.0.0.1:{free_port()}", "--for", "1s"
    ) or "unreachable" in error("etcd", "follow", f"etcd://127.0.0.1:{free_port()}", "--for", "1s")
    status = kk.json("etcd", "status")
    assert status[0]["full_snapshots"] == 1 and status[0]["latest"]["revision"] >= status[0]["earliest"]["revision"]


def test_a_member_that_goes_away_is_replaced_by_the_next_endpoint(server: EtcdServer, tmp_path: Path) -> None:
    repo = Repository.init(RepoSpec(str(tmp_path / "repo")).backend(), "pw", kdf=FAST_KDF, no_cache=True)
    c = server.client()
    proxy = CuttingProxy(server.client_port)  # the first endpoint: a way to the member that can vanish
    stop = threading.Event()
    lines: list[str] = []
    options = api.FollowOptions(interval=0.3, idle_every=1.0)
    uri = f"etcd://127.0.0.1:{proxy.port},{server.endpoint}"
    result: list[api.FollowReport] = []
    thread = threading.Thread(
        target=lambda: result.append(api.etcd_follow(repo, uri, tls(server), options, stop=stop, log=lines.append))
    )
    thread.start()
    try:
        assert wait_for(lambda: any(f"127.0.0.1:{proxy.port}" in line for line in lines), timeout=30), lines
        c.put(b"/t/k", b"before")
        proxy.close()  # the watched member is gone from this address
        for i in range(5):
            c.put(b"/t/k", str(i).encode())
        last = c.status().revision
        assert wait_for(lambda: any(f"watching etcd at {server.endpoint}" in line for line in lines), timeout=60)
        assert wait_for(lambda: api.recovery_windows(repo)[0].latest.revision >= last, timeout=30)  # type: ignore[union-attr]
    finally:
        stop.set()
        thread.join(30)
    (report,) = result
    assert report.reconnects >= 1 and report.full_snapshots and len(report.full_snapshots) == 1
    (tl,) = api.timelines(repo)
    assert len(tl.windows()) == 1, "the switch left no gap"
