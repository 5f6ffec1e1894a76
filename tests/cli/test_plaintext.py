"""Nothing of the backed-up data or its names is readable in the repository (or the cache)."""

from __future__ import annotations

import base64
import random
from pathlib import Path

from tests.cli.helpers import KK, init_fast

TOKEN = base64.b64encode(random.Random(42).randbytes(48)).decode()  # 64 random-looking ASCII chars
assert len(TOKEN) == 64
NAME = "kubekeep-marker-name-Qv7Zt.txt"
DIRNAME = "marker-directory-Hx3Pw"
PROSE = "the quick brown kubekeep marker jumps over the lazy dog; "
TINY = "tiny-marker-9K2mLq"


def test_no_plaintext_in_repository(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "source-marker-path-Lk5"
    (src / DIRNAME).mkdir(parents=True)
    (src / DIRNAME / NAME).write_text(TOKEN * 2000)  # compresses extremely well
    (src / "prose.txt").write_text(PROSE * 5000)
    (src / "tiny.txt").write_text(TINY)  # too small to compress
    (src / "random-then-token.bin").write_bytes(random.Random(1).randbytes(300_000) + TOKEN.encode())
    kk.backup(src, "--tag", "marker-tag-Rr8")
    kk.run("check", "--read-data")

    markers = [
        TOKEN,
        TOKEN[:24],
        NAME,
        NAME[:20],
        DIRNAME,
        PROSE[:30],
        "kubekeep marker",
        TINY,
        "source-marker-path-Lk5",
        "marker-tag-Rr8",
        "prose.txt",
        "random-then-token",
    ]
    files = [p for p in Path(kk.repo.location).rglob("*") if p.is_file()]
    names = {p.relative_to(kk.repo.location).parts[0] for p in files}
    assert {"config", "keys", "data", "index", "snapshots"} <= names, names
    cached = [p for p in kk.cache_dir.rglob("*") if p.is_file()]
    assert len(cached) > 2
    for path in files + cached:
        data = path.read_bytes()
        for marker in markers:
            for encoded in (marker.encode(), marker.encode("utf-16-le")):
                assert encoded not in data, f"{marker!r} readable in {path}"
        assert "marker" not in path.name
