"""Replay watch events onto a full snapshot: a temporary loopback etcd does the writing.

The full snapshot is restored (etcdutl) into a scratch data directory and served by an ``etcd``
on 127.0.0.1 ports nobody else uses. Each recorded revision is sent back as one unconditional
transaction of its puts and deletes, in order, so the replica's revisions advance exactly as
the original's did: a transaction that lands on any other revision stops the replay with an
IntegrityError. A lease granted after the full snapshot is granted again with its own id.
The result is snapshotted through the maintenance API (SHA-256 checked) and that file is what
``restore-dir`` turns into the member's data directory, with the revision bump and
compaction marking it asks for.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from kubekeep.errors import ConnectorError, IntegrityError, UsageError

from . import services
from ._proto import rpc_pb2
from .client import EtcdClient, rpc_error
from .restore import restore_data_dir
from .segment import PUT, Record

_NAME = "kubekeep-replay"


@dataclass(slots=True)
class ReplayResult:
    base_revision: int  # the full snapshot's revision, as the replica reported it
    revision: int  # the revision reached
    revisions: int  # revisions replayed
    events: int
    leases_granted: int
    seconds: float


def find_etcd(etcd: str | os.PathLike[str] | None, beside: str | None = None) -> str:
    """The given etcd binary, else one next to etcdutl, else etcd on PATH."""
    if etcd is not None:
        path = shutil.which(os.fspath(etcd)) or os.fspath(etcd)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise UsageError(f"etcd {os.fspath(etcd)!r} not found or not executable")
        return path
    if beside:
        near = Path(beside).with_name("etcd")
        if near.is_file() and os.access(near, os.X_OK):
            return str(near)
    found = shutil.which("etcd")
    if not found:
        raise UsageError(
            "replaying deltas needs an etcd binary (the same release as etcdutl): "
            "put it on PATH or next to etcdutl, or pass --etcd"
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def by_revision(records: Iterable[Record]) -> Iterator[tuple[int, list[Record]]]:
    """Records grouped into revisions, in order."""
    group: list[Record] = []
    for rec in records:
        if group and rec.revision != group[0].revision:
            yield group[0].revision, group
            group = []
        group.append(rec)
    if group:
        yield group[0].revision, group


class _Replica:
    """A single-member etcd on loopback over ``data_dir``, stopped on exit."""

    def __init__(self, etcd: str, data_dir: Path, peer_port: int, log_path: Path) -> None:
        self.client_port = _free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self.cmd = [
            etcd,
            f"--name={_NAME}",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={_NAME}={peer}",
            "--listen-metrics-urls=",
            "--log-level=error",
        ]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EtcdClient:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        client = EtcdClient(self.url, connect_timeout=1.0, timeout=60.0)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise ConnectorError(f"the replay etcd exited at start (exit {self.proc.returncode}): {self._tail()}")
            try:
                client.connect()
                client.status()
                return client
            except ConnectorError:
                client.close()
                if time.monotonic() > deadline:
                    raise ConnectorError(f"the replay etcd did not answer within 60s: {self._tail()}") from None
                time.sleep(0.2)

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " ".join(lines[-1].split())[:300] if lines else "no log"

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _replay(client: EtcdClient, records: Iterable[Record], upto: int, lease_ttl: int) -> tuple[int, int, int, int, int]:
    """Send each revision after the replica's as one transaction; return (base, reached,
    revisions, events, leases granted)."""
    chan = client._chan()
    kv, leases = services.kv(chan), services.lease(chan)
    base = client.status().revision
    if base > upto:
        raise UsageError(f"the full snapshot is at revision {base}, after the target revision {upto}")
    current = base
    revisions = events = granted = 0
    known_leases: set[int] = set()
    endpoint = str(client.endpoint)
    for rev, group in by_revision(records):
        if rev <= base:
            continue
        if rev > upto:
            break
        if rev != current + 1:
            raise IntegrityError(
                f"the delta segments skip from revision {current} to {rev}: revisions {current + 1}..{rev - 1} are missing"
            )
        ops = []
        for rec in group:
            ev = rec.event
            if ev.type == PUT:
                lease = int(ev.kv.lease)
                if lease and lease not in known_leases:
                    try:
                        leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=lease, TTL=lease_ttl), timeout=60)
                        granted += 1
                    except grpc.RpcError as exc:
                        if "already exists" not in (exc.details() or ""):
                            raise rpc_error(exc, endpoint, f"granting lease {lease:x}") from None
                    known_leases.add(lease)
                ops.append(
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=ev.kv.key, value=ev.kv.value, lease=lease))
                )
            else:
                ops.append(rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=ev.kv.key)))
        try:
            resp = kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=60)
        except grpc.RpcError as exc:
            raise rpc_error(exc, endpoint, f"replaying revision {rev}") from None
        if resp.header.revision != rev:
            raise IntegrityError(
                f"replaying revision {rev} made revision {resp.header.revision}: the events do not fit the "
                "full snapshot (a key deleted that was not there, or a lease of the snapshot expired during the replay)"
            )
        current = rev
        revisions += 1
        events += len(group)
    if current != upto:
        raise IntegrityError(f"the delta segments end at revision {current}, before the target revision {upto}")
    return base, current, revisions, events, granted


def replay_to_file(
    snapshot_file: Path,
    records: Iterable[Record],
    upto: int,
    out_file: Path,
    *,
    etcd: str,
    etcdutl: str | None,
    lease_ttl: int = 3600,
) -> ReplayResult:
    """Restore ``snapshot_file`` into a replica, replay ``records`` up to revision ``upto``, and
    write the replica's snapshot (with its SHA-256 trailer) to ``out_file``."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".kubekeep-replay-", dir=out_file.parent) as tmp:
        work = Path(tmp)
        peer_port = _free_port()
        peer = f"http://127.0.0.1:{peer_port}"
        restore_data_dir(
            snapshot_file, work / "data", _NAME, f"{_NAME}={peer}", peer, "kubekeep-replay", None, False, etcdutl
        )
        with _Replica(etcd, work / "data", peer_port, work / "etcd.log") as client:
            try:
                base, reached, revisions, events, granted = _replay(client, records, upto, lease_ttl)
                stream = client.snapshot()
                with open(out_file, "wb") as out:
                    while chunk := stream.read(1 << 20):
                        out.write(chunk)
            finally:
                client.close()
    return ReplayResult(base, reached, revisions, events, granted, round(time.monotonic() - started, 3))
