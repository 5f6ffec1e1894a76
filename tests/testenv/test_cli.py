"""``python -m testenv up|env|status|down`` and start-failure cleanup, on real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testenv import processes
from testenv.cluster import Cluster, ClusterError

pytestmark = pytest.mark.cluster


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testenv", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _pids_alive(state: dict) -> list[int]:
    alive = []
    for proc in state["processes"]:
        if processes.ManagedProcess.from_state(proc).alive():
            alive.append(proc["pid"])
    return alive


def test_up_env_status_down_leave_nothing_behind(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    env = dict(os.environ, KUBEKEEP_TESTENV_STATE=str(state_file))
    up = _cli("up", "--nodes", "1", env=env)
    assert up.returncode == 0, up.stderr
    state = json.loads(state_file.read_text())
    run_dir = Path(state["run_dir"])
    try:
        assert up.stdout.strip() == str(run_dir)
        assert len(_pids_alive(state)) == 5  # etcd, apiserver, controller-manager, scheduler, kwok
        assert (run_dir / "logs" / "kube-apiserver.log").stat().st_size > 0

        exports = _cli("env", env=env)
        assert exports.returncode == 0
        lines = dict(
            line.removeprefix("export ").split("=", 1) for line in exports.stdout.splitlines() if "PATH" not in line
        )
        assert lines["KUBECONFIG"] == str(run_dir / "admin.kubeconfig")
        assert lines["KUBEKEEP_TESTENV_ETCD_ENDPOINTS"].startswith("https://127.0.0.1:")
        assert Path(lines["KUBEKEEP_TESTENV_ETCD_KEY"]).is_file()

        # A second `up` on the same state refuses instead of leaking a cluster.
        assert _cli("up", env=env).returncode == 1

        status = _cli("status", env=env)
        assert json.loads(status.stdout)["nodes"] == ["kwok-node-0"]
        kubectl = subprocess.run(
            [state["binaries"]["kubectl"], "--kubeconfig", lines["KUBECONFIG"], "get", "nodes", "-o", "name"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert kubectl.stdout.strip() == "node/kwok-node-0"
    finally:
        down = _cli("down", env=env)
    assert down.returncode == 0, down.stderr
    assert _pids_alive(state) == []
    assert not run_dir.exists()
    assert not state_file.exists()
    assert _cli("env", env=env).returncode == 1


def test_failed_start_reports_the_component_log_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Cluster._apiserver_argv

    def broken(self: Cluster, *args: object) -> list[str]:
        return [*original(self, *args), "--no-such-flag=1"]  # type: ignore[arg-type]

    monkeypatch.setattr(Cluster, "_apiserver_argv", broken)
    cluster = Cluster(nodes=1, progress=lambda _m: None)
    with pytest.raises(ClusterError) as info:
        cluster.start()
    message = str(info.value)
    assert "kube-apiserver exited unexpectedly" in message
    assert "no-such-flag" in message  # tail of the apiserver log
    assert not cluster.run_dir.exists()
    assert all(not p.alive() for p in cluster._procs)
