#!/usr/bin/env python3
"""Manifests benchmark: kubekeep's k8s:// backup against `kubectl get` reading the same objects,
in the same run, on a local control plane with 10,000+ objects in 100 namespaces.

    python bench/bench_manifests.py [--scale 100] [--rounds 3] [--work /var/tmp/kubekeep-bench-manifests]
                                    [--nodes N] [--json FILE]

1. starts a testenv cluster (etcd, kube-apiserver, controllers, kwok) with enough simulated
   nodes for every seeded pod (``--nodes``, default: one per 400 pods, at least 3; each takes
   500), seeds it in scale mode (N namespaces of 101 objects each; N=100 gives 10,100 seeded
   objects, plus the pods, replica sets, endpoints ... the controllers derive from them) and
   waits until every workload is Ready, so that the cluster carries what a real one of that
   size does (scheduled, running pods with status, endpoints);
2. takes the resource set kubekeep backs up by default (every listable resource, preferred
   version, minus events and leases) and, `--rounds` times in alternation, times
   `kubectl get <that set> -A -o json` (discovery cache warm) and a first `kubekeep backup
   k8s://` into a fresh repository (whole process: start-up, discovery, lists, YAML, chunking,
   encryption, upload to a local repository), with the peak RSS of each;
3. runs an unchanged second backup and measures the bytes it added to the repository;
4. starts a second, empty cluster and restores the whole snapshot into it, timing
   `kubekeep restore SNAP --to k8s://` and counting the objects it created;
5. on that same API server, once the restored workloads are Ready, creates a fresh seed (``plain-`` namespaces, same mix,
   ``--baseline-scale`` namespaces) with plain parallel POSTs as many in flight as the restore
   uses: the rate the API server gives to creates that need no planning, the restore's yardstick
   (the seed also PATCHes each Widget's status, so its requests/s are printed too).

Prints the figures and the ratios the issue sets as targets (backup <= 1.5x the kubectl read,
peak RSS < 500 MB, second backup < 5 % of the first's bytes, restore >= 200 objects/s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from testenv import seed
from testenv.cluster import Cluster

KUBEKEEP = [sys.executable, "-m", "kubekeep.cli.main"]
PASSWORD = "bench-password"
#: `kubekeep restore --to k8s://`'s default requests in flight (K8sOptions.concurrency or 64).
RESTORE_CONCURRENCY = 64


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    stdout: bytes


#: Runs argv[2:] and writes its peak RSS (KiB) to argv[1]. A child's ru_maxrss starts at its
#: parent's RSS when it was spawned (the kernel records the old address space's high-water mark
#: at exec, and a vfork child shares its parent's): measured straight from this benchmark, which
#: holds kubectl's output, kubekeep's "peak RSS" was the benchmark's own (343 MB in every round
#: at 30k objects). This small launcher is the measured command's parent instead, as GNU time is.
LAUNCHER = (
    "import os, subprocess, sys\n"
    "proc = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(proc.pid, 0)\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status) % 256)\n"
)


def run(cmd: list[str], env: dict[str, str], *, ok: tuple[int, ...] = (0,)) -> Run:
    """Run ``cmd``: wall time, peak RSS (of ``cmd`` alone, see ``LAUNCHER``), stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as rss:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, rss.name, *cmd],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = proc.communicate()
        elapsed = time.perf_counter() - start
        code = proc.returncode
        if code not in ok:
            raise SystemExit(f"command failed ({code}): {' '.join(cmd)}\n{err.decode()[-3000:]}")
        return Run(elapsed, int(rss.read()) / 1024, out)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def resource_names(kubeconfig: Path) -> list[str]:
    """The resources kubekeep backs up by default, as kubectl names them (resource.group)."""
    from kubekeep.connectors.k8s.importer import K8sImporter
    from kubekeep.kube import discovery

    importer = K8sImporter(kubeconfig=str(kubeconfig))
    try:
        return sorted(r.full_name for r in importer.selected_resources(discovery.discover(importer.session)))
    finally:
        importer.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=100, help="namespaces of 101 objects (default 100)")
    ap.add_argument("--rounds", type=int, default=3, help="kubectl/kubekeep timing rounds (default 3)")
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/kubekeep-bench-manifests"))
    ap.add_argument("--concurrency", type=int, default=0, help="restore requests in flight (default: kubekeep's)")
    ap.add_argument("--nodes", type=int, default=0, help="simulated nodes (default: one per 400 seeded pods, >= 3)")
    ap.add_argument(
        "--baseline-scale", type=int, default=0, help="namespaces for the plain-create rate (default --scale)"
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    mix = seed.SCALE_MIX
    pods = args.scale * (mix.deployments * mix.deployment_replicas + mix.statefulsets)
    nodes = args.nodes or max(3, math.ceil(pods / 400))
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)

    log(f"{pods} seeded pods on {nodes} simulated nodes")
    source = Cluster(nodes=nodes, progress=log).start()
    try:
        result = seed.seed(source, scale=args.scale, workers=16, progress=log)
        log(result.summary())
        t0 = time.monotonic()
        seed.wait_for_workloads(source, result.namespaces, timeout=max(600, pods))
        log(f"workloads Ready after {time.monotonic() - t0:.0f} s")
        kubectl = str(source.binaries["kubectl"])
        kube_env = {"KUBECONFIG": str(source.kubeconfig), "KUBECACHEDIR": str(args.work / "kubectl-cache")}
        names = resource_names(source.kubeconfig)
        log(f"{len(names)} resources: {', '.join(names)}")
        get = [kubectl, "get", ",".join(names), "-A", "-o", "json"]
        warm = run(get, kube_env)  # fills kubectl's discovery cache
        objects = len(json.loads(warm.stdout)["items"])
        log(f"kubectl reads {objects} objects ({len(warm.stdout) / 1e6:.1f} MB of JSON)")

        kubectl_runs: list[Run] = []
        backup_runs: list[Run] = []
        repos: list[Path] = []
        for i in range(args.rounds):
            kubectl_runs.append(run(get, kube_env))
            repo = args.work / f"repo-{i}"
            env = {
                **kube_env,
                "KUBEKEEP_REPOSITORY": str(repo),
                "KUBEKEEP_PASSWORD": PASSWORD,
                "KUBEKEEP_CACHE_DIR": str(args.work / f"cache-{i}"),
            }
            run([*KUBEKEEP, "init"], env)
            backup_runs.append(run([*KUBEKEEP, "--json", "backup", "k8s://"], env))
            repos.append(repo)
            log(
                f"round {i + 1}: kubectl {kubectl_runs[-1].seconds:.2f} s, kubekeep {backup_runs[-1].seconds:.2f} s "
                f"({backup_runs[-1].peak_rss_mb:.0f} MB)"
            )
        first = json.loads(backup_runs[-1].stdout)
        stored_objects = first.get("stats", {}).get("files", 0) - 2

        repo = repos[-1]
        env = {
            **kube_env,
            "KUBEKEEP_REPOSITORY": str(repo),
            "KUBEKEEP_PASSWORD": PASSWORD,
            "KUBEKEEP_CACHE_DIR": str(args.work / f"cache-{args.rounds - 1}"),
        }
        size_first = du(repo)
        second_run = run([*KUBEKEEP, "--json", "backup", "k8s://"], env)
        second = json.loads(second_run.stdout)
        added = du(repo) - size_first
        snapshot_id = first["id"]
    finally:
        source.stop()

    target = Cluster(progress=log).start()
    try:
        env = {
            "KUBECONFIG": str(target.kubeconfig),
            "KUBEKEEP_REPOSITORY": str(repo),
            "KUBEKEEP_PASSWORD": PASSWORD,
            "KUBEKEEP_CACHE_DIR": str(args.work / f"cache-{args.rounds - 1}"),
        }
        cmd = [*KUBEKEEP, "--json", "restore", snapshot_id, "--to", "k8s://"]
        if args.concurrency:
            cmd += ["--concurrency", str(args.concurrency)]
        restore_run = run(cmd, env, ok=(0, 16))
        report = json.loads(restore_run.stdout)
        actions: dict[str, int] = {}
        for r in report["results"]:
            actions[r["action"]] = actions.get(r["action"], 0) + 1
        failures = [r for r in report["results"] if r["action"] == "failed"][:5]
        log(f"restore: {restore_run.seconds:.1f} s, {actions}")
        # The restored workloads' pods, replica sets and endpoints come after the restore: let the
        # controllers finish them so that they do not slow down the plain creates alone.
        seed.wait_for_workloads(target, result.namespaces, timeout=max(600, pods))
        concurrency = args.concurrency or RESTORE_CONCURRENCY
        plain = seed.seed(
            target, scale=args.baseline_scale or args.scale, workers=concurrency, prefix="plain-", progress=log
        )
        log(f"plain parallel creates ({concurrency} in flight): {plain.summary()}")
    finally:
        target.stop()

    kubectl_s = statistics.median(r.seconds for r in kubectl_runs)
    backup_s = statistics.median(r.seconds for r in backup_runs)
    created = actions.get("created", 0)
    backup_rss = statistics.median(r.peak_rss_mb for r in backup_runs)
    figures = {
        "simulated nodes": nodes,
        "load average at the end (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "objects read by kubectl": objects,
        "objects stored by kubekeep": stored_objects,
        "kubectl get -A -o json, median s": kubectl_s,
        "kubekeep backup (first), median s": backup_s,
        "backup / kubectl ratio (target <= 1.5)": backup_s / kubectl_s,
        "kubekeep peak RSS, MB (target < 500)": max(r.peak_rss_mb for r in backup_runs),
        "kubekeep peak RSS, median MB": backup_rss,
        "kubekeep peak RSS per stored object, KB": 1024 * backup_rss / max(stored_objects, 1),
        "kubectl peak RSS, MB": max(r.peak_rss_mb for r in kubectl_runs),
        "repository after first backup, MB": size_first / 1e6,
        "second backup, s": second_run.seconds,
        "second backup added, bytes": added,
        "second / first bytes, % (target < 5)": 100 * added / size_first,
        "restore, s": restore_run.seconds,
        "restore: objects created": created,
        "restore: created objects/s (target >= 200)": created / restore_run.seconds,
        "plain parallel creates, objects": plain.total,
        "plain parallel creates, objects/s": plain.total / plain.seconds,
        # the seed also PATCHes each Widget's status: one more request per Widget
        "plain parallel creates, requests/s": (plain.total + plain.counts["Widget"]) / plain.seconds,
        "restore rate / plain create rate": (created / restore_run.seconds) / (plain.total / plain.seconds),
        "restore peak RSS, MB": restore_run.peak_rss_mb,
    }
    print(
        "\nrounds (kubectl s / kubekeep s): "
        + ", ".join(f"{k.seconds:.2f}/{b.seconds:.2f}" for k, b in zip(kubectl_runs, backup_runs, strict=True))
    )
    print(f"second backup stats: {second['stats']}")
    print(f"restore actions: {actions}" + (f"; first failures: {failures}" if failures else ""))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        text = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value
        print(f"{key:<{width}}  {text}")
    if args.json:
        rounds = [{"kubectl_s": k.seconds, "kubectl_rss_mb": k.peak_rss_mb, "kubekeep_s": b.seconds,
                   "kubekeep_rss_mb": b.peak_rss_mb} for k, b in zip(kubectl_runs, backup_runs, strict=True)]  # fmt: skip
        args.json.write_text(json.dumps({"scale": args.scale, "figures": figures, "rounds": rounds}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
