#!/usr/bin/env python3
"""etcd point-in-time recovery benchmark (issue #17): RPO of `kubekeep etcd follow`, and the
bytes it stores per hour against full snapshots, against a real etcd on loopback.

    python bench/bench_etcd_pitr.py [--intervals 1,5,10] [--rpo-seconds 60] [--rate 10]
        [--minutes 10] [--churn-interval 10] [--full-period 10] [--full-ratio 1.0]
        [--scale 1.0] [--many N] [--no-rpo] [--no-churn] [--no-restore] [--work DIR] [--keep]

Starts a standalone etcd (testenv's pinned binary) with TLS and client-certificate auth on
loopback (tests/etcd/etcdserver.py), then:

1. RPO. For each ``--intervals`` setting: a fresh repository, ``kubekeep etcd follow
   --interval N``; once its first full snapshot is stored, a writer puts keys (2 KiB values)
   at ``--rate`` puts/s for ``--rpo-seconds`` and records each put's revision and the wall time
   its response arrived. From the follower's log (``stored segment ID: N event(s), revisions
   A..B`` with millisecond timestamps, written once the segment is in the repository) each
   write's delay until the segment holding its revision was stored: median, p95, max.

2. Churn. A small cluster's steady state (CHURN below: 10 nodes, ~300 pods, ~2,900 keys of
   Kubernetes-like protobuf values), preloaded, then for ``--minutes`` at fixed rates: leases
   renewed, a fixed set of objects updated, pods and events created and deleted, node status
   every 5 minutes, kube-apiserver's compaction every 5 minutes. Meanwhile, each into its own
   local repository: ``kubekeep etcd follow`` (interval ``--churn-interval``, defaults
   otherwise: one full snapshot at the start, more if the deltas outgrow ``--full-ratio`` x the
   database); ``kubekeep backup etcd://`` every ``--full-period`` seconds (full snapshots at
   about the follower's RPO); and ``kubekeep backup etcd://`` at the start and the end only
   (the hourly schedule). Repository growth on disk (``du -sb``) and kubekeep's own
   ``bytes_stored`` per snapshot, extrapolated to an hour; CPU seconds of each. The follower's
   timeline is checked against what was written (every revision, every event).

3. ``kubekeep etcd restore-dir --at`` the middle of the churn period: the full snapshot plus the
   deltas replayed; its time and what it replayed.

4. ``--many N``: N segments in one repository (follow ``--interval 0.05s``), and what
   ``snapshots``, ``etcd status``, ``etcd timeline`` and ``restore-dir`` cost with them.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import heapq
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_etcd import Run, run
from kubekeep.etcd._proto import rpc_pb2, rpc_pb2_grpc
from tests.etcd.etcdserver import EtcdServer, find_tools, make_pki

PASSWORD = "bench-password"
KUBEKEEP = [sys.executable, "-m", "kubekeep.cli.main"]


# -- processes and repositories -----------------------------------------------------------------


def du(path: Path) -> int:
    """``du -sb``: apparent bytes of the repository directory."""
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def size(path: Path) -> int:
    """Bytes in the repository's files (``du -sb`` also counts its directories, 4 KiB each)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def files(path: Path) -> dict[str, int]:
    """How many files each of the repository's directories holds."""
    return {d: sum(1 for f in (path / d).rglob("*") if f.is_file()) for d in ("data", "index", "snapshots")}


