#!/usr/bin/env python3
"""Repository engine benchmark: kubekeep against restic, borg and `tar | zstd -1`, same data, same run.

    python bench/bench_engine.py [--scale 1.0] [--work /var/tmp/kubekeep-bench] [--keep]

Builds the shared data set (../shared/bench/make_dataset.py), then measures for each tool:
first backup, unchanged re-backup, re-backup after 1 % of the files changed, and a full
restore: whole-process wall time and peak RSS (wait4), and the repository size. Prints a table
and the ratios the issue sets as targets. restic and borg come from Debian's packages
(`apt-get install restic borgbackup`); missing peers are reported, not faked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASET = Path(os.environ.get("KUBEKEEP_BENCH_DATASET", HERE.parent.parent / "shared" / "bench" / "make_dataset.py"))
PASSWORD = "bench-password"


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float


def run(cmd: list[str] | str, *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run a command (a shell string runs under bash) and return wall time and peak RSS of its tree."""
    shell = isinstance(cmd, str)
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["bash", "-o", "pipefail", "-c", cmd] if shell else cmd,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 3):
        raise SystemExit(f"command failed ({proc.returncode}): {cmd}\n{err[-2000:]}")
    # ru_maxrss of wait4 is the largest single process in the waited-for tree, in KiB
    return Run(elapsed, usage.ru_maxrss / 1024)


def du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def prepare_work(work: Path, scale: float, *, keep: bool = True) -> Path:
    """The data set of ``scale`` in ``work`` (built unless ``keep`` finds it there), and nothing
    else: what earlier runs left in ``work`` is removed. Returns the data set's directory."""
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"data-{scale}"
    if not keep and data.exists():
        shutil.rmtree(data)
    if not data.exists():
        print(f"building data set (scale {scale}) in {data} ...", flush=True)
        subprocess.run([sys.executable, str(DATASET), str(data), "--scale", str(scale)], check=True)
    for p in work.iterdir():
        if p != data and not p.name.startswith("data-"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return data


def same_tree(a: Path, b: Path) -> bool:
    return subprocess.run(["diff", "-r", "-q", str(a), str(b)], capture_output=True).returncode == 0


class Tool:
    name = ""

    def __init__(self, work: Path, data: Path, restore_dir: Path) -> None:
        self.work, self.data = work, data
        self.repo = work / f"repo-{self.name}"
        self.out = restore_dir / f"restore-{self.name}"

    def available(self) -> bool:
        return True

    def init(self) -> None: ...
    def backup(self) -> Run:
        raise NotImplementedError

    def restore(self) -> Run | None:
        return None

    def size(self) -> int:
        return du(self.repo)


class Kubekeep(Tool):
    name = "kubekeep"

    @property
    def env(self) -> dict[str, str]:
        return {
            "KUBEKEEP_PASSWORD": PASSWORD,
            "KUBEKEEP_REPOSITORY": str(self.repo),
            "KUBEKEEP_CACHE_DIR": str(self.work / "cache-kubekeep"),
            # as installed: Python's byte code cached (pip compiles it at install; a shell or CI
            # that sets PYTHONDONTWRITEBYTECODE would make every run compile ~0.1 s of sources)
            "PYTHONDONTWRITEBYTECODE": "",
        }

    def init(self) -> None:
        import kubekeep

        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(kubekeep.__file__).parent)], check=False)
        run([sys.executable, "-m", "kubekeep.cli.main", "init"], env=self.env)

    def backup(self) -> Run:
        return run([sys.executable, "-m", "kubekeep.cli.main", "backup", "-q", str(self.data)], env=self.env)

    def restore(self) -> Run:
        return run(
            [sys.executable, "-m", "kubekeep.cli.main", "restore", "-q", "latest", "--to", str(self.out)], env=self.env
        )

    def opening(self) -> Run:
        """What every command pays before its work: interpreter, imports, Argon2id, the
        snapshot files (``snapshots``: it opens the repository and lists, nothing else)."""
        return run([sys.executable, "-m", "kubekeep.cli.main", "snapshots", "-q"], env=self.env)


