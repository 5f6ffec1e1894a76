"""restore --include/--exclude: a left-out directory takes its contents along."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import KK, backup_api, init_fast


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_restore_filters(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    for rel in ("keep/a.txt", "keep/b.log", "skip/x.txt", "skip/deep/y.txt", "top.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    snap = backup_api(kk, src)

    kk.run("restore", snap, "--to", str(tmp_path / "r1"), "--exclude", "skip")
    assert _files(tmp_path / "r1") == {"keep/a.txt", "keep/b.log", "top.txt"}
    assert not (tmp_path / "r1" / "skip").exists()
    kk.run("restore", snap, "--to", str(tmp_path / "r2"), "--exclude", "*.log", "--exclude", "deep")
    assert _files(tmp_path / "r2") == {"keep/a.txt", "skip/x.txt", "top.txt"}
    kk.run("restore", snap, "--to", str(tmp_path / "r3"), "--include", "*.txt", "--exclude", "x.txt")
    assert _files(tmp_path / "r3") == {"keep/a.txt", "skip/deep/y.txt", "top.txt"}
    assert (tmp_path / "r3" / "skip" / "deep" / "y.txt").read_text() == "skip/deep/y.txt"


def test_data_first_options_apply_to_cluster_restores_only(kk: KK, tmp_path: Path) -> None:
    from tests.cli.helpers import stderr_line

    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    snap = backup_api(kk, src)
    for flags in (["--no-volumes"], ["--volumes-from", snap], ["--volume-parallel", "3"]):
        proc = kk.run("restore", snap, "--to", str(tmp_path / "out"), *flags, expect=2)
        assert "apply to restores into k8s://" in stderr_line(proc)
    assert not (tmp_path / "out").exists()
