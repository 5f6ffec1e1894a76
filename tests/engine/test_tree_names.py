"""Tree names: what a tree may name (validated when decoded, reported by ``check``), and names
that are not UTF-8, stored as bytes and read back exactly."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from kubekeep import api, errors
from kubekeep.engine.pack import DATA, TREE
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot, now_rfc3339
from kubekeep.engine.tree import DIR, FILE, SYMLINK, Node, decode_tree, encode_tree


def raw_tree(nodes: list[dict[str, Any]]) -> bytes:
    """A tree blob as anyone holding a key could write it: no checks, no sorting."""
    return msgpack.packb({"v": 1, "nodes": nodes}, use_bin_type=True)


def hostile_snapshot(
    repo: Repository,
    root: list[dict[str, Any]],
    *,
    subtrees: dict[str, list[dict[str, Any]]] | None = None,
    data: bytes = b"written by the attacker\n",
) -> tuple[Snapshot, bytes]:
    """Store ``root`` (wire nodes; a file node without ``c`` gets ``data`` as content, a dir node
    whose ``st`` is a key of ``subtrees`` gets that tree) through the engine's writer and save a
    snapshot of it. Returns the snapshot and the id of ``data``'s blob."""
    with repo.lock(), repo.writer() as writer:
        blob = writer.save(DATA, data)

        def store(nodes: list[dict[str, Any]]) -> bytes:
            for n in nodes:
                if n["t"] == FILE and "c" not in n:
                    n.update(c=[blob], s=len(data))
                if n["t"] == DIR and isinstance(n.get("st"), str):
                    n["st"] = store((subtrees or {})[n["st"]])
            return writer.save(TREE, raw_tree(nodes))

        tree = store(root)
        writer.flush()
        snap = Snapshot(
            time=now_rfc3339(),
            tree=tree.hex(),
            source={"uri": "test:hostile", "kind": "fs", "host": "attacker", "extra": {}},
        )
        repo.save_snapshot(snap)
    return snap, blob


def _file(name: Any) -> dict[str, Any]:
    return {"n": name, "t": FILE, "m": 0o644, "mt": 0, "s": 0, "c": []}


@pytest.mark.parametrize("name", ["", ".", "..", "../out-evil/x", "a/b", "/abs", "nul\0byte", 7, None])
def test_decoding_rejects_names_no_directory_can_hold(name: Any) -> None:
    data = raw_tree([_file("fine"), _file(name)])
    unsafe = errors.UnsafeTree if isinstance(name, str) else errors.IntegrityError  # not text: malformed
    with pytest.raises(unsafe, match="tree 1234"):
        decode_tree(data, "tree 1234")
    assert issubclass(errors.UnsafeTree, errors.IntegrityError)


def test_decoding_rejects_duplicates_and_bad_nodes() -> None:
    with pytest.raises(errors.UnsafeTree, match="twice"):
        decode_tree(raw_tree([_file("x"), _file("y"), _file("x")]), "t")
    with pytest.raises(errors.UnsafeTree, match="twice"):  # one name as text, once as bytes
        decode_tree(raw_tree([_file("x"), _file(b"x")]), "t")
    for bad in (
        {"t": "fifo"},
        {"m": "rwx"},
        {"c": [1, 2]},
        {"l": "a\0b", "t": SYMLINK},
        {"l": "", "t": SYMLINK},
        {"st": 5, "t": DIR},
        {"a": [1]},
    ):
        with pytest.raises(errors.IntegrityError):
            decode_tree(raw_tree([{**_file("n"), **bad}]), "t")
    assert [n.name for n in decode_tree(raw_tree([_file("b"), _file("a")]), "t")] == ["b", "a"]


def test_names_that_are_not_utf8_round_trip_as_bytes() -> None:
    latin = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
    nodes = [
        Node(name=latin, type=FILE),
        Node(name="plain", type=FILE),
        Node(name="link", type=SYMLINK, target=b"to-\xff".decode("utf-8", "surrogateescape")),
        Node(name="\U0001f600", type=FILE),
        Node(name="\ue000", type=FILE),
    ]
    data = encode_tree(nodes)
    wire = msgpack.unpackb(data, raw=False)["nodes"]
    by_name = {w["n"]: w for w in wire}
    assert b"caf\xe9.txt" in by_name and "plain" in by_name  # bytes only where needed
    assert by_name["link"]["l"] == b"to-\xff"
    # sorted by the bytes of the name (for UTF-8 names the same as by code point)
    keys = [w["n"] if isinstance(w["n"], bytes) else w["n"].encode() for w in wire]
    assert keys == sorted(keys)
    back = decode_tree(data, "t")
    assert sorted((n.name, n.target) for n in back) == sorted((n.name, n.target) for n in nodes)
    assert encode_tree(back) == data  # deterministic: dedup holds


def test_version_1_trees_of_text_names_decode_as_before() -> None:
    old = raw_tree([_file("a"), {"n": "l", "t": SYMLINK, "m": 0o777, "mt": 5, "l": "a"}])
    nodes = decode_tree(old, "t")
    assert [(n.name, n.target) for n in nodes] == [("a", ""), ("l", "a")]
    assert encode_tree(nodes) == old


def test_check_reports_trees_with_unsafe_names(repo: Repository) -> None:
    assert api.check(repo).ok
    hostile_snapshot(
        repo,
        [{"n": "d", "t": DIR, "m": 0o755, "mt": 0, "st": "inner"}],
        subtrees={"inner": [_file("../../out-evil/x")]},
    )
    report = api.check(repo)
    assert not report.ok
    assert any("/d" in e and "out-evil" in e for e in report.errors), report.errors


def test_a_version_1_repository_still_skips_names_that_are_not_utf8(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version-1 readers take tree names as text: such a repository keeps getting text only."""
    import os

    from kubekeep.engine import format as fmt
    from kubekeep.storage.local import LocalBackend
    from tests.cli.helpers import FAST_KDF

    src = os.fsencode(tmp_path / "src")
    os.makedirs(src)
    for name in (b"fine.txt", b"caf\xe9.txt"):
        with open(src + b"/" + name, "wb") as f:
            f.write(name)
    os.symlink(b"to-\xff", src + b"/odd-link")
    monkeypatch.setattr(fmt, "REPOSITORY_VERSION", 1)
    old = Repository.init(LocalBackend(tmp_path / "v1"), "pw", kdf=FAST_KDF, no_cache=True)
    monkeypatch.undo()
    new = Repository.init(LocalBackend(tmp_path / "v2"), "pw", kdf=FAST_KDF, no_cache=True)
    assert (old.format_version, new.format_version) == (1, 2)
    for repo, expected in ((old, ["fine.txt"]), (new, ["caf\udce9.txt", "fine.txt", "odd-link"])):
        snap = api.backup(repo, os.fsdecode(src))
        assert sorted(n.name for n in repo.load_tree(bytes.fromhex(snap.tree))) == expected
        skipped = [w for w in snap.warnings if "UTF-8" in w]
        assert len(skipped) == (2 if repo is old else 0), snap.warnings
        assert any("caf\\xe9.txt" in w for w in skipped) or repo is new
        repo.close()