class Restic(Tool):
    name = "restic 0.14"  # Debian's package, the second row
    binary = "restic"

    @property
    def env(self) -> dict[str, str]:
        return {
            "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_REPOSITORY": str(self.repo),
            "RESTIC_CACHE_DIR": str(self.work / f"cache-{self.name.replace(' ', '-')}"),
        }

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    def init(self) -> None:
        run([self.binary, "init"], env=self.env)

    def backup(self) -> Run:
        return run([self.binary, "backup", "-q", str(self.data)], env=self.env)

    def restore(self) -> Run:
        run_ = run([self.binary, "restore", "-q", "latest", "--target", str(self.out)], env=self.env)
        inner = self.out / str(self.data).lstrip("/")  # restic restores the absolute path below the target
        tmp = self.out.parent / f"{self.name.replace(' ', '-')}-flat"
        inner.rename(tmp)
        shutil.rmtree(self.out)
        tmp.rename(self.out)
        return run_


class Restic019(Restic):
    """restic built from its pinned Go module (testenv.versions.RESTIC_VERSION): the main peer.
    Built on first use into ``~/.cache/kubekeep-testenv/restic-<version>/`` (testenv.build)."""

    name = "restic 0.19"

    def available(self) -> bool:
        sys.path.insert(0, str(HERE.parent))
        from testenv.build import ensure_restic

        self.binary = str(ensure_restic())
        return True


class Borg(Tool):
    name = "borg"

    @property
    def env(self) -> dict[str, str]:
        return {
            "BORG_PASSPHRASE": PASSWORD,
            "BORG_REPO": str(self.repo),
            "BORG_BASE_DIR": str(self.work / "borg-base"),
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        }

    def available(self) -> bool:
        return shutil.which("borg") is not None

    def init(self) -> None:
        run(["borg", "init", "-e", "repokey-blake2"], env=self.env)
        self.n = 0

    def backup(self) -> Run:
        self.n += 1
        return run(["borg", "create", "--compression", "lz4", f"::a{self.n}", "."], env=self.env, cwd=self.data)

    def restore(self) -> Run:
        self.out.mkdir()
        return run(["borg", "extract", f"::a{self.n}"], env=self.env, cwd=self.out)


class TarZstd(Tool):
    name = "tar|zstd -1"

    def __init__(self, work: Path, data: Path, restore_dir: Path) -> None:
        super().__init__(work, data, restore_dir)
        self.repo = work / "tar"
        self.archive = self.repo / "data.tar.zst"

    def available(self) -> bool:
        return shutil.which("zstd") is not None

    def init(self) -> None:
        self.repo.mkdir()

    def backup(self) -> Run:
        return run(f"tar -C '{self.data}' -cf - . | zstd -1 -T2 -q -f -o '{self.archive}'")

    def restore(self) -> Run:
        self.out.mkdir()
        return run(f"zstd -d -q -c '{self.archive}' | tar -C '{self.out}' -xf -")


def in_turn(tools: list[Tool], rep: int) -> list[Tool]:
    """The tools in their order, but each repetition another one goes first."""
    k = rep % len(tools)
    return tools[k:] + tools[:k]


