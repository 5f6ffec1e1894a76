"""``python -m testenv build|up|down|env|status|seed``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from testenv import build, seed, versions
from testenv.cluster import Cluster, ClusterError, default_state_path, describe, running_cluster


def _log(msg: str) -> None:
    print(f"[testenv] {msg}", file=sys.stderr, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    start = time.monotonic()
    artifacts = build.ensure_all(_log)
    for name, path in artifacts.binaries.items():
        print(f"{name}\t{path}")
    for path in artifacts.snapshot_crds:
        print(f"crd\t{path}")
    print(f"kwok-stages\t{artifacts.kwok_stages}")
    print(f"helm\t{build.ensure_helm(_log)}")
    for name, path in build.ensure_minio(_log).items():
        print(f"{name}\t{path}")
    for name, path in build.ensure_registry(_log).items():
        print(f"{name}\t{path}")
    for name, path in build.ensure_newer_kubernetes(_log).items():
        print(f"{name}@{versions.NEWER_KUBERNETES_VERSION}\t{path}")
    _log(f"binaries ready in {time.monotonic() - start:.1f}s (cache: {build.version_dir()})")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    state_path: Path = args.state
    existing = running_cluster(state_path)
    if existing is not None:
        _log(f"a test cluster is already running ({existing.server}, state {state_path}); "
             "run `python -m testenv down` first")  # fmt: skip
        return 1
    cluster = Cluster(nodes=args.nodes, run_dir=args.run_dir, die_with_parent=False, progress=_log, newer=args.newer)
    start = time.monotonic()
    cluster.start()
    cluster.detach()
    cluster.save_state(state_path)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in cluster.timings.items())
    _log(f"cluster up in {time.monotonic() - start:.1f}s ({timings})")
    _log(f"run dir: {cluster.run_dir}")
    _log(f"state file: {state_path}")
    _log(f"server: {cluster.server}  kubeconfig: {cluster.kubeconfig}")
    _log('use it with: eval "$(python -m testenv env)"; stop it with: python -m testenv down')
    print(cluster.run_dir)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_path: Path = args.state
    if not state_path.is_file():
        _log(f"no test cluster state at {state_path}; nothing to stop")
        return 0
    cluster = Cluster.attach(state_path)
    cluster.stop()
    # `up` wrote the state in two places (--state and the run dir): drop every copy.
    for path in {state_path, default_state_path(), build.cache_root() / "state.json"}:
        if _state_run_dir(path) == cluster.run_dir:
            path.unlink(missing_ok=True)
    _log(f"stopped the test cluster and removed {cluster.run_dir}")
    return 0


def _state_run_dir(path: Path) -> Path | None:
    try:
        return Path(json.loads(path.read_text())["run_dir"])
    except (OSError, ValueError, KeyError):
        return None


def cmd_env(args: argparse.Namespace) -> int:
    cluster = running_cluster(args.state)
    if cluster is None:
        _log(f"no running test cluster (state file {args.state}); start one with `python -m testenv up`")
        return 1
    sys.stdout.write(cluster.shell_exports())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cluster = running_cluster(args.state)
    if cluster is None:
        _log(f"no running test cluster (state file {args.state})")
        return 1
    print(json.dumps(describe(cluster), indent=2))
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    cluster = running_cluster(args.state)
    if cluster is None:
        _log(f"no running test cluster (state file {args.state}); start one with `python -m testenv up`")
        return 1
    result = seed.seed(cluster, scale=args.scale, workers=args.workers, progress=_log)
    _log(result.summary())
    if args.wait:
        start = time.monotonic()
        seed.wait_for_workloads(cluster, result.namespaces, timeout=args.wait_timeout)
        _log(f"all seeded Deployments and StatefulSets ready in {time.monotonic() - start:.1f}s")
    return 0


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(prog="python -m testenv", description="kubekeep's local Kubernetes test control plane")
    sub = p.add_subparsers(dest="command", required=True)

    def with_state(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--state", type=Path, default=default_state_path(),
            help="state file of the running cluster (default: $KUBEKEEP_TESTENV_STATE or "
            "~/.cache/kubekeep-testenv/state.json)",
        )  # fmt: skip
        return sp

    sub.add_parser("build", help="build/fetch the pinned binaries into the cache").set_defaults(func=cmd_build)

    up = with_state(sub.add_parser("up", help="start a cluster that keeps running after this command"))
    up.add_argument("--nodes", type=int, default=3, help="number of kwok nodes (default 3)")
    up.add_argument(
        "--newer", action="store_true",
        help=f"run Kubernetes {versions.NEWER_KUBERNETES_VERSION} (the migration tests' second cluster) instead of "
        f"{versions.KUBERNETES_VERSION}; give it its own --state to run both",
    )  # fmt: skip
    up.add_argument("--run-dir", type=Path, help="directory for certs, logs, etcd data (default: a new temp dir)")
    up.set_defaults(func=cmd_up)

    with_state(sub.add_parser("down", help="stop the cluster and remove its run dir")).set_defaults(func=cmd_down)
    with_state(sub.add_parser("env", help="print shell export lines for the cluster")).set_defaults(func=cmd_env)
    with_state(sub.add_parser("status", help="print the running cluster as JSON")).set_defaults(func=cmd_status)

    sd = with_state(sub.add_parser("seed", help="fill the running cluster with a realistic mix of objects"))
    sd.add_argument("--scale", type=int, default=0, metavar="N",
                    help="scale mode: N namespaces of ~100 objects each (100 -> 10,000+ objects)")  # fmt: skip
    sd.add_argument("--workers", type=int, default=16, help="parallel requests (default 16)")
    sd.add_argument("--wait", action="store_true", help="wait until seeded workloads are ready")
    sd.add_argument("--wait-timeout", type=float, default=300, help="seconds for --wait (default 300)")
    sd.set_defaults(func=cmd_seed)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (build.BuildError, ClusterError, seed.SeedError) as err:
        _log(f"error: {err}")
        return 2
    except KeyboardInterrupt:
        _log("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `python -m testenv status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
