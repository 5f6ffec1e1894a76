#!/usr/bin/env python3
"""etcd backup benchmark: `kubekeep backup etcd://` against `etcdctl snapshot save`, same etcd, same run.

    python bench/bench_etcd.py [--keys 100000] [--value-size 800] [--reps 3] [--work DIR] [--keep]

Starts a standalone etcd (testenv's pinned binary) with TLS and client-certificate auth on
loopback, loads KEYS keys of about VALUE_SIZE bytes, then, alternating, REPS times each:
`etcdctl snapshot save FILE` and `kubekeep backup etcd://...` into a fresh repository
(whole-process wall time and peak RSS), and REPS kubekeep backups into the same repository
(unchanged database). Then it rewrites 1 % of the keys, backs up once more and reports what
that snapshot added to the repository, how many of its chunks it shares with the previous
snapshot, and how the changed bbolt pages are spread over the file (which decides how much
content-defined chunking can share). Prints a table and the ratio to the 1.3x target.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubekeep.etcd._proto import rpc_pb2, rpc_pb2_grpc
from tests.etcd.etcdserver import EtcdServer, find_tools, make_pki

PASSWORD = "bench-password"
TARGET = 1.3
KUBEKEEP = [sys.executable, "-m", "kubekeep.cli.main"]


@dataclass
class Run:
    seconds: float
    cpu: float  # user + system seconds of the command
    peak_rss_mb: float
    stdout: str
    server_cpu: float = 0.0  # etcd's user + system seconds meanwhile


def run(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Run a command; wall time and peak RSS (wait4) of the process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err.read().decode()[-2000:]}")
        return Run(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read().decode())


def value_for(i: int, generation: int, size: int, rnd: random.Random) -> bytes:
    """A Kubernetes-ish value: some structure, a random (incompressible) payload."""
    head = b'{"kind":"ConfigMap","metadata":{"name":"cm-%07d","generation":%d},"data":"' % (i, generation)
    body = rnd.randbytes(max(0, size - len(head) - 2))
    return head + body.hex().encode()[: max(0, size - len(head) - 2)] + b'"}'


def load(srv: EtcdServer, keys: list[int], size: int, generation: int, seed: int) -> float:
    """Put the keys, 400 requests in flight (etcd batches concurrent proposals)."""
    rnd = random.Random(seed)
    t0 = time.perf_counter()
    with srv.client(timeout=120) as c:
        kv = rpc_pb2_grpc.KVStub(c._chan())
        for start in range(0, len(keys), 400):
            futures = [
                kv.Put.future(
                    rpc_pb2.PutRequest(key=b"/registry/bench/%07d" % i, value=value_for(i, generation, size, rnd)),
                    timeout=120,
                )
                for i in keys[start : start + 400]
            ]
            for f in futures:
                f.result()
    return time.perf_counter() - t0


def etcdctl_save(srv: EtcdServer, target: Path) -> Run:
    assert srv.tools.etcdctl is not None
    target.unlink(missing_ok=True)
    return run(
        [
            str(srv.tools.etcdctl),
            "--endpoints",
            srv.client_url,
            "--cacert",
            str(srv.pki.ca),
            "--cert",
            str(srv.pki.client_cert),
            "--key",
            str(srv.pki.client_key),
            "snapshot",
            "save",
            str(target),
        ],
        env={"ETCDCTL_API": "3"},
    )


def kk_env(repo: Path, cache: Path) -> dict[str, str]:
    return {"KUBEKEEP_REPOSITORY": str(repo), "KUBEKEEP_PASSWORD": PASSWORD, "KUBEKEEP_CACHE_DIR": str(cache)}


def kk_backup(srv: EtcdServer, env: dict[str, str]) -> tuple[Run, dict[str, Any]]:
    r = run(
        [
            *KUBEKEEP,
            "--json",
            "backup",
            f"etcd://{srv.endpoint}",
            "--cacert",
            str(srv.pki.ca),
            "--cert",
            str(srv.pki.client_cert),
            "--key",
            str(srv.pki.client_key),
        ],
        env=env,
    )
    return r, json.loads(r.stdout)


def changed_pages(a: Path, b: Path, page: int = 4096) -> tuple[int, int, dict[int, int]]:
    """Pages that differ between two snapshot files, and how many aligned regions of several
    sizes they touch (what fixed-size chunks of that size would have to store anew). Reads
    both files page by page (a large parent process would inflate its children's peak RSS)."""
    n = (max(a.stat().st_size, b.stat().st_size) - 32) // page
    diff: list[int] = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for i in range(n):
            if fa.read(page) != fb.read(page):
                diff.append(i)
    regions = {size: len({i * page // size for i in diff}) for size in (64 << 10, 256 << 10, 1 << 20)}
    return len(diff), n, regions


def chunk_sharing(repo: Path, cache: Path, first: str, second: str) -> tuple[int, int, int]:
    """(chunks of the second snapshot's file, of those also in the first, chunks in the first)."""
    from kubekeep import api

    r = api.open_repository(api.RepositoryOptions(location=str(repo), password=PASSWORD, cache_dir=cache))
    try:
        a = r.resolve(r.find_snapshot(first), "etcd/snapshot.db").content
        b = r.resolve(r.find_snapshot(second), "etcd/snapshot.db").content
    finally:
        r.close()
    return len(b), len(set(b) & set(a)), len(a)


def proc_cpu(pid: int) -> float:
    """User + system seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def on_server(srv: EtcdServer, fn: Callable[[], Run]) -> Run:
    """Run ``fn`` and add the etcd server's CPU time meanwhile to its result."""
    assert srv.proc is not None
    before = proc_cpu(srv.proc.pid)
    r = fn()
    r.server_cpu = proc_cpu(srv.proc.pid) - before
    return r


def on_server_json(srv: EtcdServer, fn: Callable[[], tuple[Run, dict[str, Any]]]) -> tuple[Run, dict[str, Any]]:
    """:func:`on_server` for a kubekeep backup that also returns its JSON report."""
    out: list[dict[str, Any]] = []

    def call() -> Run:
        r, doc = fn()
        out.append(doc)
        return r

    return on_server(srv, call), out[0]


def fresh_repo(work: Path, name: str) -> dict[str, str]:
    for d in (work / f"repo-{name}", work / f"cache-{name}"):
        shutil.rmtree(d, ignore_errors=True)
    env = kk_env(work / f"repo-{name}", work / f"cache-{name}")
    run([*KUBEKEEP, "init"], env=env)
    return env


def increment(
    label: str, repo_env: dict[str, str], prev: dict[str, Any], cur: dict[str, Any], prev_file: Path, cur_file: Path
) -> list[str]:
    st = cur["stats"]
    total, shared, _ = chunk_sharing(
        Path(repo_env["KUBEKEEP_REPOSITORY"]), Path(repo_env["KUBEKEEP_CACHE_DIR"]), str(prev["id"]), str(cur["id"])
    )
    pages, n_pages, regions = changed_pages(prev_file, cur_file)
    region_text = ", ".join(f"{size >> 10} KiB: {k} of {-(-n_pages * 4096 // size)}" for size, k in regions.items())
    return [
        f"{label}: added {st['bytes_stored'] / 1e6:.2f} MB to the repository ({st['bytes_new'] / 1e6:.2f} MB of new "
        f"chunk data before compression = {st['bytes_new'] / st['bytes_total']:.1%} of the "
        f"{st['bytes_total'] / 1e6:.1f} MB file); chunks shared with the previous snapshot: {shared} of {total} "
        f"({shared / total:.0%})",
        f"    bbolt pages changed: {pages} of {n_pages} ({pages / n_pages:.1%}); aligned regions they touch: "
        f"{region_text}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-size", type=int, default=800)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--change", type=float, default=0.01, help="fraction of keys rewritten before the last backup")
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a new one in /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="kubekeep-bench-etcd-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    tools = find_tools()
    assert tools.etcdctl is not None, "etcdctl must sit next to etcd"
    srv = EtcdServer(tools, make_pki(work / "pki"), work / "etcd-data")
    print(
        f"etcd {'.'.join(map(str, tools.version))} ({tools.origin}), TLS on {srv.endpoint}, "
        f"{os.cpu_count()} CPUs, work dir {work}"
    )
    srv.start()
    rows: dict[str, list[Run]] = {
        k: []
        for k in (
            "etcdctl snapshot save FILE",
            "kubekeep backup etcd://, new repo",
            "kubekeep backup etcd://, same repo",
            "etcdctl save + kubekeep backup FILE",
            "kubekeep snapshots (fixed cost)",
        )
    }
    report: list[str] = []
    try:
        secs = load(srv, list(range(args.keys)), args.value_size, 0, seed=1)
        with srv.client() as c:
            st = c.status()
        print(
            f"loaded {args.keys} keys of ~{args.value_size} B in {secs:.1f} s: revision {st.revision}, "
            f"db {st.db_size / 1e6:.1f} MB"
        )
        time.sleep(2)

        snap_file = work / "etcdctl.db"
        same = fresh_repo(work, "main")
        for _ in range(args.reps):  # alternate, so drift hits every variant alike
            rows["etcdctl snapshot save FILE"].append(on_server(srv, lambda: etcdctl_save(srv, snap_file)))
            env = fresh_repo(work, "fresh")
            r, first_json = on_server_json(srv, lambda env=env: kk_backup(srv, env))  # type: ignore[misc]
            rows["kubekeep backup etcd://, new repo"].append(r)
            rows["kubekeep backup etcd://, same repo"].append(on_server(srv, lambda: kk_backup(srv, same)[0]))
            env = fresh_repo(work, "twostep")
            save = on_server(srv, lambda: etcdctl_save(srv, snap_file))
            file_backup = run([*KUBEKEEP, "backup", "-q", str(snap_file)], env=env)
            rows["etcdctl save + kubekeep backup FILE"].append(
                Run(
                    save.seconds + file_backup.seconds,
                    save.cpu + file_backup.cpu,
                    max(save.peak_rss_mb, file_backup.peak_rss_mb),
                    "",
                    save.server_cpu,
                )
            )
            rows["kubekeep snapshots (fixed cost)"].append(run([*KUBEKEEP, "snapshots"], env=same))

        # consecutive snapshots: as loaded, 1 % of the keys rewritten, then compacted (as the
        # API server compacts every 5 minutes)
        base_file, changed_file, compacted_file = work / "s1.db", work / "s2.db", work / "s3.db"
        _, base = kk_backup(srv, same)
        etcdctl_save(srv, base_file)
        with srv.client() as c:
            rev_before = c.status().revision
        n_change = max(1, int(args.keys * args.change))
        load(srv, random.Random(7).sample(range(args.keys), n_change), args.value_size, 1, seed=2)
        _, changed = kk_backup(srv, same)
        etcdctl_save(srv, changed_file)
        srv.etcdctl("compact", "--physical", str(rev_before + n_change // 2))
        _, compacted = kk_backup(srv, same)
        etcdctl_save(srv, compacted_file)
        report += increment(
            f"{n_change} keys ({args.change:.0%}) rewritten", same, base, changed, base_file, changed_file
        )
        report += increment(
            f"then compacted (drops {n_change // 2} superseded revisions)",
            same,
            changed,
            compacted,
            changed_file,
            compacted_file,
        )
        status = run([*KUBEKEEP, "etcd", "status", "latest"], env=same)
        report.append(
            f"kubekeep etcd status (reads the stored file in place): {status.seconds:.2f} s, "
            f"peak RSS {status.peak_rss_mb:.0f} MB"
        )
    finally:
        srv.stop()

    db_size = int(base["stats"]["bytes_total"])
    med = {k: statistics.median(r.seconds for r in v) for k, v in rows.items()}
    print(f"\nsnapshot file {db_size / 1e6:.1f} MB; medians of {args.reps} alternating runs (whole processes)\n")
    print(f"{'':38}{'median s':>9}{'MB/s':>7}{'client CPU s':>14}{'etcd CPU s':>12}{'peak RSS MB':>13}   runs")
    for label, runs in rows.items():
        mbps = f"{db_size / 1e6 / med[label]:.0f}" if "fixed" not in label else "-"
        print(
            f"{label:38}{med[label]:9.2f}{mbps:>7}{statistics.median(r.cpu for r in runs):14.2f}"
            f"{statistics.median(r.server_cpu for r in runs):12.2f}{max(r.peak_rss_mb for r in runs):13.0f}   "
            + " ".join(f"{r.seconds:.2f}" for r in runs)
        )
    save = med["etcdctl snapshot save FILE"]
    print()
    for label in ("kubekeep backup etcd://, new repo", "kubekeep backup etcd://, same repo"):
        ratio = med[label] / save
        print(
            f"{label} / etcdctl snapshot save: {ratio:.2f}x (target <= {TARGET}x: "
            f"{'met' if ratio <= TARGET else 'MISSED'})"
        )
    print(
        f"kubekeep backup etcd://, new repo / (etcdctl save + kubekeep backup FILE): "
        f"{med['kubekeep backup etcd://, new repo'] / med['etcdctl save + kubekeep backup FILE']:.2f}x"
    )
    print(
        f"a new repository stores {first_json['stats']['bytes_stored'] / 1e6:.1f} MB for the "
        f"{db_size / 1e6:.1f} MB file (zstd); a re-backup of the unchanged database stores "
        f"{base['stats']['bytes_stored'] / 1e6:.2f} MB\n"
    )
    print("\n".join(report))
    print("\n" + status.stdout.strip())
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
