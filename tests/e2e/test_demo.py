"""The README's first command: the demo tells the whole story with the real CLI on its own
throwaway cluster (every layer, a restore of each, a namespace migrated with its data to a
newer cluster, etcd disaster recovery) and ends cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=580,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for line in (
        "Layer 1: etcd",
        "Layer 2: manifests",
        "Layer 3: volumes",
        "holds the same files: True",
        "Migration: a namespace with its data to a second cluster",
        "claim data-ledger-0 is of storage class fast-ssd",
        "first start saw the claim's 4 entries, as backed up: True",
        "no errors were found",
        "data directory ready at",
        "demo finished in",
    ):
        assert line in out, f"{line!r} missing from the demo's output:\n{out[-4000:]}"
