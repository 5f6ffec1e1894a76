"""Runs that do not finish: killed (SIGKILL) at each stage, interrupted (Ctrl-C, SIGTERM), or
timed out. Whatever a killed run leaves, ``kubekeep cleanup`` removes; an interrupted or failed
run removes it itself; the repository never gets a half snapshot."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from kubekeep.kube import cleanup
from testenv.simcsi import SimCSI
from tests.cli.helpers import KK, kill_hard, stderr_line, wait_for

from .conftest import SNAP, Kube

pytestmark = pytest.mark.cluster


def _has(kube: Kube, plural: str, api: str = "v1", purpose: str = "") -> bool:
    selector = f"{cleanup.RUN_LABEL}" + (f",{cleanup.PURPOSE_LABEL}={purpose}" if purpose else "")
    path = f"/api/v1/namespaces/{kube.ns}/{plural}" if api == "v1" else f"/apis/{api}/namespaces/{kube.ns}/{plural}"
    return bool(kube.rest.get(path, labelSelector=selector)["items"])


def _packs(kk: KK) -> int:
    data = Path(kk.repo.location) / "data"
    return sum(1 for p in data.rglob("*") if p.is_file() and not p.name.startswith(".")) if data.exists() else 0


def _stage(kube: Kube, kk: KK, sim: SimCSI, stage: str) -> Callable[[], bool]:
    """Set the simulation up so the run lingers in ``stage``; the check that it is there."""
    if stage == "snapshot pending":
        sim.settings.hold_snapshots = True
        return lambda: _has(kube, "volumesnapshots", SNAP)
    if stage == "helper starting":
        sim.settings.pod_start_delay = 60.0
        return lambda: _has(kube, "pods", purpose="agent")
    assert stage == "transfer"
    return lambda: _packs(kk) > 0


@pytest.mark.parametrize("stage", ["snapshot pending", "helper starting", "transfer"])
def test_sigkill_at_each_stage_leaves_only_what_cleanup_removes(stage: str, kube: Kube, kk: KK, simcsi: SimCSI) -> None:
    data = kube.claim("data")
    assert data is not None
    size = 160 if stage == "transfer" else 1
    (data / "big.bin").write_bytes(os.urandom(size * 1024 * 1024))
    reached = _stage(kube, kk, simcsi, stage)
    proc = kk.popen("backup", f"pvc://{kube.ns}/data")
    try:
        assert wait_for(reached, timeout=60, interval=0.05), f"the run never reached: {stage}"
    finally:
        kill_hard(proc)
    simcsi.settings.__init__()  # type: ignore[misc]
    left = kube.labelled()
    assert left, "a killed run leaves its objects behind (otherwise this test proves nothing)"

    assert kk.json("snapshots") == []  # no half snapshot
    kk.run("check")  # and a valid repository

    out = kk.run("cleanup", "--namespace", kube.ns).stdout.decode()
    assert all(f"{name.split('/')[1]}" in out for name in left if not name.startswith("persistentvolumes/")), out
    kube.wait_clean()
    assert "nothing to clean up" in kk.run("cleanup", "--namespace", kube.ns).stderr.decode()


@pytest.mark.parametrize("sig, stage", [(signal.SIGINT, "snapshot pending"), (signal.SIGTERM, "helper starting")])
def test_interrupted_run_removes_its_objects_itself(sig: int, stage: str, kube: Kube, kk: KK, simcsi: SimCSI) -> None:
    data = kube.claim("data")
    assert data is not None
    (data / "f.txt").write_text("x")
    reached = _stage(kube, kk, simcsi, stage)
    proc = kk.popen("backup", f"pvc://{kube.ns}/data")
    try:
        assert wait_for(reached, timeout=60, interval=0.05), f"the run never reached: {stage}"
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=60) == 130
    finally:
        kill_hard(proc)
    kube.wait_clean()  # without kubekeep cleanup
    assert kk.json("snapshots") == []


def test_snapshot_timeout_fails_with_progress_and_cleans_up(kube: Kube, kk: KK, simcsi: SimCSI) -> None:
    kube.claim("data")
    simcsi.settings.hold_snapshots = True
    proc = kk.run("backup", f"pvc://{kube.ns}/data", "--snapshot-timeout", "6s", expect=16)
    err = proc.stderr.decode()
    assert "waiting for VolumeSnapshot" in err  # progress while waiting
    assert "was not ready after 6s" in err.splitlines()[-1]
    kube.wait_clean()


def test_failed_snapshot_fails_at_once_with_the_drivers_error(kube: Kube, kk: KK, simcsi: SimCSI) -> None:
    kube.claim("data")
    simcsi.settings.snapshot_error = "quota exceeded for snapshots"
    line = stderr_line(kk.run("-q", "backup", f"pvc://{kube.ns}/data", expect=16))
    assert line.startswith("error: ") and "quota exceeded for snapshots" in line, line
    kube.wait_clean()