def median_run(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.seconds)
    mid = ordered[len(ordered) // 2]
    return Run(mid.seconds, max(r.peak_rss_mb for r in runs))


def profile_rebackup(work: Path, data: Path, top: int = 20) -> None:
    """Where an unchanged re-backup spends its time: a plain run's wall time, python start-up
    with the CLI's imports alone, then the same re-backup under cProfile (top items by
    cumulative time; repository open and key derivation, index loading, the walk and tree
    building and the snapshot write show up as their kubekeep functions)."""
    import pstats

    k = Kubekeep(work, data, work)
    k.init()
    first = k.backup()
    print(f"first backup (untimed for the breakdown): {first.seconds:.2f} s", flush=True)
    plain = [k.backup() for _ in range(3)]
    startup = [run([sys.executable, "-c", "import kubekeep.cli.main"], env=k.env) for _ in range(3)]
    bare = [run([sys.executable, "-c", "pass"]) for _ in range(3)]
    prof = work / "rebackup.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "kubekeep.cli.main", "backup", "-q", str(data)]
    profiled = run(cmd, env=k.env)
    print(f"unchanged re-backup, median of 3: {median_run(plain).seconds:.2f} s")
    print(f"  python start-up alone:          {median_run(bare).seconds:.2f} s")
    print(f"  start-up + kubekeep CLI imports: {median_run(startup).seconds:.2f} s")
    print(f"  under cProfile: {profiled.seconds:.2f} s; top {top} by cumulative time:")
    pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/kubekeep-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the data set between runs (rebuilt if missing)")
    ap.add_argument(
        "--reps",
        type=int,
        default=3,
        help="first backups and restores are repeated, tools taking turns; medians are reported",
    )
    ap.add_argument(
        "--restore-dir",
        type=Path,
        default=None,
        help="where restores are written (default: the work directory); see bench/README.md on ext4 without a journal",
    )
    ap.add_argument(
        "--profile-rebackup",
        action="store_true",
        help="only break down an unchanged kubekeep re-backup (start-up, imports, cProfile top items)",
    )
    ap.add_argument(
        "--tools",
        default="",
        help="comma-separated subset of the tools (e.g. 'kubekeep,restic 0.19' for a scale 4 memory run)",
    )
    args = ap.parse_args()
    work: Path = args.work
    data = prepare_work(work, args.scale, keep=args.keep)
    if args.profile_rebackup:
        profile_rebackup(work, data)
        return
    restore_dir: Path = args.restore_dir or work
    restore_dir.mkdir(parents=True, exist_ok=True)
    data_size = du(data)
    tools = [cls(work, data, restore_dir) for cls in (Kubekeep, Restic019, Restic, Borg, TarZstd)]
    if args.tools:
        wanted = {t.strip() for t in args.tools.split(",")}
        tools = [t for t in tools if t.name in wanted or t.name == "kubekeep"]
    missing = [t.name for t in tools if not t.available()]
    tools = [t for t in tools if t.available()]
    results: dict[str, dict[str, object]] = {t.name: {} for t in tools}
    firsts: dict[str, list[Run]] = {t.name: [] for t in tools}
    subprocess.run(["sync"], check=False)  # the cleanup's writes and discards, before anyone is timed
    # read the data set once, untimed: no tool pays for a cold page cache (or a CPU that was idle)
    subprocess.run(f"tar -C '{data}' -cf - . | cat > /dev/null", shell=True, check=True)
    for rep in range(args.reps):
        for t in in_turn(tools, rep):
            if rep:
                shutil.rmtree(t.repo)
            t.init()
            r = t.backup()
            firsts[t.name].append(r)
            print(f"{t.name:12} first backup {r.seconds:7.2f} s  peak {r.peak_rss_mb:6.0f} MB", flush=True)
    for t in tools:
        results[t.name]["first"] = median_run(firsts[t.name])
        results[t.name]["size"] = t.size()
    unchanged: dict[str, list[Run]] = {t.name: [] for t in tools}
    for rep in range(args.reps):  # each adds a snapshot of the same files: all are unchanged re-backups
        for t in in_turn([t for t in tools if not isinstance(t, TarZstd)], rep):
            size_before = t.size()
            r = t.backup()
            unchanged[t.name].append(r)
            results[t.name]["unchanged_added"] = t.size() - size_before
            print(f"{t.name:12} unchanged    {r.seconds:7.2f} s  peak {r.peak_rss_mb:6.0f} MB", flush=True)
    for t in tools:
        if unchanged[t.name]:
            results[t.name]["unchanged"] = median_run(unchanged[t.name])
    subprocess.run([sys.executable, str(DATASET), str(data), "--mutate", "1"], check=True, capture_output=True)
    for t in tools:
        if isinstance(t, TarZstd):
            continue
        size_before = t.size()
        r = t.backup()
        results[t.name]["mutated"] = r
        results[t.name]["mutated_added"] = t.size() - size_before
        print(
            f"{t.name:12} 1% changed   {r.seconds:7.2f} s  peak {r.peak_rss_mb:6.0f} MB  "
            f"added {(t.size() - size_before) / 1e6:.1f} MB",
            flush=True,
        )
    restores: dict[str, list[Run]] = {t.name: [] for t in tools}
    for rep in range(args.reps):
        for t in in_turn(tools, rep):
            r = t.restore()
            if r is None:
                continue
            restores[t.name].append(r)
            ok = same_tree(data, t.out) if rep == 0 and not isinstance(t, TarZstd) else None
            print(
                f"{t.name:12} restore      {r.seconds:7.2f} s  peak {r.peak_rss_mb:6.0f} MB"
                + (f"  identical={ok}" if ok is not None else ""),
                flush=True,
            )
            if ok is False:
                raise SystemExit(f"{t.name}: the restored tree differs from the data set")
            shutil.rmtree(t.out, ignore_errors=True)
    for t in tools:
        if restores[t.name]:
            results[t.name]["restore"] = median_run(restores[t.name])
    kubekeep_tool = next(t for t in tools if isinstance(t, Kubekeep))
    results["kubekeep"]["opening"] = median_run([kubekeep_tool.opening() for _ in range(max(3, args.reps))])

    def cell(name: str, key: str) -> str:
        r = results.get(name, {}).get(key)
        return f"{r.seconds:.2f} s" if isinstance(r, Run) else ""

    print(
        f"\ndata set: {data_size / 1e6:.0f} MB (scale {args.scale}); {os.cpu_count()} cores; wall time of the whole "
        f"process; first backup, unchanged re-backup and restore: median of {args.reps}; restores into {restore_dir}"
    )
    print("| tool | first backup | unchanged re-backup | 1 % changed | restore | repository size | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, res in results.items():
        peak = max((r.peak_rss_mb for r in res.values() if isinstance(r, Run)), default=0)
        print(
            f"| {name} | {cell(name, 'first')} | {cell(name, 'unchanged')} | {cell(name, 'mutated')} | "
            f"{cell(name, 'restore')} | {int(res['size']) / 1e6:.0f} MB | {peak:.0f} MB |"
        )
    if missing:
        print(f"(not installed, not measured: {', '.join(missing)})")

    k = results["kubekeep"]

    def ratio(peer: str, key: str) -> float | None:
        a, b = k.get(key), results.get(peer, {}).get(key)
        return (b.seconds / a.seconds) if isinstance(a, Run) and isinstance(b, Run) else None

    print("\nratios (target in brackets):")
    checks = [
        ("first backup, restic 0.19 / kubekeep (>= 2.0)", ratio("restic 0.19", "first"), lambda x: x >= 2.0),
        ("first backup, restic 0.14 / kubekeep (>= 2.0)", ratio("restic 0.14", "first"), lambda x: x >= 2.0),
        (
            "first backup, kubekeep / tar|zstd (<= 1.25)",
            (1 / ratio("tar|zstd -1", "first")) if ratio("tar|zstd -1", "first") else None,
            lambda x: x <= 1.25,
        ),
        ("unchanged re-backup, restic 0.19 / kubekeep (>= 2.0)", ratio("restic 0.19", "unchanged"), lambda x: x >= 2.0),
        (
            "restore, kubekeep / zstd -d|tar -x (<= 1.1)",
            (1 / ratio("tar|zstd -1", "restore")) if ratio("tar|zstd -1", "restore") else None,
            lambda x: x <= 1.1,
        ),
        ("restore, restic 0.19 / kubekeep (>= 1.0)", ratio("restic 0.19", "restore"), lambda x: x >= 1.0),
        (
            "repository size, restic 0.19 / kubekeep (>= 1.0)",
            (int(results["restic 0.19"]["size"]) / int(k["size"])) if "restic 0.19" in results else None,
            lambda x: x >= 1.0,
        ),  # type: ignore[arg-type]
    ]
    peak = max(r.peak_rss_mb for r in k.values() if isinstance(r, Run))
    for label, value, ok in checks:
        print(f"  {label}: {value:.2f} {'ok' if ok(value) else 'MISSED'}" if value is not None else f"  {label}: n/a")
    print(f"  kubekeep peak RSS (<= 150 MB): {peak:.0f} MB {'ok' if peak <= 150 else 'MISSED'}")
    opening, tar = k["opening"], results.get("tar|zstd -1", {})
    assert isinstance(opening, Run)
    print(
        f"\nkubekeep's fixed cost per run (`snapshots`: interpreter, imports, Argon2id; median): {opening.seconds:.2f} s"
    )
    for key, label in (("first", "first backup"), ("restore", "restore")):
        mine, theirs = k.get(key), tar.get(key)
        if isinstance(mine, Run) and isinstance(theirs, Run):
            rest = mine.seconds - opening.seconds
            print(f"  {label} without it: {rest:.2f} s, {rest / theirs.seconds:.2f}x tar|zstd's {theirs.seconds:.2f} s")
    for name in results:
        if name == "borg":
            print(f"  first backup, borg / kubekeep: {ratio('borg', 'first'):.2f}")


if __name__ == "__main__":
    main()
