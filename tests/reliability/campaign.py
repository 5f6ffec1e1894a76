"""Seeded fault campaigns: how many runs, which seeds, and the figures the summary prints.

A campaign is a loop of independent runs, run ``i`` seeded with ``base seed + i``. A run that
breaks an invariant is recorded (with its seed) and the campaign goes on, so the figures count
every broken run; the test fails at the end, naming the seeds and the command that replays one.

Environment:
  KUBEKEEP_CAMPAIGN_RUNS     runs per campaign (default: each campaign's small CI count)
  KUBEKEEP_CAMPAIGN_SEED     base seed (default: a fresh random one, printed in the summary)
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

RUNS_ENV = "KUBEKEEP_CAMPAIGN_RUNS"
SEED_ENV = "KUBEKEEP_CAMPAIGN_SEED"


def campaign_runs(ci_default: int) -> int:
    value = os.environ.get(RUNS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else ci_default


def time_limit(ci_default: int, setup_s: float, per_run_s: float) -> float:
    """A pytest-timeout bound that grows with the number of runs asked for."""
    return setup_s + per_run_s * campaign_runs(ci_default)


@dataclass
class Figures:
    """What one campaign did and found; the invariants want the last four at 0."""

    name: str
    seed: int
    runs: int = 0
    faults: int = 0
    #: repositories that ``check --read-data`` rejected where it must pass
    check_failures: int = 0
    #: restores that left a file whose bytes differ from the source
    wrong_restores: int = 0
    #: injected damage that went unnoticed (check passed, or a damaged key opened)
    undetected: int = 0
    #: runs that broke another invariant (a lost snapshot, a traceback, a failing next backup)
    other_failures: int = 0
    failures: list[str] = field(default_factory=list)
    #: commands that gave up under the faults as they should: a one-line error, a non-zero exit
    clean_failures: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        clean = f", commands failing cleanly {self.clean_failures}" if self.clean_failures else ""
        return (
            f"{self.name}: seed {self.seed}, runs {self.runs}, faults injected {self.faults}{clean}, "
            f"repositories failing check {self.check_failures}, restores with a wrong byte "
            f"{self.wrong_restores}, damage undetected {self.undetected}, other failures "
            f"{self.other_failures} ({self.seconds:.0f} s)"
        )


#: every campaign of this session, for the terminal summary (tests/reliability/conftest.py)
FIGURES: list[Figures] = []


class RunFailed(AssertionError):
    """A run broke an invariant; ``kind`` names the figure it counts in."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def fail(kind: str, message: str) -> RunFailed:
    assert kind in ("check_failures", "wrong_restores", "undetected", "other_failures"), kind
    return RunFailed(kind, message)


class Campaign:
    """``Campaign(name, ci_runs).run(one_run)`` where ``one_run(rng, figures)`` raises
    ``RunFailed`` (see ``fail``) when an invariant breaks and adds to ``figures.faults``."""

    def __init__(self, name: str, ci_runs: int, nodeid: str = "") -> None:
        env_seed = os.environ.get(SEED_ENV, "")
        self.seed = int(env_seed) if env_seed.isdigit() else secrets.randbelow(10**9)
        self.runs = campaign_runs(ci_runs)
        self.nodeid = nodeid
        self.figures = Figures(name, self.seed)
        FIGURES.append(self.figures)

    def seeds(self) -> Iterator[int]:
        return iter(range(self.seed, self.seed + self.runs))

    def run(self, one_run: Callable[[random.Random, Figures], None]) -> Figures:
        started = time.monotonic()
        f = self.figures
        try:
            for seed in self.seeds():
                f.runs += 1
                try:
                    one_run(random.Random(seed), f)
                except RunFailed as exc:
                    setattr(f, exc.kind, getattr(f, exc.kind) + 1)
                    f.failures.append(f"seed {seed}: {exc}")
                except Exception as exc:  # noqa: BLE001 - every other failure is counted
                    f.other_failures += 1
                    f.failures.append(f"seed {seed}: {type(exc).__name__}: {exc}")
        finally:
            f.seconds = time.monotonic() - started
        if f.failures:
            shown = "\n".join(message[:600] for message in f.failures[:10])
            replay = f"{SEED_ENV}=<seed> {RUNS_ENV}=1 pytest -p no:cacheprovider '{self.nodeid or 'tests/reliability'}'"
            raise AssertionError(f"{f.line()}\n{len(f.failures)} run(s) failed:\n{shown}\nreplay one with: {replay}")
        return f


# -- data ----------------------------------------------------------------------------------------


def make_dataset(root: Path, seed: int, *, variant: int = 0, big_kib: int = 1536) -> Path:
    """A small tree (~2-3 MB): a multi-chunk random file, mid-sized random and compressible
    files, many small files in nested directories, an empty file and a symlink. ``variant``
    changes some files, adds and removes others, as a later backup of the same source sees it."""
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "big.bin").write_bytes(rnd.randbytes(big_kib * 1024))
    for i in range(4):
        (root / f"mid{i}.bin").write_bytes(rnd.randbytes(rnd.randint(60_000, 250_000)))
    (root / "text.log").write_text("".join(f"line {i} {rnd.random()}\n" for i in range(8000)))
    for d in range(4):
        sub = root / f"dir{d}" / "sub"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(12):
            (sub / f"f{i:02d}.txt").write_text(f"dir {d} file {i}\n" * rnd.randint(1, 300))
    (root / "empty").write_bytes(b"")
    if not (root / "link").is_symlink():
        os.symlink("dir0/sub/f00.txt", root / "link")
    if variant:
        vr = random.Random(seed * 1000 + variant)
        for i in range(variant):
            (root / f"new{variant}_{i}.bin").write_bytes(vr.randbytes(vr.randint(20_000, 400_000)))
        big = bytearray((root / "big.bin").read_bytes())
        at = vr.randrange(len(big) - 4096)
        big[at : at + 4096] = vr.randbytes(4096)
        (root / "big.bin").write_bytes(bytes(big))
        (root / f"dir{variant % 4}" / "sub" / "f03.txt").unlink()
        (root / "text.log").write_text((root / "text.log").read_text() + f"variant {variant}\n")
    return root


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (relative paths), symlinks not followed."""
    out: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                continue
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def wrong_files(source: dict[str, str], restored: Path) -> list[str]:
    """Files under ``restored`` whose bytes are not the source's (or that the source lacks)."""
    return sorted(rel for rel, digest in file_digests(restored).items() if source.get(rel) != digest)


def missing_files(source: dict[str, str], restored: Path) -> list[str]:
    return sorted(set(source) - set(file_digests(restored)))
