"""Run records and ``kubekeep metrics``: every backup, forget, prune and check leaves a record,
failures included; the exporter's output parses as the Prometheus text format and its values
match the repository."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubekeep import api
from kubekeep.engine import runs
from tests.cli.helpers import KK, init_fast


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_runs_are_recorded_and_metrics_match_the_repository(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("one\n")
    first = kk.json("backup", str(src))
    (src / "b.bin").write_bytes(b"x" * 100_000)
    second = kk.json("backup", str(src))
    kk.run("backup", str(tmp_path / "missing"), expect=None)  # fails: no such directory
    kk.run("check", "--read-data-subset", "1/2")
    kk.run("forget", "--keep-last", "5")
    kk.run("backup", str(src), "--tag", "nightly", "--tag", "b")

    repo = api.open_repository(api.RepositoryOptions(str(kk.repo.location), kk.password, no_cache=True))
    records, damaged = runs.load_all(repo)
    assert not damaged
    assert [(r.command, r.outcome) for r in records] == [
        ("backup", "success"),
        ("backup", "success"),
        ("backup", "failure"),
        ("check", "success"),
        ("forget", "success"),
        ("backup", "success"),
    ]
    assert records[-1].tags == ["b", "nightly"]
    assert records[1].snapshot == second["id"] and records[1].stats["files"] == 2
    assert records[2].source == f"fs:{tmp_path / 'missing'}" and "missing" in records[2].error

    text = kk.out("metrics", "--once")
    m = _samples(text)
    src_labels = (("host", socket.gethostname()), ("kind", "fs"), ("source", f"fs:{src}"), ("tags", ""))
    snap = repo.find_snapshot(second["id"])
    assert m[("kubekeep_snapshots", src_labels)] == 2
    assert m[("kubekeep_last_snapshot_files", src_labels)] == 2
    assert m[("kubekeep_last_snapshot_added_bytes", src_labels)] == snap.stats["bytes_stored"]
    assert abs(m[("kubekeep_last_success_timestamp_seconds", src_labels)] - _epoch(snap.time)) < 0.001
    failed = (("command", "backup"), ("kind", ""), ("source", f"fs:{tmp_path / 'missing'}"), ("tags", ""))
    assert m[("kubekeep_last_run_success", failed)] == 0
    ok = (("command", "backup"), ("kind", "fs"), ("source", f"fs:{src}"), ("tags", ""))
    assert m[("kubekeep_last_run_success", ok)] == 1 and m[("kubekeep_recorded_runs", ok)] == 2
    assert m[("kubekeep_last_check_success", ())] == 1
    sizes = {t: n for (name, labels), n in m.items() if name == "kubekeep_repository_size_bytes" for _, t in labels}
    assert sizes["data"] == sum(o.size for o in repo.backend.list("data/"))
    assert sizes["runs"] > 0 and m[("kubekeep_up", ())] == 1
    tagged = (("host", socket.gethostname()), ("kind", "fs"), ("source", f"fs:{src}"), ("tags", "b,nightly"))
    assert m[("kubekeep_snapshots", tagged)] == 1  # tagged snapshots are a series of their own
    assert first["id"] != second["id"]
    repo.close()


def test_the_exporter_serves_over_http_and_says_when_it_cannot_read(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    (tmp_path / "src").mkdir()
    kk.backup(tmp_path / "src")
    port = _free_port()
    proc = kk.popen("metrics", "--listen", f"127.0.0.1:{port}", "--interval", "1s")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the exporter did not start"
                time.sleep(0.2)
        assert _samples(text)[("kubekeep_up", ())] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_wrong_password_is_a_one_line_error(kk: KK) -> None:
    init_fast(kk.repo, kk.password)
    proc = kk.run("metrics", "--once", env={"KUBEKEEP_PASSWORD": "wrong"}, expect=12)
    assert proc.stderr.decode().count("\n") == 1


def test_prune_keeps_the_newest_records_of_each_command_and_source(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    repo = api.open_repository(api.RepositoryOptions(str(kk.repo.location), kk.password, no_cache=True))
    for i in range(5):
        runs.save(repo, runs.RunRecord("backup", source="fs:/a", finished=f"2026-01-0{i + 1}T00:00:00Z"))
    runs.save(repo, runs.RunRecord("check", finished="2026-01-01T00:00:00Z"))
    assert runs.prune(repo, keep=2) == 3
    left, _ = runs.load_all(repo)
    assert [(r.command, r.finished[:10]) for r in left] == [
        ("check", "2026-01-01"),
        ("backup", "2026-01-04"),
        ("backup", "2026-01-05"),
    ]
    repo.close()


def _epoch(rfc3339: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("bad", ["nonsense", "host:99999"])
def test_a_bad_listen_address_is_refused(kk: KK, bad: str) -> None:
    init_fast(kk.repo, kk.password)
    proc = kk.run("metrics", "--listen", bad, expect=2)
    assert "--listen" in proc.stderr.decode()


def test_records_are_sealed(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    (tmp_path / "secret-name-dir").mkdir()
    kk.backup(tmp_path / "secret-name-dir")
    [name] = list(kk.repo.objects("runs/"))
    data = kk.repo.read(name)
    assert b"secret-name-dir" not in data and b"backup" not in data
    with pytest.raises(ValueError):  # not JSON, not even text: sealed
        json.loads(data)
