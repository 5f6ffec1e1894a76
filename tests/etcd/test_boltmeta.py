"""boltmeta: offline snapshot metadata, checked against what the live etcd reports."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from kubekeep.errors import IntegrityError, UsageError
from kubekeep.etcd.boltmeta import read_snapshot_info

from .conftest import EXPECTED_LIVE, EXPECTED_REVISIONS, N_DELETED, Loaded


def test_counts_match_etcd(loaded: Loaded, snapshot_file: Path) -> None:
    info = read_snapshot_info(snapshot_file)
    assert info.revision == loaded.revision == EXPECTED_REVISIONS + 1  # etcd starts at 1
    assert info.revisions == EXPECTED_REVISIONS
    assert info.live_keys == loaded.live_keys == EXPECTED_LIVE
    assert info.deleted_keys == N_DELETED
    assert info.has_hash and info.hash_ok is True
    assert info.size == snapshot_file.stat().st_size == info.db_size + 32
    assert info.db_size % info.page_size == 0
    assert {"key", "meta", "members", "cluster"} <= set(info.buckets)


def test_meta_members_and_versions_match_status(loaded: Loaded, snapshot_file: Path) -> None:
    info = read_snapshot_info(snapshot_file)
    with loaded.server.client() as c:
        st = c.status()
        members = c.member_list()
    assert info.consistent_index is not None
    assert 0 < info.consistent_index <= st.raft_applied_index
    if loaded.server.tools.version >= (3, 5, 0):
        assert info.term == st.raft_term  # the meta bucket records the term since 3.5
    assert info.cluster_version is not None
    assert info.cluster_version.split(".")[:2] == st.version.split(".")[:2]
    assert [(m["id"], m["name"], m["peer_urls"]) for m in info.members] == [
        (m.id, m.name, m.peer_urls) for m in members
    ]
    d = info.to_dict()
    assert json.loads(json.dumps(d)) == d


def test_agrees_with_etcdutl_status(loaded: Loaded, snapshot_file: Path) -> None:
    etcdutl = loaded.server.tools.etcdutl
    if etcdutl is None:
        pytest.skip("etcd 3.4 has no etcdutl to compare with")  # PATH etcd 3.4: see test_restore
    out = subprocess.run(
        [str(etcdutl), "snapshot", "status", str(snapshot_file), "-w", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    status = json.loads(out.stdout.strip().splitlines()[0])
    info = read_snapshot_info(snapshot_file)
    assert status["revision"] == info.revision
    assert status["totalSize"] == info.db_size
    assert status["totalKey"] == info.live_keys  # etcdutl 3.6 counts live keys


def test_agrees_with_etcdctl_snapshot_save(loaded: Loaded, tmp_path: Path) -> None:
    etcdctl = loaded.server.tools.etcdctl
    assert etcdctl is not None, "etcdctl should sit next to etcd or on PATH"
    srv = loaded.server
    target = tmp_path / "etcdctl.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    subprocess.run(
        [str(etcdctl), "--endpoints", srv.client_url, "--cacert", str(srv.pki.ca),
         "--cert", str(srv.pki.client_cert), "--key", str(srv.pki.client_key),
         "snapshot", "save", str(target)],
        capture_output=True, check=True, timeout=60, env=env,
    )  # fmt: skip
    theirs = read_snapshot_info(target)
    with srv.client() as c:
        ours = read_snapshot_info(c.snapshot().read())
    assert theirs.hash_ok and ours.hash_ok
    for field in ("revision", "revisions", "live_keys", "deleted_keys", "members"):
        assert getattr(theirs, field) == getattr(ours, field), field
    # each snapshot makes etcd commit its backend first, which can grow the bbolt file by a
    # page between the two snapshots (seen: 581632 then 585728); the content is the same
    assert 0 <= ours.db_size - theirs.db_size <= 2 * 4096


def test_input_forms(snapshot_file: Path) -> None:
    data = snapshot_file.read_bytes()
    by_path = read_snapshot_info(str(snapshot_file)).to_dict()
    assert read_snapshot_info(snapshot_file).to_dict() == by_path
    assert read_snapshot_info(data).to_dict() == by_path
    with open(snapshot_file, "rb") as fh:
        assert read_snapshot_info(fh).to_dict() == by_path
        assert not fh.closed  # a caller's file stays open
    r, w = os.pipe()
    with os.fdopen(r, "rb") as pipe, os.fdopen(w, "wb"), pytest.raises(UsageError, match="seekable"):
        read_snapshot_info(pipe)
    with pytest.raises(UsageError, match="cannot open"):
        read_snapshot_info(snapshot_file.parent / "missing.db")


def test_file_without_trailer(snapshot_file: Path) -> None:
    raw = snapshot_file.read_bytes()[:-32]  # like a copied member/snap/db
    info = read_snapshot_info(raw)
    assert (info.has_hash, info.hash_ok) == (False, None)
    assert info.revision == read_snapshot_info(snapshot_file).revision


def test_corrupted_data_byte_fails_hash(snapshot_file: Path) -> None:
    data = bytearray(snapshot_file.read_bytes())
    data[len(data) // 2] ^= 0x40
    with pytest.raises(IntegrityError, match="SHA-256 mismatch"):
        read_snapshot_info(bytes(data))


def test_corrupted_page_header_is_detected_without_hash(snapshot_file: Path) -> None:
    data = bytearray(snapshot_file.read_bytes())
    info = read_snapshot_info(bytes(data))
    ps = info.page_size
    # Relabel every data page: whichever the walk visits first no longer carries its own id.
    for pgid in range(2, info.db_size // ps):
        struct.pack_into("<Q", data, pgid * ps, pgid + 10_000)
    with pytest.raises(IntegrityError, match="corrupt"):
        read_snapshot_info(bytes(data), check_hash=False)


def test_meta_page_fallback_and_both_bad(snapshot_file: Path) -> None:
    data = bytearray(snapshot_file.read_bytes())
    good = read_snapshot_info(bytes(data), check_hash=False)
    data[16] ^= 0xFF  # magic of meta page 0
    fallback = read_snapshot_info(bytes(data), check_hash=False)
    assert fallback.revision == good.revision  # meta page 1 (txid - 1) is still valid
    data[good.page_size + 16] ^= 0xFF  # magic of meta page 1
    with pytest.raises(IntegrityError, match="no valid bbolt meta page"):
        read_snapshot_info(bytes(data), check_hash=False)


def test_truncated_and_foreign_files(snapshot_file: Path) -> None:
    data = snapshot_file.read_bytes()
    with pytest.raises(IntegrityError, match="truncated"):
        read_snapshot_info(data[: len(data) // 2 // 4096 * 4096], check_hash=False)
    with pytest.raises(IntegrityError, match="not an etcd snapshot"):
        read_snapshot_info(io.BytesIO(os.urandom(64 * 1024)))
    with pytest.raises(IntegrityError, match="too small"):
        read_snapshot_info(b"tiny")
