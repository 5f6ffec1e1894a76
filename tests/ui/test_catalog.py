"""The UI's caches and its view of a repository that other processes keep writing to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine.repository import Repository
from kubekeep.ui import catalog
from kubekeep.ui.catalog import LRU, Catalog


def test_lru_computes_once_for_concurrent_callers_and_evicts_the_oldest() -> None:
    calls: list[str] = []
    gate = threading.Event()

    def slow() -> str:
        calls.append("x")
        gate.wait(5)
        return "value"

    cache: LRU[str, str] = LRU(2)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("a", slow))) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join()
    assert results == ["value"] * 5 and calls == ["x"]
    cache.get("b", lambda: "b")
    cache.get("a", lambda: "recomputed")  # a is now the most recent
    cache.get("c", lambda: "c")  # evicts b
    assert cache.peek("a") == "value" and cache.peek("b") is None and cache.peek("c") == "c"


def test_lru_does_not_keep_failures() -> None:
    cache: LRU[str, int] = LRU(4)

    def fail() -> int:
        raise errors.PathNotFound("gone")

    with pytest.raises(errors.PathNotFound):
        cache.get("k", fail)
    assert cache.get("k", lambda: 7) == 7


def test_catalog_sees_snapshots_other_processes_add(
    make_repo: Callable[[str], Repository], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "REFRESH_SECONDS", 0.0)
    repo = make_repo("repo")
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "one.txt").write_text("one\n")
    first = api.backup(repo, str(src))
    ui = Catalog(repo)
    try:
        assert [s.id for s in ui.snapshots()] == [first.id]
        assert [r.name for r in ui.listing(first, "d")] == ["one.txt"]
        # another process (here: another Repository object) backs up new content
        other = api.open_repository(api.RepositoryOptions(str(tmp_path / "repo"), "pw", no_cache=True))
        (src / "d" / "two.txt").write_text("two\n")
        second = api.backup(other, str(src))
        other.close()
        assert [s.id for s in ui.snapshots()] == [first.id, second.id]
        assert ui.read(ui.snapshot(second.id), "d/two.txt", 100) == b"two\n"  # its blobs are in the reloaded index
        assert ui.stat(second, "d").type == "dir" and ui.stat(second, "d/two.txt").size == 4
        with pytest.raises(errors.PathNotFound):
            ui.stat(second, "d/three.txt")
    finally:
        ui.close()


def test_api_stat_and_refresh(make_repo: Callable[[str], Repository], tmp_path: Path) -> None:
    repo = make_repo("repo")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"12345")
    snap = api.backup(repo, str(src))
    assert api.stat(repo, snap.id).type == "dir"
    assert (api.stat(repo, f"{snap.short_id}:/f").type, api.stat(repo, f"{snap.id}:f").size) == ("file", 5)
    with pytest.raises(errors.PathNotFound):
        api.stat(repo, f"{snap.id}:missing")
    viewer = api.open_repository(api.RepositoryOptions(str(tmp_path / "repo"), "pw", no_cache=True))
    try:
        assert b"".join(api.cat(viewer, f"{snap.id}:f")) == b"12345"  # reads the index
        assert api.refresh(viewer) is False  # nothing new
        (src / "g").write_bytes(b"new content")
        newer = api.backup(repo, str(src))
        # its blob is not in the index viewer read: it is found from the new pack's header
        assert b"".join(api.cat(viewer, f"{newer.id}:g")) == b"new content"
        assert api.refresh(viewer) is True
        assert b"".join(api.cat(viewer, f"{newer.id}:g")) == b"new content"
        assert api.refresh(viewer) is False
    finally:
        viewer.close()