def proc_cpu(pid: int) -> float:
    """User + system seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh_repo(work: Path, name: str) -> tuple[Path, dict[str, str]]:
    repo, cache = work / f"repo-{name}", work / f"cache-{name}"
    for d in (repo, cache):
        shutil.rmtree(d, ignore_errors=True)
    env = {"KUBEKEEP_REPOSITORY": str(repo), "KUBEKEEP_PASSWORD": PASSWORD, "KUBEKEEP_CACHE_DIR": str(cache)}
    run([*KUBEKEEP, "init"], env=env)
    return repo, env


def tls_args(srv: EtcdServer) -> list[str]:
    return ["--cacert", str(srv.pki.ca), "--cert", str(srv.pki.client_cert), "--key", str(srv.pki.client_key)]


def full_backup(srv: EtcdServer, env: dict[str, str]) -> tuple[Run, dict[str, Any]]:
    r = run([*KUBEKEEP, "--json", "backup", f"etcd://{srv.endpoint}", *tls_args(srv)], env=env)
    return r, json.loads(r.stdout)


def kk_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run([*KUBEKEEP, "--json", *args], env=env).stdout)


# -- the follower and its log ---------------------------------------------------------------------

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z stored (segment|full snapshot) (\w+): (.*)$")
SEGMENT = re.compile(r"(\d+) event\(s\), revisions (\d+)\.\.(\d+), (\d+) bytes")
FULL = re.compile(r"revision (\d+), (\d+) bytes")


@dataclass(frozen=True)
class Stored:
    at_ns: int  # the log line's time: the segment or snapshot is in the repository
    kind: str  # "segment" or "full snapshot"
    short_id: str
    events: int = 0
    first: int = 0  # the segment's first event's revision (its upto when empty)
    upto: int = 0  # the segment's last revision; a full snapshot's revision
    size: int = 0  # encoded segment bytes; a full snapshot's bytes


def parse_log(text: str) -> list[Stored]:
    out: list[Stored] = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        at = dt.datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC)
        at_ns = int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000
        if m[2] == "segment":
            s = SEGMENT.match(m[4])
            assert s, line
            out.append(Stored(at_ns, "segment", m[3], int(s[1]), int(s[2]), int(s[3]), int(s[4])))
        else:
            f = FULL.match(m[4])
            assert f, line
            out.append(Stored(at_ns, "full snapshot", m[3], upto=int(f[1]), size=int(f[2])))
    return out


class Follower:
    """``kubekeep etcd follow`` as a child process, its log in a file."""

    def __init__(self, srv: EtcdServer, env: dict[str, str], log: Path, *options: str) -> None:
        self.log = log
        self.out = log.with_suffix(".json")
        self._err = open(log, "wb")  # noqa: SIM115 - open for the child's life
        self._out = open(self.out, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*KUBEKEEP, "--json", "etcd", "follow", f"etcd://{srv.endpoint}", *tls_args(srv), *options],
            env={**os.environ, **env},
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
        )
        self.cpu = 0.0
        self.peak_rss_mb = 0.0
        self.report: dict[str, Any] = {}

    def stored(self) -> list[Stored]:
        return parse_log(self.log.read_text(errors="replace"))

    def wait_for(self, done: Callable[[list[Stored]], bool], timeout: float, what: str) -> list[Stored]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"kubekeep etcd follow exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
                )
            items = self.stored()
            if done(items):
                return items
            time.sleep(0.05)
        raise SystemExit(f"kubekeep etcd follow: no {what} within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> list[Stored]:
        """SIGTERM (stores what was received, exits 0); CPU and peak RSS of the whole run."""
        self.proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._err.close()
        self._out.close()
        if self.proc.returncode != 0:
            raise SystemExit(f"kubekeep etcd follow exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        self.cpu = usage.ru_utime + usage.ru_stime
        self.peak_rss_mb = usage.ru_maxrss / 1024
        text = self.out.read_text().strip()
        self.report = json.loads(text) if text else {}
        return self.stored()


def covering(stored: list[Stored], rev: int) -> Stored | None:
    """The first segment stored that holds revision ``rev``."""
    for s in stored:
        if s.kind == "segment" and s.events and s.first <= rev <= s.upto:
            return s
    return None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- 1. RPO --------------------------------------------------------------------------------------


def rpo_run(srv: EtcdServer, work: Path, interval: float, seconds: float, rate: float) -> dict[str, Any]:
    _, env = fresh_repo(work, f"rpo-{interval:g}")
    follower = Follower(srv, env, work / f"follow-rpo-{interval:g}.log", "--interval", f"{interval:g}s")
    follower.wait_for(lambda s: any(x.kind == "full snapshot" for x in s), 120, "full snapshot")
    rnd = random.Random(int(interval * 1000))
    writes: list[tuple[int, int]] = []  # (revision, Unix ns the put's response arrived)
    with srv.client(timeout=30) as c:
        kv = rpc_pb2_grpc.KVStub(c._chan())
        t0 = time.monotonic()
        n = int(seconds * rate)
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            value = b'{"kind":"ConfigMap","n":%d,"data":"%s"}' % (i, rnd.randbytes(1000).hex().encode())
            resp = kv.Put(rpc_pb2.PutRequest(key=b"/registry/configmaps/rpo/cm-%04d" % (i % 200), value=value))
            writes.append((resp.header.revision, time.time_ns()))
    last = writes[-1][0]
    follower.wait_for(lambda s: any(x.kind == "segment" and x.upto >= last for x in s), interval + 60, "last segment")
    stored = follower.stop()
    delays: list[float] = []
    missing = 0
    for rev, at_ns in writes:
        seg = covering(stored, rev)
        if seg is None:
            missing += 1
            continue
        delays.append((seg.at_ns - at_ns) / 1e9)
    segs = [s for s in stored if s.kind == "segment"]
    # segments that stored at least one of the writes: the time between two of them
    holding = sorted({s.at_ns for s in segs if s.events})
    gaps = [(b - a) / 1e9 for a, b in zip(holding, holding[1:], strict=False)]
    return {
        "interval": interval,
        "writes": len(writes),
        "missing": missing,
        "segments": len(segs),
        "median": statistics.median(delays),
        "p95": pct(delays, 0.95),
        "max": max(delays),
        "min": min(delays),
        "mean": statistics.mean(delays),
        "gap_median": statistics.median(gaps) if gaps else 0.0,
        "cpu": follower.cpu,
        "rss": follower.peak_rss_mb,
    }


def rpo(srv: EtcdServer, args: argparse.Namespace, work: Path) -> list[str]:
    lines = [
        f"RPO: one writer, {args.rate:g} puts/s of ~2 KiB values for {args.rpo_seconds:g} s per setting; "
        "delay = the log time of the segment holding the put's revision - the time the put's response arrived",
        "",
        f"{'--interval':>10}{'writes':>8}{'segments':>10}{'median s':>10}{'p95 s':>8}{'max s':>8}{'min s':>8}"
        f"{'mean s':>8}{'segment every':>15}{'follow CPU s':>14}{'peak RSS MB':>13}",
    ]
    print("\n".join(lines), flush=True)
    for interval in args.intervals:
        r = rpo_run(srv, work, interval, args.rpo_seconds, args.rate)
        lines.append(
            f"{r['interval']:>9g}s{r['writes']:8}{r['segments']:10}{r['median']:10.2f}{r['p95']:8.2f}{r['max']:8.2f}"
            f"{r['min']:8.2f}{r['mean']:8.2f}{r['gap_median']:14.2f}s{r['cpu']:14.1f}{r['rss']:13.0f}"
            + (f"   {r['missing']} write(s) in no segment!" if r["missing"] else "")
        )
        print(lines[-1], flush=True)
    return lines


# -- 2. churn: a small cluster's steady state ------------------------------------------------------

#: the cluster: kind -> (objects, how its values look); rates per second below
CHURN = {
    "nodes": 10,
    "pods": 300,
    "deployments": 40,
    "replicasets": 80,
    "services": 60,
    "endpointslices": 60,
    "configmaps": 120,
    "secrets": 80,
    "serviceaccounts": 80,
    "events": 1800,  # 0.5/s created, kept 1 h (kube-apiserver's --event-ttl), so 1,800 live
}
NODE_LEASE_EVERY = 10.0  # kubelet renews its node's Lease every 10 s
LEADER_LEASES = 4  # controller-manager, scheduler and two operators renew every 2 s
LEADER_LEASE_EVERY = 2.0
UPDATES_PER_S = 2.0  # of the fixed set: pods, endpointslices, configmaps, deployments, replicasets
POD_CHURN_EVERY = 10.0  # a job's pod: created, two status updates, deleted 5 minutes later
EVENTS_PER_S = 0.5  # created; the oldest deleted (its TTL ran out)
NODE_STATUS_EVERY = 300.0  # kubelet's nodeStatusReportFrequency
COMPACT_EVERY = 300.0  # kube-apiserver --etcd-compaction-interval


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


MAPS = {"labels", "annotations", "data", "nodeSelector", "matchLabels", "capacity", "allocatable"}


def pb(obj: dict[str, Any], as_map: bool = False) -> bytes:
    """Protobuf wire format of a JSON-like object, as Kubernetes stores built-in kinds: field
    numbers for names, maps as repeated (key, value) entries, nested messages length-delimited."""
    out = bytearray()
    for n, (k, v) in enumerate(obj.items(), 1):
        if as_map:
            entry = varint(10) + varint(len(k)) + k.encode() + varint(18)
            body = str(v).encode()
            out += varint(10) + varint(len(entry) + len(varint(len(body))) + len(body)) + entry
            out += varint(len(body)) + body
            continue
        for item in v if isinstance(v, list) else [v]:
            if item is None:
                continue
            if isinstance(item, bool | int):
                out += varint(n << 3) + varint(int(item))
                continue
            body = pb(item, k in MAPS) if isinstance(item, dict) else str(item).encode()
            out += varint(n << 3 | 2) + varint(len(body)) + body
    return bytes(out)


def k8s_value(api_version: str, kind: str, obj: dict[str, Any]) -> bytes:
    """``k8s\\0`` + runtime.Unknown{typeMeta, raw, contentEncoding, contentType}, as the API server writes."""
    return b"k8s\x00" + pb({"typeMeta": {"apiVersion": api_version, "kind": kind}, "raw": {"o": obj}})


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def uid(rnd: random.Random) -> str:
    h = rnd.randbytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def managed(manager: str, t: float, fields: int) -> dict[str, Any]:
    body = ",".join(f'"f:field{i}":{{".":{{}},"f:sub{i}":{{}}}}' for i in range(fields))
    return {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "v1",
        "time": stamp(t),
        "fieldsType": "FieldsV1",
        "fieldsV1": "{" + body + "}",
    }


@dataclass
class Obj:
    key: bytes
    kind: str
    name: str
    ns: str
    uid: str
    seed: bytes  # per-object random bits: IPs, container ids, image digests
    gen: int = 1


class Cluster:
    """The objects of a small cluster and how each kind's value looks (protobuf, like kube-apiserver's)."""

    def __init__(self, rnd: random.Random, scale: float) -> None:
        self.rnd = rnd
        self.objects: dict[str, list[Obj]] = {k: [] for k in CHURN}
        self.counter = 0
        self.scale = scale
        for kind, n in CHURN.items():
            for _ in range(max(1, round(n * scale)) if kind != "nodes" else n):
                self.new(kind)
        self.leases = [self.make("leases", f"node-{i:02d}", "kube-node-lease") for i in range(CHURN["nodes"])]
        self.leaders = [
            self.make("leases", name, "kube-system")
            for name in ("kube-controller-manager", "kube-scheduler", "cert-manager-controller", "ingress-nginx-leader")
        ][:LEADER_LEASES]
        self.jobs: list[Obj] = []

    def make(self, kind: str, name: str, ns: str) -> Obj:
        key = f"/registry/{kind}/{ns}/{name}".encode() if ns else f"/registry/{kind}/{name}".encode()
        if kind == "leases":
            key = f"/registry/leases/{ns}/{name}".encode()
        return Obj(key, kind, name, ns, uid(self.rnd), self.rnd.randbytes(64))

    def new(self, kind: str) -> Obj:
        self.counter += 1
        ns = "" if kind == "nodes" else f"team-{self.counter % 12:02d}"
        name = f"node-{len(self.objects['nodes']):02d}" if kind == "nodes" else f"{kind[:-1]}-{self.counter:06d}"
        if kind == "events":
            name = f"pod-{self.counter % 997:06d}.{self.rnd.randbytes(8).hex()}"
        o = self.make(kind, name, ns)
        self.objects[kind].append(o)
        return o

    def value(self, o: Obj, t: float) -> bytes:
        h = o.seed.hex()
        meta: dict[str, Any] = {
            "name": o.name,
            "namespace": o.ns,
            "uid": o.uid,
            "generation": o.gen,
            "creationTimestamp": stamp(t - 86400),
            "labels": {"app.kubernetes.io/name": o.name.rsplit("-", 1)[0], "pod-template-hash": h[:10]},
        }
        obj: dict[str, Any]
        spec: dict[str, Any]
        if o.kind == "pods":
            meta["managedFields"] = [managed("kube-controller-manager", t - 86400, 12), managed("kubelet", t, 26)]
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": o.name, "uid": h[:36]}]
            obj = {
                "metadata": meta,
                "spec": {
                    "containers": [
                        {
                            "name": f"c{i}",
                            "image": f"registry.example.com/team/app{i}@sha256:{h[i * 8 :]}{h[: i * 8]}",
                            "ports": [{"containerPort": 8080 + i, "protocol": "TCP"}],
                            "env": [{"name": f"VAR_{j}", "value": f"value-{j}-{o.name}"} for j in range(6)],
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                            "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/k8s"}],
                        }
                        for i in range(3)
                    ],
                    "nodeName": f"node-{o.seed[0] % 10:02d}",
                    "serviceAccountName": "default",
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}],
                },
                "status": {
                    "phase": "Running",
                    "conditions": [
                        {"type": c, "status": "True", "lastTransitionTime": stamp(t - (o.gen % 7) * 60)}
                        for c in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                    ],
                    "hostIP": f"10.0.0.{o.seed[0] % 10}",
                    "podIP": f"10.244.{o.seed[1]}.{o.seed[2]}",
                    "startTime": stamp(t - 3600),
                    "containerStatuses": [
                        {
                            "name": f"c{i}",
                            "ready": True,
                            "restartCount": o.gen // 3,
                            "containerID": f"containerd://{hashlib.sha256(o.seed + bytes([i, o.gen // 3 % 256])).hexdigest()}",
                            "imageID": f"registry.example.com/team/app{i}@sha256:{h}",
                            "state": {"running": {"startedAt": stamp(t - o.gen)}},
                        }
                        for i in range(3)
                    ],
                },
            }
            return k8s_value("v1", "Pod", obj)
        if o.kind == "nodes":
            meta["managedFields"] = [managed("kubelet", t, 30)]
            obj = {
                "metadata": meta,
                "spec": {"podCIDR": f"10.244.{o.seed[0]}.0/24", "providerID": f"kind://docker/kind/{o.name}"},
                "status": {
                    "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                    "allocatable": {"cpu": "8", "memory": "31Gi", "pods": "110"},
                    "conditions": [
                        {"type": c, "status": "False", "lastHeartbeatTime": stamp(t), "reason": f"Kubelet{c}"}
                        for c in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
                    ],
                    "images": [
                        {
                            "names": [
                                f"registry.example.com/img{i}@sha256:{(o.seed * 2)[i % 32 : i % 32 + 32].hex()}",
                                f"registry.example.com/img{i}:v1.{i}.0",
                            ],
                            "sizeBytes": 10_000_000 + i,
                        }
                        for i in range(50)
                    ],
                    "nodeInfo": {"kubeletVersion": "v1.34.4", "containerRuntimeVersion": "containerd://2.1.0"},
                },
            }
            return k8s_value("v1", "Node", obj)
        if o.kind == "leases":
            spec = {
                "holderIdentity": f"{o.name}_{o.uid}",
                "leaseDurationSeconds": 40 if o.ns == "kube-node-lease" else 15,
                "renewTime": f"{stamp(t)[:-1]}.{int(t * 1e6) % 1_000_000:06d}Z",
            }
            meta.pop("labels")
            return k8s_value("coordination.k8s.io/v1", "Lease", {"metadata": meta, "spec": spec})
        if o.kind == "events":
            meta.pop("labels")
            obj = {
                "metadata": meta,
                "involvedObject": {"kind": "Pod", "namespace": o.ns, "name": o.name.split(".")[0], "uid": h[:36]},
                "reason": "Pulled",
                "message": f'Successfully pulled image "registry.example.com/team/app@sha256:{h}" in 1.2s',
                "source": {"component": "kubelet", "host": f"node-{o.seed[0] % 10:02d}"},
                "firstTimestamp": stamp(t),
                "lastTimestamp": stamp(t),
                "count": 1,
                "type": "Normal",
            }
            return k8s_value("v1", "Event", obj)
        if o.kind == "secrets":
            data = {f"key{i}": base64.b64encode(o.seed * 6 + o.gen.to_bytes(4)).decode() for i in range(3)}
            return k8s_value("v1", "Secret", {"metadata": meta, "data": data, "type": "Opaque"})
        if o.kind == "configmaps":
            data = {
                f"config{i}.yaml": f"setting: {o.gen}\nname: {o.name}\nrules:\n" + "  - allow: x\n" * 30
                for i in range(2)
            }
            return k8s_value("v1", "ConfigMap", {"metadata": meta, "data": data})
        if o.kind == "endpointslices":
            eps = [
                {
                    "addresses": [f"10.244.{b}.{o.gen % 250}"],
                    "conditions": {"ready": True},
                    "nodeName": f"node-{b % 10:02d}",
                }
                for b in o.seed[:6]
            ]
            return k8s_value("discovery.k8s.io/v1", "EndpointSlice", {"metadata": meta, "endpoints": eps})
        # deployments, replicasets, services, serviceaccounts: a spec with a pod template
        meta["managedFields"] = [
            managed("kubectl-client-side-apply", t - 86400, 16),
            managed("kube-controller-manager", t, 6),
        ]
        meta["annotations"] = {
            "deployment.kubernetes.io/revision": str(o.gen),
            "kubectl.kubernetes.io/last-applied": h * 4,
        }
        spec = {"replicas": 3, "selector": {"matchLabels": meta["labels"]}, "template": {"image": f"app@sha256:{h}"}}
        status = {"observedGeneration": o.gen, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3}
        return k8s_value("apps/v1", o.kind.capitalize()[:-1], {"metadata": meta, "spec": spec, "status": status})


@dataclass
class Churn:
    """What the generator did: revisions and times of every write."""

    puts: int = 0
    deletes: int = 0
    bytes_put: int = 0
    first_rev: int = 0
    last_rev: int = 0
    writes: list[tuple[int, int]] = field(default_factory=list)  # (revision, Unix ns)
    compactions: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class ChurnWriter:
    def __init__(self, srv: EtcdServer, cluster: Cluster) -> None:
        self.srv = srv
        self.cluster = cluster
        self.stats = Churn()

    def preload(self) -> tuple[int, int]:
        """Put every object once (400 in flight); returns (keys, bytes)."""
        c = self.cluster
        now = time.time()
        objs = [o for lst in c.objects.values() for o in lst] + c.leases + c.leaders
        size = 0
        with self.srv.client(timeout=120) as client:
            kv = rpc_pb2_grpc.KVStub(client._chan())
            for start in range(0, len(objs), 400):
                reqs = [rpc_pb2.PutRequest(key=o.key, value=c.value(o, now)) for o in objs[start : start + 400]]
                size += sum(len(r.value) for r in reqs)
                for f in [kv.Put.future(r, timeout=120) for r in reqs]:
                    f.result()
        return len(objs), size

    def run(self, seconds: float, stop: threading.Event | None = None) -> Churn:
        c, rnd, st = self.cluster, self.cluster.rnd, self.stats
        t0 = time.monotonic()
        queue: list[tuple[float, int, str, Any]] = []
        seq = 0

        def at(when: float, action: str, arg: Any = None) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(queue, (when, seq, action, arg))

        for i, lease in enumerate(c.leases):
            at(i * NODE_LEASE_EVERY / len(c.leases), "lease", (lease, NODE_LEASE_EVERY))
        for i, lease in enumerate(c.leaders):
            at(i * LEADER_LEASE_EVERY / len(c.leaders), "lease", (lease, LEADER_LEASE_EVERY))
        for i, node in enumerate(c.objects["nodes"]):
            at(i * NODE_STATUS_EVERY / len(c.objects["nodes"]), "node", node)
        at(0.25, "update")
        at(1.0, "job")
        at(0.5, "event")
        at(COMPACT_EVERY, "compact")
        pool = (
            c.objects["pods"] * 5
            + c.objects["endpointslices"] * 4
            + c.objects["configmaps"]
            + c.objects["deployments"] * 2
            + c.objects["replicasets"]
        )
        with self.srv.client(timeout=30) as client:
            kv = rpc_pb2_grpc.KVStub(client._chan())
            compact_to = client.status().revision

            def put(o: Obj, kind: str) -> None:
                value = c.value(o, time.time())
                resp = kv.Put(rpc_pb2.PutRequest(key=o.key, value=value))
                self._note(resp.header.revision, kind)
                st.puts += 1
                st.bytes_put += len(value)

            def delete(o: Obj, kind: str) -> None:
                resp = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=o.key))
                self._note(resp.header.revision, kind)
                st.deletes += 1

            while queue:
                when, _, action, arg = heapq.heappop(queue)
                if when >= seconds or (stop is not None and stop.is_set()):
                    break
                delay = t0 + when - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if action == "lease":
                    lease, every = arg
                    put(lease, "lease renewals")
                    at(when + every, action, arg)
                elif action == "node":
                    arg.gen += 1
                    put(arg, "node status")
                    at(when + NODE_STATUS_EVERY, action, arg)
                elif action == "update":
                    o = rnd.choice(pool)
                    o.gen += 1
                    put(o, "object updates")
                    at(when + rnd.expovariate(UPDATES_PER_S), action)
                elif action == "job":
                    o = c.new("pods")
                    c.objects["pods"].pop()  # not part of the fixed set
                    put(o, "job pods (create, 2 updates, delete)")
                    for dt_ in (2.0, 6.0):
                        at(when + dt_, "job-update", o)
                    at(when + 300.0, "job-delete", o)
                    at(when + POD_CHURN_EVERY, action)
                elif action == "job-update":
                    arg.gen += 1
                    put(arg, "job pods (create, 2 updates, delete)")
                elif action == "job-delete":
                    delete(arg, "job pods (create, 2 updates, delete)")
                elif action == "event":
                    put(c.new("events"), "events (create, delete oldest)")
                    delete(c.objects["events"].pop(0), "events (create, delete oldest)")
                    at(when + 1 / EVENTS_PER_S, action)
                elif action == "compact":
                    now_rev = client.status().revision
                    self.srv.etcdctl("compact", str(compact_to))
                    st.compactions += 1
                    compact_to = now_rev
                    at(when + COMPACT_EVERY, action)
        return st

    def _note(self, rev: int, kind: str) -> None:
        st = self.stats
        if not st.first_rev:
            st.first_rev = rev
        st.last_rev = rev
        st.writes.append((rev, time.time_ns()))
        st.by_kind[kind] = st.by_kind.get(kind, 0) + 1


@dataclass
class Periodic:
    """``kubekeep backup etcd://`` every ``period`` seconds (start to start) into one repository."""

    srv: EtcdServer
    env: dict[str, str]
    repo: Path
    period: float
    runs: list[Run] = field(default_factory=list)
    docs: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # du after each

    def loop(self, stop: threading.Event) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            r, doc = full_backup(self.srv, self.env)
            self.runs.append(r)
            self.docs.append(doc)
            self.sizes.append(size(self.repo))
            next_at += self.period
            while next_at < time.monotonic():
                next_at += self.period  # a backup took longer than the period: skip, do not pile up
            stop.wait(max(0.0, next_at - time.monotonic()))


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def churn(srv: EtcdServer, args: argparse.Namespace, work: Path) -> list[str]:
    import zstandard

    seconds = args.minutes * 60
    hour = 3600 / seconds
    cluster = Cluster(random.Random(17), args.scale)
    writer = ChurnWriter(srv, cluster)
    keys, preload_bytes = writer.preload()
    with srv.client() as client:
        st0 = client.status()
    sample = [cluster.value(o, time.time()) for lst in cluster.objects.values() for o in lst[:20]]
    raw = sum(map(len, sample))
    packed = sum(len(zstandard.compress(v, 3)) for v in sample)
    print(
        f"churn: preloaded {keys} keys, {preload_bytes / 1e6:.2f} MB of values (zstd -3 per value: "
        f"{raw / packed:.2f}:1), db {st0.db_size / 1e6:.1f} MB; {args.minutes:g} minutes of churn",
        flush=True,
    )
    follow_repo, follow_env = fresh_repo(work, "follow")
    hourly_repo, hourly_env = fresh_repo(work, "hourly")
    freq_repo, freq_env = fresh_repo(work, "fulls")
    hourly_empty = size(hourly_repo)
    first_hourly, first_doc = full_backup(srv, hourly_env)
    hourly_base = size(hourly_repo)

    follow_empty = size(follow_repo)
    follower = Follower(
        srv,
        follow_env,
        work / "follow-churn.log",
        "--interval",
        f"{args.churn_interval:g}s",
        "--full-ratio",
        f"{args.full_ratio:g}",
    )
    follower.wait_for(lambda s: any(x.kind == "full snapshot" for x in s), 120, "full snapshot")
    follow_base = size(follow_repo)
    base_files = files(follow_repo)
    etcd_cpu0 = proc_cpu(srv.proc.pid) if srv.proc else 0.0
    load0 = os.getloadavg()
    periodic = Periodic(srv, freq_env, freq_repo, args.full_period)
    stop = threading.Event()
    thread = threading.Thread(target=periodic.loop, args=(stop,), daemon=True)
    thread.start()
    t_start_ns = time.time_ns()
    stats = writer.run(seconds)
    t_end_ns = time.time_ns()
    stop.set()
    thread.join()
    load1 = os.getloadavg()
    last = stats.last_rev
    follower.wait_for(
        lambda s: any(x.kind == "segment" and x.upto >= last for x in s), args.churn_interval + 120, "last segment"
    )
    stored = follower.stop()
    etcd_cpu = (proc_cpu(srv.proc.pid) if srv.proc else 0.0) - etcd_cpu0
    follow_end = size(follow_repo)
    follow_files = files(follow_repo)
    with srv.client() as client:
        st1 = client.status()
    last_hourly, last_doc = full_backup(srv, hourly_env)
    hourly_end = size(hourly_repo)
    _, alone_env = fresh_repo(work, "alone")
    _, alone_doc = full_backup(srv, alone_env)  # the database at the end, without dedup
    alone = int(alone_doc["stats"]["bytes_stored"])

    # what follow stored, from kubekeep's own records
    snaps = kk_json(follow_env, "snapshots", "--all")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for s in snaps:
        by_kind.setdefault(s["source"]["kind"], []).append(s)
    seg_snaps = by_kind.get("etcd-delta", [])
    full_snaps = by_kind.get("etcd", [])
    seg_stored = sum(int(s["stats"].get("bytes_stored", 0)) for s in seg_snaps)
    full_stored = [int(s["stats"].get("bytes_stored", 0)) for s in sorted(full_snaps, key=lambda s: s["time"])]
    segs = [s for s in stored if s.kind == "segment"]
    fulls = [s for s in stored if s.kind == "full snapshot"]
    seg_encoded = sum(s.size for s in segs)
    tl = kk_json(follow_env, "etcd", "timeline")
    status = kk_json(follow_env, "etcd", "status")

    # every write is in exactly one stored segment
    events = sum(s.events for s in segs)
    written = stats.puts + stats.deletes
    missing = sum(1 for rev, _ in stats.writes if covering(stored, rev) is None)
    delays = [(seg.at_ns - at_ns) / 1e9 for rev, at_ns in stats.writes if (seg := covering(stored, rev)) is not None]

    freq_added = periodic.sizes[-1] - periodic.sizes[0]
    freq_n = len(periodic.sizes) - 1
    freq_cpu = sum(r.cpu for r in periodic.runs[1:])
    freq_s = statistics.median(r.seconds for r in periodic.runs[1:]) if freq_n else 0.0
    per_full = [b - a for a, b in zip(periodic.sizes, periodic.sizes[1:], strict=False)]
    follow_added = follow_end - follow_base
    hourly_added = hourly_end - hourly_base
    db = st1.db_size
    lines = [
        f"churn: {args.minutes:g} minutes (x{hour:.1f} = one hour), {stats.puts} puts ({stats.bytes_put / 1e6:.2f} MB "
        f"of values) + {stats.deletes} deletes = {written / seconds:.2f} writes/s; {stats.compactions} compaction(s); "
        f"load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end",
        "  " + "; ".join(f"{k} {v}" for k, v in sorted(stats.by_kind.items(), key=lambda kv: -kv[1])),
        f"  etcd: revision {st0.revision} -> {st1.revision}, db {st0.db_size / 1e6:.1f} -> {db / 1e6:.1f} MB "
        f"(in use {st1.db_size_in_use / 1e6:.1f} MB); etcd CPU meanwhile {etcd_cpu:.1f} s (serving all three)",
        "",
        f"follow (--interval {args.churn_interval:g}s, --full-ratio {args.full_ratio:g}): {len(segs)} segments, "
        f"{events} events ({written} written, {missing} in no segment), {len(fulls)} full snapshot(s) "
        f"(revisions {', '.join(str(f.upto) for f in fulls)}); CPU {follower.cpu:.1f} s "
        f"({follower.cpu / seconds * 100:.1f} % of a core), peak RSS {follower.peak_rss_mb:.0f} MB",
        f"  RPO under churn: median {statistics.median(delays):.2f} s, p95 {pct(delays, 0.95):.2f} s, "
        f"max {max(delays):.2f} s",
        f"  repository files: {mb(follow_empty)} empty, {mb(follow_base)} after the first full snapshot, {mb(follow_end)} at "
        f"the end: +{mb(follow_added)} in {args.minutes:g} min = {follow_added * hour / 1e6:.1f} MB/hour",
        f"  kubekeep's bytes_stored: segments {mb(seg_stored)} ({seg_stored / max(1, len(seg_snaps)) / 1e3:.1f} kB a "
        f"segment, {seg_stored * hour / 1e6:.1f} MB/hour), full snapshots "
        + ", ".join(mb(b) for b in full_stored)
        + f"; segment files {mb(seg_encoded)} before compression ({seg_encoded / max(1, seg_stored):.1f}:1 stored)",
        f"  segments {seg_encoded / seconds / 1e3:.1f} kB/s before compression: --full-ratio {args.full_ratio:g} of the "
        f"{fulls[0].size / 1e6:.1f} MB database takes a new full every "
        f"{args.full_ratio * fulls[0].size / max(1.0, seg_encoded / seconds) / 60:.0f} min at this rate; follow CPU "
        f"{follower.cpu / max(1, len(segs)) * 1e3:.0f} ms a segment (all of it, fulls included)",
        f"  timeline: {len(tl[0]['segments']) if tl else 0} segments in {len(tl[0]['runs']) if tl else 0} run(s); "
        f"recovery window {json.dumps(status[0]['earliest']) if status else '-'} .. "
        f"{json.dumps(status[0]['latest']) if status else '-'}",
        f"  at the end: du -sb {mb(du(follow_repo))} (the rest is directories); files {follow_files}; "
        f"{(follow_files['data'] - base_files['data']) / max(1, len(segs)):.1f} packs a segment",
        "",
        f"full snapshots every {args.full_period:g} s (`kubekeep backup etcd://`): {freq_n} after the first; "
        f"+{mb(freq_added)} = {freq_added * hour / 1e6:.1f} MB/hour; per snapshot median "
        f"{statistics.median(per_full) / 1e3:.0f} kB (max {max(per_full) / 1e3:.0f} kB); median {freq_s:.2f} s wall, "
        f"CPU {freq_cpu:.1f} s ({freq_cpu / seconds * 100:.1f} % of a core)"
        if freq_n
        else f"full snapshots every {args.full_period:g} s: none after the first",
        f"hourly full snapshots: first {mb(hourly_base - hourly_empty)} stored (bytes_stored "
        f"{mb(first_doc['stats']['bytes_stored'])}, {first_hourly.seconds:.2f} s, {first_hourly.cpu:.1f} CPU s); "
        f"the one after {args.minutes:g} min of churn +{mb(hourly_added)} (bytes_stored "
        f"{mb(last_doc['stats']['bytes_stored'])}, {last_hourly.seconds:.2f} s, {last_hourly.cpu:.1f} CPU s)",
        f"  without dedup a full snapshot stores the db: {st0.db_size / 1e6:.1f} MB raw at the start "
        f"({first_doc['stats']['bytes_stored'] / 1e6:.2f} MB compressed), {db / 1e6:.1f} MB at the end "
        f"({alone / 1e6:.2f} MB compressed: the end's database backed up into a new repository)",
        "",
        "per hour (extrapolated linearly from the measured period, except where said):",
        f"  follow, deltas only ({len(segs) * hour:.0f} segments)      {seg_stored * hour / 1e6:8.2f} MB",
        f"  follow, everything it stored after its first full  {follow_added * hour / 1e6:8.2f} MB (files)",
        f"  hourly full snapshot, dedup (>= the {args.minutes:g}-min figure) {hourly_added / 1e6:8.2f} MB "
        f"(<= {hourly_added * hour / 1e6:.2f} MB if every minute touched new pages)",
        f"  hourly full snapshot, no dedup (compressed)       {alone / 1e6:8.2f} MB (the end's database)",
        f"  a full every {args.minutes:g} min, dedup                  {hourly_added * hour / 1e6:8.2f} MB",
        f"  a full every {args.full_period:g} s, dedup (same RPO as follow) {freq_added * hour / 1e6:8.2f} MB",
        f"  ratios: follow deltas / hourly full (dedup) {seg_stored * hour / max(1, hourly_added):.2f}x; follow "
        f"everything / fulls every {args.full_period:g} s {follow_added / max(1, freq_added):.2f}x",
    ]
    mid_ns = (t_start_ns + t_end_ns) // 2
    if not args.no_restore:
        lines += ["", *restore_point(srv, follow_env, work, mid_ns, stats)]
    return lines


