"""restore --storage-class-map, --image-map, --transform: bad flags and bad rule files are one-line
usage errors (exit 2) before anything is restored, and they apply to manifests snapshots only.
Their effect on objects is tested against the local control plane (tests/e2e/test_transforms_cluster.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import KK, backup_api, init_fast


@pytest.fixture
def snap(kk: KK, tmp_path: Path) -> str:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    return backup_api(kk, src)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--storage-class-map", "fast"], "bad storage class mapping 'fast': expected OLD=NEW"),
        (["--image-map", "nginx:=x"], "bad image mapping 'nginx:=x': a prefix cannot end with ':' or '@'"),
        (["--transform", "{missing}"], "{missing}: cannot read the transform file: No such file or directory"),
        (["--transform", "{dir}"], "{dir}: the transform file is not a regular file"),
        (["--transform", "{bad}"], "{bad}: rule 2: jsonPatch[0]: unknown op 'rplace' (one of add, remove, "),
        (["--image-map", "a=b"], "is a fs snapshot: --image-map apply(ies) to manifests snapshots"),
        (["--transform", "{good}"], "is a fs snapshot: --transform apply(ies) to manifests snapshots"),
    ],
)
def test_bad_transforms_are_usage_errors(kk: KK, snap: str, tmp_path: Path, flags: list[str], message: str) -> None:
    (tmp_path / "bad.yaml").write_text(
        "rules:\n  - mergePatch: {data: {a: b}}\n  - jsonPatch: [{op: rplace, path: /spec, value: 1}]\n"
    )
    (tmp_path / "good.yaml").write_text("rules: [{mergePatch: {data: {a: b}}}]\n")
    names = {
        "missing": tmp_path / "nope.yaml",
        "dir": tmp_path,
        "bad": tmp_path / "bad.yaml",
        "good": tmp_path / "good.yaml",
    }
    flags = [f.format(**names) for f in flags]
    result = kk.run("restore", snap, "--to", str(tmp_path / "out"), *flags, expect=2)
    err = result.stderr.decode().strip()
    assert message.format(**names) in err and "\n" not in err
    assert not (tmp_path / "out").exists()
