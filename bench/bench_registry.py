#!/usr/bin/env python3
"""kubekeep's repository in an OCI registry against the same in S3, same data, same run.

    python bench/bench_registry.py [--scale 0.25] [--work /var/tmp/kubekeep-bench-registry] [--reps 1]

Builds the shared data set (../shared/bench/make_dataset.py), starts the tests' MinIO
(tests/support/s3server.py) and distribution registry over TLS with htpasswd users
(tests/support/registry.py) on loopback, both built from their pinned Go modules, the registry
over TLS with bearer tokens from a token service (how hosted registries are reached), and with
--all the same over plain HTTP (MinIO serves plain HTTP here: what TLS costs) and with htpasswd
(basic credentials, which the registry checks with bcrypt on every request), and measures
for each: `kubekeep init`, first backup, unchanged re-backup and a full restore (whole-process
wall time and peak RSS, the median of --reps), checking the restored tree. Prints a table and
the registry's ratios to S3. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "src"))

from bench.bench_engine import PASSWORD, Run, du, median_run, prepare_work, run, same_tree
from tests.support.registry import running_registry
from tests.support.s3server import running_s3_server, s3_client

STEPS = ("first", "unchanged", "restore")


def kubekeep(args: list[str], env: dict[str, str]) -> Run:
    return run([sys.executable, "-m", "kubekeep.cli.main", *args], env=env)


def measure(name: str, env: dict[str, str], data: Path, out: Path, reps: int) -> dict[str, Run]:
    runs: dict[str, list[Run]] = {step: [] for step in STEPS}
    for rep in range(reps):
        repo_env = {**env, "KUBEKEEP_REPOSITORY": env["KUBEKEEP_REPOSITORY"] + f"-{rep}"}
        kubekeep(["init"], repo_env)
        for step in ("first", "unchanged"):
            r = kubekeep(["backup", "-q", str(data)], repo_env)
            runs[step].append(r)
            print(f"{name:13} {step:10} {r.seconds:7.2f} s  peak {r.peak_rss_mb:5.0f} MB", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(env["KUBEKEEP_CACHE_DIR"], ignore_errors=True)  # restore from the storage, not a cache
        r = kubekeep(["restore", "-q", "latest", "--to", str(out)], repo_env)
        runs["restore"].append(r)
        ok = same_tree(data, out)
        print(f"{name:13} restore    {r.seconds:7.2f} s  peak {r.peak_rss_mb:5.0f} MB  identical={ok}", flush=True)
        if not ok:
            raise SystemExit(f"{name}: the restored tree differs from the data set")
        shutil.rmtree(out, ignore_errors=True)
    return {step: median_run(r) for step, r in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/kubekeep-bench-registry"))
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--all", action="store_true", help="also the registry over plain HTTP, and with htpasswd")
    args = ap.parse_args()
    work: Path = args.work
    data = prepare_work(work, args.scale)
    print(f"data set: {du(data) / 1e6:.0f} MB", flush=True)
    base = {
        "KUBEKEEP_PASSWORD": PASSWORD,
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONPATH": str(HERE.parent / "src"),
    }
    results: dict[str, dict[str, Run]] = {}
    with ExitStack() as stack:
        s3 = stack.enter_context(running_s3_server(workdir=work / "minio"))
        client = s3_client(s3)
        client.create_bucket(Bucket="bench")
        s3_env = {
            **base,
            "KUBEKEEP_REPOSITORY": "s3://bench/repo",
            "KUBEKEEP_S3_ENDPOINT": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_DEFAULT_REGION": s3.region,
            "KUBEKEEP_CACHE_DIR": str(work / "cache-s3"),
        }
        targets = {"s3": s3_env}
        # TLS and bearer tokens: how Harbor, GHCR, GitLab and Docker Hub are reached
        registries = {"registry": running_registry(auth="token")}
        if args.all:
            # plain HTTP, as MinIO runs here: what TLS costs; and htpasswd, whose bcrypt check
            # the registry runs on every request
            registries["registry-http"] = running_registry(tls=False, auth="token")
            registries["registry-basic"] = running_registry(auth="htpasswd")
        stores = []
        for name, starting in registries.items():
            registry = stack.enter_context(starting)
            stores.append(registry.data_dir)
            env = {**base, **registry.env(), "KUBEKEEP_REPOSITORY": registry.location("bench/repo")}
            env["KUBEKEEP_CACHE_DIR"] = str(work / f"cache-{name}")
            if not registry.tls:
                env["KUBEKEEP_INSECURE_REGISTRY"] = "1"
            targets[name] = env
        subprocess.run(f"tar -C '{data}' -cf - . | cat > /dev/null", shell=True, check=True)  # warm page cache
        for name, env in targets.items():
            results[name] = measure(name, env, data, work / f"restore-{name}", args.reps)
        registry_bytes = sum(du(d) for d in stores)
    print()
    print(
        f"scale {args.scale}, {du(data) / 1e6:.0f} MB, median of {args.reps}; registry store {registry_bytes / 1e6:.0f} MB"
    )
    print(f"| storage | {' | '.join(STEPS)} |")
    print("| --- |" + " --- |" * len(STEPS))
    for name, steps in results.items():
        cells = [f"{steps[s].seconds:.2f} s ({steps[s].peak_rss_mb:.0f} MB)" for s in STEPS]
        print(f"| {name} | {' | '.join(cells)} |")
    for name in [n for n in results if n != "s3"]:
        ratios = ", ".join(f"{s} {results[name][s].seconds / results['s3'][s].seconds:.2f}x" for s in STEPS)
        print(f"{name} / S3 wall time: {ratios}")


if __name__ == "__main__":
    os.environ.pop("KUBEKEEP_REPOSITORY", None)
    main()
