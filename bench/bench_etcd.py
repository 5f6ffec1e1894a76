#!/usr/bin/env python3
"""etcd backup benchmark: `kubekeep backup etcd://` against `etcdctl snapshot save`, same etcd, same run.

    python bench/bench_etcd.py [--keys 100000] [--value-size 800] [--reps 3] [--change 0.01]
        [--groups 8,16,32,64] [--rounds 4] [--hours 2] [--work DIR] [--keep]

Starts a standalone etcd (testenv's pinned binary) with TLS and client-certificate auth on
loopback, loads KEYS keys of about VALUE_SIZE bytes, then, alternating, REPS times each:
`etcdctl snapshot save FILE` and `kubekeep backup etcd://...` into a fresh repository
(whole-process wall time and peak RSS), and REPS kubekeep backups into the same repository
(unchanged database). Then it rewrites 1 % of the keys, backs up once more and reports what
that snapshot added to the repository, how many of its chunks it shares with the previous
snapshot, and how the changed bbolt pages are spread over the file (which decides how much
content-defined chunking can share). Prints a table and the ratio to the 1.3x target.

Then the page-group sizes (issue #16): one warm-up "hour" and ROUNDS-round "hours" of a busy
API server (each round rewrites CHANGE / ROUNDS of the keys, then compacts to the revision the
previous round ended at, as kube-apiserver compacts every 5 minutes to the revision of 5
minutes before), a snapshot after each hour into one repository per page-group size
(--groups, KiB), one with content-defined chunks (`kubekeep backup FILE` of etcdctl's file)
and one of restic 0.19 (`etcdctl snapshot save` + `restic backup FILE`, what a user scripts
today). Reports what each hourly snapshot adds to each repository (its size on disk), the
index and tree overhead, the chunk counts, and the time.
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

from kubekeep.engine.format import PAGE_CHUNK_TARGET
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


#: ``--value-size 0``: a Kubernetes-like mix of value sizes, chosen by the key's number (percent,
#: bytes): leases and events, small objects, pods, large ConfigMaps and custom resources. Mean
#: ~2.2 KB; a tenth of the values span several 4 KiB pages (bbolt overflow pages).
SIZE_MIX = ((40, 300), (30, 900), (20, 3000), (10, 12000))


def size_for(i: int, size: int) -> int:
    if size:
        return size
    slot = i * 2654435761 % 100
    for share, value_size in SIZE_MIX:
        if slot < share:
            return value_size
        slot -= share
    raise AssertionError("SIZE_MIX shares add up to 100")


def load(srv: EtcdServer, keys: list[int], size: int, generation: int, seed: int) -> float:
    """Put the keys, 400 requests in flight (etcd batches concurrent proposals)."""
    rnd = random.Random(seed)
    t0 = time.perf_counter()
    with srv.client(timeout=120) as c:
        kv = rpc_pb2_grpc.KVStub(c._chan())
        for start in range(0, len(keys), 400):
            futures = [
                kv.Put.future(
                    rpc_pb2.PutRequest(
                        key=b"/registry/bench/%07d" % i, value=value_for(i, generation, size_for(i, size), rnd)
                    ),
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


def kk_backup(srv: EtcdServer, env: dict[str, str], cmd: list[str] = KUBEKEEP) -> tuple[Run, dict[str, Any]]:
    r = run(
        [
            *cmd,
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
    regions = {size: len({i * page // size for i in diff}) for size in (8 << 10, 16 << 10, 64 << 10, 1 << 20)}
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


def kk_group_cmd(group_kib: int) -> list[str]:
    """The kubekeep CLI with paged content cut into groups of ``group_kib`` KiB (the release's
    ``PAGE_CHUNK_TARGET`` set before anything reads it; whole process, like every other run)."""
    code = (
        "import sys, kubekeep.engine.format as f; f.PAGE_CHUNK_TARGET = int(sys.argv.pop(1)) * 1024; "
        "from kubekeep.cli.main import main; main(sys.argv[1:])"
    )
    return [sys.executable, "-c", code, str(group_kib)]


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass
class Store:
    """One repository of the group-size comparison and what each snapshot added to it."""

    label: str
    repo: Path
    added: list[int]  # bytes on disk added by each hourly snapshot (the first: the base)
    index_added: list[int]
    seconds: list[float]
    cpu: list[float]  # user + system seconds of the backup process(es)
    chunks: list[int]
    tree_raw: list[int]
    new_chunks: list[int]


def restic_env(work: Path) -> dict[str, str]:
    return {
        "RESTIC_PASSWORD": PASSWORD,
        "RESTIC_REPOSITORY": str(work / "repo-restic"),
        "RESTIC_CACHE_DIR": str(work / "cache-restic"),
    }


def busy_hour(srv: EtcdServer, args: argparse.Namespace, hour: int, last_rev: int) -> tuple[int, int]:
    """One hour of a busy API server: ROUNDS rounds, each rewriting CHANGE / ROUNDS of the keys
    at random, then compacting (physically) to the revision the previous round ended at.
    Returns (keys rewritten, the revision this hour ended at)."""
    per_round = max(1, int(args.keys * args.change) // args.rounds)
    rnd = random.Random(1000 + hour)
    for r in range(args.rounds):
        load(
            srv,
            rnd.sample(range(args.keys), per_round),
            args.value_size,
            hour * args.rounds + r + 1,
            seed=hour * 97 + r,
        )
        srv.etcdctl("compact", "--physical", str(last_rev))
        with srv.client() as c:
            last_rev = c.status().revision
    return per_round * args.rounds, last_rev


def group_sizes(srv: EtcdServer, args: argparse.Namespace, work: Path) -> list[str]:
    """Page-group sizes, content-defined chunks and restic 0.19 over hourly snapshots of a busy
    etcd (module docstring); returns the report lines."""
    sys.path.insert(0, str(ROOT))
    from testenv.build import ensure_restic

    restic = str(ensure_restic())
    rversion = run([restic, "version"]).stdout.split()[1]
    renv = restic_env(work)
    shutil.rmtree(work / "repo-restic", ignore_errors=True)
    run([restic, "init", "-q"], env=renv)
    kk: dict[int | None, Store] = {}
    envs: dict[int | None, dict[str, str]] = {}
    for g in [*args.groups, None]:
        name = f"g{g}" if g is not None else "cdc"
        envs[g] = fresh_repo(work, name)
        label = f"kubekeep, {g} KiB page groups" if g is not None else "kubekeep backup FILE (content-defined)"
        kk[g] = Store(label, work / f"repo-{name}", [], [], [], [], [], [], [])
    rs = Store(f"etcdctl save + restic {rversion} backup FILE", work / "repo-restic", [], [], [], [], [], [], [])
    save_s: list[float] = []
    prev_ids: dict[str, list[bytes]] = {}

    with srv.client() as c:
        last_rev = c.status().revision
    _, last_rev = busy_hour(srv, args, 0, last_rev)  # warm-up: a freelist and history, as a running cluster has
    load_start = os.getloadavg()[0]
    snap_file = work / "hourly.db"
    changed = 0
    for hour in range(args.hours + 1):
        if hour:
            changed, last_rev = busy_hour(srv, args, hour, last_rev)
        for g, store in kk.items():
            if g is None:
                continue  # backed up from etcdctl's file below
            before = dir_size(store.repo), dir_size(store.repo / "index")
            r, doc = kk_backup(srv, envs[g], kk_group_cmd(g))
            note(store, before, r, doc, envs[g], "etcd/snapshot.db", prev_ids)
        save = etcdctl_save(srv, snap_file)
        save_s.append(save.seconds)
        before, index_before = dir_size(rs.repo), dir_size(rs.repo / "index")
        r = run([restic, "backup", "-q", "--json", str(snap_file)], env=renv)
        rs.added.append(dir_size(rs.repo) - before)
        rs.index_added.append(dir_size(rs.repo / "index") - index_before)
        rs.seconds.append(r.seconds)
        rs.cpu.append(r.cpu + save.cpu)
        summary = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        rs.new_chunks.append(int(summary[-1].get("data_blobs", 0)) if summary else 0)
        store = kk[None]
        before = dir_size(store.repo), dir_size(store.repo / "index")
        r = run([*KUBEKEEP, "--json", "backup", str(snap_file)], env=envs[None])
        note(store, before, r, json.loads(r.stdout), envs[None], snap_file.name, prev_ids)
    load_end = os.getloadavg()[0]

    db = snap_file.stat().st_size
    hours = range(1, args.hours + 1)
    lines = [
        f"hourly snapshots of a busy etcd: {args.rounds} rounds an hour, each rewriting "
        f"{changed // args.rounds} random keys then compacting ({changed} keys, {changed / args.keys:.1%}, "
        f"an hour), after a warm-up hour; snapshot file {db / 1e6:.1f} MB; load average {load_start:.1f} at the "
        f"start, {load_end:.1f} at the end; {args.hours} hourly snapshots after the base one",
        "",
        f"{'':44}{'chunks':>8}{'base MB':>9}{'added MB/hour':>15}{'% of db':>9}{'range MB':>12}"
        f"{'index kB':>10}{'tree kB':>9}{'new chunks':>12}{'backup s':>10}{'CPU s':>7}{'base CPU s':>12}",
    ]
    for store in [*kk.values(), rs]:
        added = [store.added[h] for h in hours]
        chunks = f"{store.chunks[-1]}" if store.chunks else "-"
        tree = f"{store.tree_raw[-1] / 1e3:.0f}" if store.tree_raw else "-"
        mean = statistics.mean(added)
        lines.append(
            f"{store.label:44}{chunks:>8}{store.added[0] / 1e6:9.1f}{mean / 1e6:15.2f}{mean / db:9.1%}"
            f"{f'{min(added) / 1e6:.2f}-{max(added) / 1e6:.2f}':>12}"
            f"{statistics.mean(store.index_added[h] for h in hours) / 1e3:10.1f}{tree:>9}"
            f"{statistics.mean(store.new_chunks[h] for h in hours):12.0f}"
            f"{statistics.median(store.seconds[h] for h in hours):10.2f}"
            f"{statistics.median(store.cpu[h] for h in hours):7.2f}{store.cpu[0]:12.2f}"
        )
    lines.append(
        f"{'etcdctl snapshot save (part of the restic row)':44}{' ' * 84}"
        f"{statistics.median(save_s[h] for h in hours):10.2f}"
    )
    default = PAGE_GROUP_DEFAULT_KIB if PAGE_GROUP_DEFAULT_KIB in kk else args.groups[0]
    ours = kk[default]
    mean_added = {g: statistics.mean(s.added[h] for h in hours) for g, s in kk.items()}
    restic_added = statistics.mean(rs.added[h] for h in hours)
    restic_s = statistics.median(rs.seconds[h] + save_s[h] for h in hours)
    ours_s = statistics.median(ours.seconds[h] for h in hours)
    lines += [
        "",
        f"per hourly snapshot, {default} KiB groups (the default) add {mean_added[default] / 1e6:.2f} MB "
        f"({mean_added[default] / db:.1%} of the database; target <= 10 %: "
        f"{'met' if mean_added[default] <= 0.10 * db else 'MISSED'})",
        f"restic {rversion} / kubekeep, bytes added per hourly snapshot: {restic_added / mean_added[default]:.1f}x "
        f"({restic_added / 1e6:.1f} MB vs {mean_added[default] / 1e6:.2f} MB); content-defined kubekeep / "
        f"page groups: {mean_added[None] / mean_added[default]:.1f}x",
        f"time per hourly snapshot: etcdctl save + restic backup {restic_s:.2f} s, kubekeep backup etcd:// "
        f"{ours_s:.2f} s ({ours_s / restic_s:.2f}x)",
    ]
    for g in args.groups:
        n, new = kk[g].chunks[-1], statistics.mean(kk[g].new_chunks[h] for h in hours)
        lines.append(
            f"  {g:>3} KiB groups: {mean_added[g] / 1e6:6.2f} MB/hour ({mean_added[g] / mean_added[default]:.2f}x the "
            f"default); {n} chunks a snapshot ({n * 57 / 1e6:.2f} MB of in-memory index, 57 bytes a blob), "
            f"{new:.0f} new an hour (+{new * 57 / 1e3:.0f} kB); tree {kk[g].tree_raw[-1] / 1e3:.0f} kB a snapshot"
        )
    return lines


#: the page group size kubekeep ships with
PAGE_GROUP_DEFAULT_KIB = PAGE_CHUNK_TARGET // 1024


def note(
    store: Store,
    before: tuple[int, int],
    r: Run,
    doc: dict[str, Any],
    env: dict[str, str],
    path: str,
    prev_ids: dict[str, list[bytes]],
) -> None:
    """Record what the kubekeep snapshot ``doc`` added to ``store`` (``before``: the sizes of
    the repository and of its index files before it); ``path``: the file in the snapshot."""
    from kubekeep import api

    store.added.append(dir_size(store.repo) - before[0])
    store.index_added.append(dir_size(store.repo / "index") - before[1])
    store.seconds.append(r.seconds)
    store.cpu.append(r.cpu)
    opts = api.RepositoryOptions(
        location=env["KUBEKEEP_REPOSITORY"], password=PASSWORD, cache_dir=Path(env["KUBEKEEP_CACHE_DIR"])
    )
    repo = api.open_repository(opts)
    try:
        snap = repo.find_snapshot(str(doc["id"]))
        node = repo.resolve(snap, path)
        parent = path.rpartition("/")[0]
        tree = repo.resolve(snap, parent).subtree if parent else bytes.fromhex(snap.tree)
        assert tree is not None
        store.tree_raw.append(len(repo.load_blob(tree)))
    finally:
        repo.close()
    ids = list(node.content)
    store.chunks.append(len(ids))
    store.new_chunks.append(len(set(ids) - set(prev_ids.get(store.label, []))))
    prev_ids[store.label] = ids


def timing(srv: EtcdServer, args: argparse.Namespace, work: Path) -> list[str]:
    """The timing runs and the two consecutive snapshots (module docstring); the report lines."""
    lines: list[str] = []

    def out(text: str = "") -> None:
        lines.append(text)

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
    report += increment(f"{n_change} keys ({args.change:.0%}) rewritten", same, base, changed, base_file, changed_file)
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

    db_size = int(base["stats"]["bytes_total"])
    med = {k: statistics.median(r.seconds for r in v) for k, v in rows.items()}
    out(f"\nsnapshot file {db_size / 1e6:.1f} MB; medians of {args.reps} alternating runs (whole processes)\n")
    out(f"{'':38}{'median s':>9}{'MB/s':>7}{'client CPU s':>14}{'etcd CPU s':>12}{'peak RSS MB':>13}   runs")
    for label, runs in rows.items():
        mbps = f"{db_size / 1e6 / med[label]:.0f}" if "fixed" not in label else "-"
        out(
            f"{label:38}{med[label]:9.2f}{mbps:>7}{statistics.median(r.cpu for r in runs):14.2f}"
            f"{statistics.median(r.server_cpu for r in runs):12.2f}{max(r.peak_rss_mb for r in runs):13.0f}   "
            + " ".join(f"{r.seconds:.2f}" for r in runs)
        )
    save = med["etcdctl snapshot save FILE"]
    out()
    for label in ("kubekeep backup etcd://, new repo", "kubekeep backup etcd://, same repo"):
        ratio = med[label] / save
        out(
            f"{label} / etcdctl snapshot save: {ratio:.2f}x (target <= {TARGET}x: "
            f"{'met' if ratio <= TARGET else 'MISSED'})"
        )
    out(
        f"kubekeep backup etcd://, new repo / (etcdctl save + kubekeep backup FILE): "
        f"{med['kubekeep backup etcd://, new repo'] / med['etcdctl save + kubekeep backup FILE']:.2f}x"
    )
    out(
        f"a new repository stores {first_json['stats']['bytes_stored'] / 1e6:.1f} MB for the "
        f"{db_size / 1e6:.1f} MB file (zstd); a re-backup of the unchanged database stores "
        f"{base['stats']['bytes_stored'] / 1e6:.2f} MB\n"
    )
    out("\n".join(report))
    out("\n" + status.stdout.strip())
    return lines


def kib_list(text: str) -> list[int]:
    """``--groups``: comma-separated sizes in KiB."""
    return [int(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-size", type=int, default=800, help="bytes; 0: a Kubernetes-like mix (SIZE_MIX)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--change", type=float, default=0.01, help="fraction of keys rewritten before the last backup")
    ap.add_argument(
        "--groups",
        type=kib_list,
        default=[8, 16, 32, 64],
        help="page-group sizes to compare, KiB, comma-separated",
    )
    ap.add_argument("--rounds", type=int, default=4, help="rewrite-and-compact rounds per hour (of CHANGE / ROUNDS)")
    ap.add_argument("--hours", type=int, default=2, help="hourly snapshots after the base one")
    ap.add_argument("--no-timing", action="store_true", help="only the page-group comparison")
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a new one in /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if not args.groups or any(g <= 0 for g in args.groups) or args.rounds < 1 or args.hours < 1:
        ap.error("--groups takes positive KiB sizes; --rounds and --hours at least 1")

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
    try:
        secs = load(srv, list(range(args.keys)), args.value_size, 0, seed=1)
        with srv.client() as c:
            st = c.status()
        print(
            f"loaded {args.keys} keys of {f'~{args.value_size} B' if args.value_size else 'mixed sizes'} in {secs:.1f} s: revision {st.revision}, "
            f"db {st.db_size / 1e6:.1f} MB"
        )
        time.sleep(2)
        lines = [] if args.no_timing else timing(srv, args, work)
        lines += ["", *group_sizes(srv, args, work)]
    finally:
        srv.stop()
    print("\n".join(lines))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
