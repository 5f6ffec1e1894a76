"""The etcd recovery window on the snapshot list, and the delta segments folded out of it, over
plain HTTP: etcd full snapshots and ``etcd follow`` delta segments are written directly (their
metadata is all the timeline reads), without an etcd."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from tests.ui.conftest import UIServer

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
ROW = re.compile(r"<tr data-search=")
HOSTILE = '<script>alert("x")</script>'


def _html(ui: UIServer, path: str, status: int = 200) -> str:
    code, _, body = ui.get(path)
    assert code == status, f"{path}: HTTP {code}: {body[:400]!r}"
    return body.decode()


def _ns(seconds: float) -> int:
    return int((T0 + dt.timedelta(seconds=seconds)).timestamp() * 1e9)


def _time(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@dataclass
class Writer:
    """Saves etcd snapshots and delta segments sharing one tree (that of a tiny fs backup)."""

    repo: Repository
    tree: str

    def _save(self, kind: str, at: float, metadata: dict[str, Any], **fields: Any) -> Snapshot:
        snap = Snapshot(
            time=_time(at),
            tree=self.tree,
            source={"uri": "etcd://10.0.0.1:2379", "kind": kind, "host": "cp-1", "extra": {}},
            hostname="cp-1",
            metadata=metadata,
            **fields,
        )
        self.repo.save_snapshot(snap)
        return snap

    def full(self, cluster: str, revision: int, at: float, chain: str) -> Snapshot:
        meta = {"etcd": {"revision": revision, "revision_after": revision, "cluster_id": cluster}}
        return self._save("etcd", at, meta, chain=chain, tags=["etcd"])

    def delta(self, cluster: str, after: int, upto: int, since: float, until: float, extends: str) -> Snapshot:
        meta = {
            "etcd_delta": {
                "format": 1,
                "cluster_id": cluster,
                "after_revision": after,
                "upto_revision": upto,
                "since_ns": _ns(since),
                "until_ns": _ns(until),
                "events": upto - after,
                "outage_from_ns": None,
                "outage_until_ns": None,
                "endpoint": "10.0.0.1:2379",
            }
        }
        return self._save("etcd-delta", until, meta, extends=extends, tags=["etcd"])


@pytest.fixture
def writer(make_repo: Callable[[str], Repository], tmp_path: Path) -> Writer:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    repo = make_repo("repo")
    return Writer(repo, api.backup(repo, str(src)).tree)


def test_no_section_without_etcd_snapshots(writer: Writer, ui_server: Callable[..., UIServer]) -> None:
    page = _html(ui_server(writer.repo), "/")
    assert "etcd-recovery" not in page and 'id="attached"' not in page
    assert len(ROW.findall(page)) == 1


def test_recovery_window_per_cluster(writer: Writer, ui_server: Callable[..., UIServer]) -> None:
    first = writer.full("c0ffee", 100, 0, chain="chain-a")
    for i in range(6):  # (100, 160] in six 20 s segments
        writer.delta("c0ffee", 100 + 10 * i, 110 + 10 * i, 20 * i, 20 * (i + 1), extends="chain-a")
    newest = writer.full("c0ffee", 300, 3600, chain="chain-b")  # revisions 161..299 uncovered: a gap
    writer.delta(HOSTILE, 5, 9, 0, 20, extends="chain-x")  # segments without a full snapshot
    ui = ui_server(writer.repo)
    page = _html(ui, "/")
    section = page[page.index('id="etcd-recovery"') : page.index("</section>")]
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr data-cluster="([^"]*)"[^>]*>(.*?)</tr>', section, re.S)}
    assert set(rows) == {"c0ffee", "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"}
    ok = rows["c0ffee"]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", ok, re.S)
    assert "2026-12-01 12:00:00Z" in cells[1] and "revision 100" in cells[1]
    assert "2026-12-01 13:00:00Z" in cells[2] and "revision 300" in cells[2]
    assert 'title="2026-12-01T13:00:00.000Z"' in cells[2]
    assert [re.sub(r"<[^>]+>", "", c) for c in cells[3:6]] == ["2", "6", "1"]
    assert f'href="/s/{newest.id}/tree/"' in cells[6] and first.id not in ok
    bad = rows["&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"]
    assert "none: no point can be restored" in bad and "<script>" not in page
    # the newest full snapshot's link works
    assert _html(ui, f"/s/{newest.id}/tree/")


def test_delta_segments_are_folded_out_of_the_list(writer: Writer, ui_server: Callable[..., UIServer]) -> None:
    writer.full("c0ffee", 100, 0, chain="chain-a")
    deltas = [writer.delta("c0ffee", 100 + i, 101 + i, i, i + 1, extends="chain-a") for i in range(30)]
    ui = ui_server(writer.repo)
    page = _html(ui, "/")
    assert len(ROW.findall(page)) == 2  # the fs and the full etcd snapshot
    assert 'Snapshots <span class="muted">2</span>' in page
    assert "And 30 attached delta segment(s)" in page and 'href="/?all=1"' in page
    assert deltas[0].id not in page
    shown = _html(ui, "/?all=1")
    assert len(ROW.findall(shown)) == 32 and all(d.short_id in shown for d in deltas)
    assert "Listing the 30 attached delta segment(s) too" in shown and 'name="all" value="1"' in shown
    by_kind = _html(ui, "/?kind=etcd-delta")
    assert len(ROW.findall(by_kind)) == 30 and 'id="attached"' not in by_kind
    etcd_only = _html(ui, "/?kind=etcd")
    assert len(ROW.findall(etcd_only)) == 1
    # the attached segment page works like any snapshot's
    assert _html(ui, f"/s/{deltas[0].id}/tree/")


def test_hostile_snapshot_fields_are_escaped(writer: Writer, ui_server: Callable[..., UIServer]) -> None:
    writer.full(HOSTILE, 7, 0, chain=HOSTILE)
    writer.delta(HOSTILE, 7, 9, 0, 5, extends=HOSTILE)
    ui = ui_server(writer.repo)
    for path in ("/", "/?all=1"):
        page = _html(ui, path)
        assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_snapshot_pages_show_revisions_and_the_full_snapshot_a_segment_follows(
    writer: Writer, ui_server: Callable[..., UIServer]
) -> None:
    full = writer.full("c0ffee", 100, 0, chain="chain-a")
    delta = writer.delta("c0ffee", 100, 142, 0, 20, extends="chain-a")
    idle = writer.delta("c0ffee", 142, 142, 20, 320, extends="chain-a")
    orphan = writer.delta("c0ffee", 500, 510, 0, 20, extends="chain-gone")
    ui = ui_server(writer.repo)
    assert "revision 100" in _html(ui, f"/s/{full.id}/tree/")
    page = _html(ui, f"/s/{delta.id}/tree/")
    assert "revisions 101–142, 42 events" in page and f'follows <a class="mono" href="/s/{full.id}/tree/">' in page
    assert "revision 142, no change, 0 events" in _html(ui, f"/s/{idle.id}/tree/")
    assert "follows a snapshot no longer in the repository" in _html(ui, f"/s/{orphan.id}/tree/")


def test_malformed_etcd_metadata_is_shown_as_nothing(writer: Writer, ui_server: Callable[..., UIServer]) -> None:
    odd = writer._save("etcd-delta", 0, {"etcd_delta": {"after_revision": "<b>1</b>", "upto_revision": [2]}})
    odder = writer._save("etcd", 0, {"etcd": ["revision", 3]})
    ui = ui_server(writer.repo)
    for snap in (odd, odder):
        page = _html(ui, f"/s/{snap.id}/tree/")
        meta = re.search(r'<p class="meta">(.*?)</p>', page, re.S)
        assert meta is not None and "revision" not in meta.group(1) and "<b>1</b>" not in page
    assert "etcd-recovery" not in _html(ui, "/")  # no cluster id: no timeline
