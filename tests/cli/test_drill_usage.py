"""``kubekeep drill`` refuses what it cannot drill with a one-line reason before it touches a
cluster; and the scratch names and namespace mappings it makes (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubekeep import errors
from kubekeep.api.restore_drills import DrillOptions, _mapping, scratch_name
from tests.cli.helpers import KK, stderr_line, write


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["latest", "--to", "k8s://"], 14, "no manifests snapshot found for 'latest'"),
        (["latest", "--to", "k8s://", "--tag", "nightly"], 14, "no manifests snapshot tagged nightly found"),
        (["SNAP", "--to", "/tmp/x"], 2, "a drill restores into a cluster: --to k8s://[CONTEXT]"),
        (["SNAP", "--to", "k8s://"], 2, "is a fs snapshot: a drill restores manifests snapshots"),
        (["SNAP:/etc", "--to", "k8s://"], 2, "name a snapshot, not a path in it"),
        (["SNAP", "--to", "k8s://", "--tag", "x"], 2, "--tag chooses among snapshots for 'latest'"),
        (["SNAP", "--to", "k8s://", "--timeout", "soon"], 2, "bad duration 'soon'"),
        (["SNAP", "--to", "k8s://", "--namespace-map", "a"], 2, "expected OLD=NEW"),
    ],
)
def test_refused_with_a_reason(kk: KK, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    kk.run("init")
    write(tmp_path / "src" / "a.txt", "a")
    snap = kk.backup(tmp_path / "src")
    args = [a.replace("SNAP", snap[:8]) for a in args]
    proc = kk.run("drill", *args, expect=code)
    assert message in stderr_line(proc)


def test_scratch_names_fit_a_namespace_name() -> None:
    assert scratch_name("shop", "1a2b3c4d") == "shop-drill-1a2b3c4d"
    long = scratch_name("n" * 60 + "-x", "1a2b3c4d")
    assert len(long) == 63 and long.endswith("-drill-1a2b3c4d")
    assert scratch_name("a" * 47 + "-b", "1a2b3c4d") == "a" * 47 + "-drill-1a2b3c4d"  # no "--"


def test_namespace_mappings() -> None:
    assert _mapping(["shop", "db"], DrillOptions(), "t") == {"shop": "shop-drill-t", "db": "db-drill-t"}
    assert _mapping(["shop", "db"], DrillOptions(namespace_map={"db": "db-copy"}), "t") == {
        "shop": "shop-drill-t",
        "db": "db-copy",
    }
    assert _mapping(["shop"], DrillOptions(same_names=True), "t") == {"shop": "shop"}
    with pytest.raises(errors.UsageError, match="names other, which this drill does not restore"):
        _mapping(["shop"], DrillOptions(namespace_map={"other": "x"}), "t")
    with pytest.raises(errors.UsageError, match="same namespace"):
        _mapping(["a", "b"], DrillOptions(namespace_map={"a": "b"}, same_names=True), "t")
    with pytest.raises(errors.UsageError, match="not a valid namespace name"):
        _mapping(["Shop"], DrillOptions(same_names=True), "t")


def test_the_restore_a_drill_makes_is_a_real_one() -> None:
    from kubekeep.connectors.k8s.options import ManifestsDestinationOptions

    for restore in (ManifestsDestinationOptions(dry_run=True), ManifestsDestinationOptions(existing="update")):
        with pytest.raises(errors.UsageError, match="no dry run, no --existing update"):
            DrillOptions(restore=restore)
    assert DrillOptions(restore=ManifestsDestinationOptions(restore_status=True)).restore is not None


@pytest.mark.parametrize(("seconds", "text"), [(600, "10m"), (90, "1m30s"), (12.5, "12.5s"), (3600, "1h"), (3, "3s")])
def test_durations_read_back_as_they_were_given(seconds: float, text: str) -> None:
    from kubekeep.units import human_duration, parse_timeout

    assert human_duration(seconds) == text and parse_timeout(text) == seconds
