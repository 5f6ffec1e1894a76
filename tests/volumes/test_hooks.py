"""Consistency hooks: commands in the application's containers just before and just after the
snapshot, from the command line and from pod annotations, with timeouts and on-error policies,
their output in the snapshot's report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from testenv.simcsi import SHELL_IMAGE
from tests.cli.helpers import KK, stderr_line

from .conftest import Kube

pytestmark = pytest.mark.cluster


def report(kk: KK) -> dict[str, Any]:
    [snap] = kk.json("snapshots")
    return dict(snap["metadata"]["volume"])


def test_cli_hooks_run_around_the_snapshot(kube: Kube, kk: KK, tmp_path: Any) -> None:
    data = kube.claim("data")
    assert data is not None
    kube.pod("app", "data", image=SHELL_IMAGE)
    snap = kk.backup(
        f"pvc://{kube.ns}/data",
        "--pre-hook",
        "echo flushed > /data/flushed.txt; echo pre-ok",
        "--post-hook",
        "rm /data/flushed.txt && echo thawed >&2",
    )
    hooks = report(kk)["hooks"]
    assert [(h["phase"], h["exit_code"], h["pod"]) for h in hooks] == [
        ("pre", 0, f"{kube.ns}/app"),
        ("post", 0, f"{kube.ns}/app"),
    ]
    assert hooks[0]["stdout"] == "pre-ok\n" and hooks[1]["stderr"] == "thawed\n"
    assert not (data / "flushed.txt").exists()  # the post hook ran on the live volume
    kk.run("restore", snap, "--to", str(tmp_path / "out"))
    assert (tmp_path / "out" / "flushed.txt").read_text() == "flushed\n"  # the pre hook ran before the snapshot


def test_annotation_hooks_and_the_continue_policy(kube: Kube, kk: KK) -> None:
    kube.claim("data")
    kube.pod(
        "db",
        "data",
        image=SHELL_IMAGE,
        annotations={
            "hooks.kubekeep.io/pre-command": json.dumps(
                ["/bin/sh", "-c", "echo checkpoint; echo disk full >&2; exit 3"]
            ),
            "hooks.kubekeep.io/pre-on-error": "continue",
            "hooks.kubekeep.io/post-command": "echo resumed",
            "hooks.kubekeep.io/post-timeout": "5s",
        },
    )
    proc = kk.run("backup", f"pvc://{kube.ns}/data", expect=3)  # finished, with a warning
    assert "exited with 3: disk full" in proc.stderr.decode()
    pre, post = report(kk)["hooks"]
    assert (pre["exit_code"], pre["stdout"], pre["stderr"], pre["origin"]) == (
        3,
        "checkpoint\n",
        "disk full\n",
        f"annotations of pod {kube.ns}/db",
    )
    assert (post["phase"], post["exit_code"], post["stdout"]) == ("post", 0, "resumed\n")


def test_failing_pre_hook_aborts_before_any_snapshot_and_still_thaws(kube: Kube, kk: KK) -> None:
    data = kube.claim("data")
    assert data is not None
    kube.pod("app", "data", image=SHELL_IMAGE)
    contents_before = kube.snapshot_contents()
    line = stderr_line(
        kk.run(
            "-q",
            "backup",
            f"pvc://{kube.ns}/data",
            "--pre-hook",
            "exit 7",
            "--post-hook",
            "touch /data/thawed",
            expect=16,
        )
    )
    assert "pre-snapshot hook" in line and "exited with 7" in line and "on-error: fail" in line
    assert (data / "thawed").exists()  # post hooks run even when the pre hook failed
    assert kube.snapshot_contents() == contents_before  # no snapshot was taken
    assert kk.json("snapshots") == []
    kube.wait_clean()


def test_hook_timeout(kube: Kube, kk: KK) -> None:
    kube.claim("data")
    kube.pod("app", "data", image=SHELL_IMAGE)
    line = stderr_line(
        kk.run("-q", "backup", f"pvc://{kube.ns}/data", "--pre-hook", "sleep 30", "--hook-timeout", "1s", expect=16)
    )
    assert "timed out after 1s" in line
    kube.wait_clean()