def restore_point(srv: EtcdServer, env: dict[str, str], work: Path, at_ns: int, stats: Churn) -> list[str]:
    """``kubekeep etcd restore-dir --at`` the middle of the churn; checks the revision it reached."""
    target = work / "restored"
    shutil.rmtree(target, ignore_errors=True)
    at = dt.datetime.fromtimestamp(at_ns / 1e9, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert srv.tools.etcdutl is not None
    r = run(
        [
            *KUBEKEEP,
            "--json",
            "etcd",
            "restore-dir",
            "--at",
            at,
            "--data-dir",
            str(target),
            "--name",
            "restored",
            "--etcdutl",
            str(srv.tools.etcdutl),
            "--etcd",
            str(srv.tools.etcd),
        ],
        env=env,
    )
    report = json.loads(r.stdout)
    expected = max((rev for rev, t in stats.writes if t <= at_ns), default=0)
    rep = report["replayed"]
    return [
        f"restore-dir --at {at} (the middle of the churn): {r.seconds:.2f} s wall, {r.cpu:.1f} CPU s, peak RSS "
        f"{r.peak_rss_mb:.0f} MB; full snapshot at revision {report['full_snapshot']['revision']}, then "
        f"{rep['events']} events of {rep['revisions']} revisions from {len(report['segments'])} segments replayed in "
        f"{rep['seconds']} s; reached revision {report['target']['revision']} (the last write acknowledged by then: "
        f"{expected})"
    ]


def many_segments(srv: EtcdServer, args: argparse.Namespace, work: Path) -> list[str]:
    """A follower storing a segment as fast as it can (``--interval 0.05s``, a writer at 40 puts/s)
    until ``--many`` segments are in the repository; then what reading a repository that holds
    them costs: ``etcd status``, ``etcd timeline``, ``snapshots`` and ``restore-dir --at`` the end
    (every segment replayed), against ``snapshots`` of a repository with one snapshot."""
    _, one_env = fresh_repo(work, "one")
    full_backup(srv, one_env)
    fixed = statistics.median(run([*KUBEKEEP, "snapshots"], env=one_env).seconds for _ in range(3))
    repo, env = fresh_repo(work, "many")
    follower = Follower(srv, env, work / "follow-many.log", "--interval", "0.05s")
    follower.wait_for(lambda s: any(x.kind == "full snapshot" for x in s), 120, "full snapshot")
    stop = threading.Event()
    last = [0]

    def write() -> None:
        with srv.client(timeout=30) as c:
            kv = rpc_pb2_grpc.KVStub(c._chan())
            i = 0
            while not stop.is_set():
                resp = kv.Put(rpc_pb2.PutRequest(key=b"/registry/leases/many/l-%03d" % (i % 50), value=b"x" * 200))
                last[0] = resp.header.revision
                i += 1
                time.sleep(0.025)

    thread = threading.Thread(target=write, daemon=True)
    t0 = time.monotonic()
    thread.start()
    follower.wait_for(lambda s: sum(x.kind == "segment" for x in s) >= args.many, 3600, f"{args.many} segments")
    stop.set()
    thread.join()
    follower.wait_for(lambda s: any(x.kind == "segment" and x.upto >= last[0] for x in s), 60, "last segment")
    stored = follower.stop()
    took = time.monotonic() - t0
    segs = [s for s in stored if s.kind == "segment"]
    # the store time of segments as the repository grows: the gap between consecutive segments
    gaps = [(b.at_ns - a.at_ns) / 1e9 for a, b in zip(segs, segs[1:], strict=False)]
    tenth = max(1, len(gaps) // 10)
    counts = files(repo)
    times: dict[str, Run] = {}
    for label, cmd in (
        ("snapshots", ["snapshots"]),
        ("etcd status", ["etcd", "status"]),
        ("etcd timeline", ["etcd", "timeline"]),
    ):
        times[label] = run([*KUBEKEEP, *cmd], env=env)
    target = work / "restored-many"
    shutil.rmtree(target, ignore_errors=True)
    assert srv.tools.etcdutl is not None
    restore = run(
        [*KUBEKEEP, "--json", "etcd", "restore-dir", "--revision", str(segs[-1].upto), "--data-dir", str(target)]
        + ["--name", "restored", "--etcdutl", str(srv.tools.etcdutl), "--etcd", str(srv.tools.etcd)],
        env=env,
    )
    rep = json.loads(restore.stdout)
    return [
        f"many segments: {len(segs)} segments stored in {took:.0f} s by follow --interval 0.05s "
        f"(a segment every {statistics.median(gaps):.3f} s, median; of the first tenth "
        f"{statistics.median(gaps[:tenth]):.3f} s, of the last tenth {statistics.median(gaps[-tenth:]):.3f} s); "
        f"follow CPU {follower.cpu:.1f} s, peak RSS {follower.peak_rss_mb:.0f} MB; repository {size(repo) / 1e6:.1f} MB, "
        f"files: {counts['index']} index, {counts['snapshots']} snapshot, {counts['data']} packs",
        "  with them, each command: "
        + ", ".join(f"{k} {r.seconds:.2f} s ({r.peak_rss_mb:.0f} MB)" for k, r in times.items())
        + f"; `snapshots` of a repository with one snapshot {fixed:.2f} s",
        f"  restore-dir --revision {segs[-1].upto} (every segment replayed): {restore.seconds:.2f} s wall, "
        f"{restore.cpu:.1f} CPU s, peak RSS {restore.peak_rss_mb:.0f} MB; {rep['replayed']['events']} events from "
        f"{len(rep['segments'])} segments replayed in {rep['replayed']['seconds']} s",
    ]


def float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--intervals", type=float_list, default=[1.0, 5.0, 10.0], help="follow --interval values, s")
    ap.add_argument("--rpo-seconds", type=float, default=60.0, help="writing time per interval setting")
    ap.add_argument("--rate", type=float, default=10.0, help="puts/s of the RPO writer")
    ap.add_argument("--minutes", type=float, default=10.0, help="churn period (extrapolated to an hour)")
    ap.add_argument("--churn-interval", type=float, default=10.0, help="follow --interval during the churn")
    ap.add_argument("--full-period", type=float, default=10.0, help="seconds between frequent full snapshots")
    ap.add_argument("--full-ratio", type=float, default=1.0, help="follow --full-ratio during the churn")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the churn cluster's object counts")
    ap.add_argument("--many", type=int, default=0, help="also: N segments in one repository, and what reading it costs")
    ap.add_argument("--no-rpo", action="store_true")
    ap.add_argument("--no-churn", action="store_true")
    ap.add_argument("--no-restore", action="store_true", help="skip restore-dir --at after the churn")
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a new one in /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="kubekeep-bench-pitr-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    tools = find_tools()
    assert tools.etcdctl is not None and tools.etcdutl is not None, "etcdctl and etcdutl must sit next to etcd"
    srv = EtcdServer(tools, make_pki(work / "pki"), work / "etcd-data")
    load = os.getloadavg()
    print(
        f"etcd {'.'.join(map(str, tools.version))} ({tools.origin}), TLS on {srv.endpoint}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, work dir {work}",
        flush=True,
    )
    srv.start()
    lines: list[str] = []
    try:
        if not args.no_rpo:
            lines += rpo(srv, args, work)
        if not args.no_churn:
            lines += ["", *churn(srv, args, work)]
        if args.many:
            lines += ["", *many_segments(srv, args, work)]
    finally:
        srv.stop()
    load = os.getloadavg()
    lines.append(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("\n".join(lines))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
