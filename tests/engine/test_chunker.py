"""The chunker: version 2's keyed gear table (C module ``_gearcdc``) cuts exactly by pyfastcdc's
FastCDC 2020 rule, is pinned by test vectors, and differs per key; version-1 repositories keep
pyfastcdc with their seed, so a backup into one dedups against its old snapshots."""

from __future__ import annotations

import hashlib
import random
import struct
import threading
from pathlib import Path

import blake3
import pyfastcdc
import pytest
from pyfastcdc.py.constants import GEAR

from kubekeep import api, errors
from kubekeep.engine import format as fmt
from kubekeep.engine import objects
from kubekeep.engine._gearcdc import GearCDC
from kubekeep.engine.chunker import KEYED_GEAR, SEEDED, Chunker, gear_table
from kubekeep.engine.pack import read_header
from kubekeep.engine.repository import Repository
from kubekeep.engine.tree import FILE
from kubekeep.storage.local import LocalBackend
from tests.cli.helpers import FAST_KDF

KEY = bytes(range(32))
SMALL = {"algorithm": KEYED_GEAR, "min": 16384, "avg": 65536, "max": 262144, "normalization": 1}
DEFAULT = {
    "algorithm": KEYED_GEAR,
    "min": fmt.CHUNK_MIN,
    "avg": fmt.CHUNK_AVG,
    "max": fmt.CHUNK_MAX,
    "normalization": 1,
}


def _lengths(chunker: Chunker, data: bytes) -> list[int]:
    return [len(c) for c in chunker.buffer(data)]


def test_vectors() -> None:
    table = gear_table(KEY)
    assert len(table) == 2048
    assert table[:16].hex() == "a3a03229f7795c26561420c08b1c5a90"
    assert hashlib.sha256(table).hexdigest()[:16] == "e0a85639178d131a"
    assert table == blake3.blake3(KEY, derive_key_context="kubekeep 2026 chunker gear table v1").digest(2048)
    data = random.Random(11).randbytes(2 * 1024 * 1024)
    assert _lengths(Chunker(SMALL, KEY), data) == [
        63988,
        30041,
        115507,
        71113,
        47520,
        124104,
        54404,
        99122,
        131609,
        93773,
        127686,
        77910,
        78973,
        74773,
        92950,
        23421,
        168579,
        18287,
        72377,
        115109,
        20609,
        84894,
        49609,
        95779,
        56499,
        33609,
        69799,
        5108,
    ]
    data = random.Random(12).randbytes(12 * 1024 * 1024)
    assert _lengths(Chunker(DEFAULT, KEY), data) == [
        968650,
        1534811,
        1669567,
        842071,
        2099125,
        2017284,
        1049092,
        1008448,
        1151940,
        241924,
    ]


@pytest.mark.parametrize(
    "sizes",
    [
        (262144, 786432, 8388608, 1),
        (16384, 65536, 262144, 1),
        (64, 256, 1024, 2),
        (2048, 8192, 65536, 0),
        (4096, 16384, 65536, 3),
        (1000, 3000, 9001, 1),
    ],
)
def test_cut_rule_is_pyfastcdcs(sizes: tuple[int, int, int, int]) -> None:
    """Given pyfastcdc's own (seeded) table, the C module cuts exactly where pyfastcdc does."""
    mn, avg, mx, nc = sizes
    seed = 0x5EED_0F_C0FFEE_1234
    table = struct.pack("<256Q", *[g ^ seed for g in GEAR])
    ours = GearCDC(table, mn, avg, mx, nc)
    ref = pyfastcdc.FastCDC(avg, min_size=mn, max_size=mx, normalized_chunking=nc, seed=seed)  # type: ignore[arg-type]
    rnd = random.Random(mn)
    for data in (
        rnd.randbytes(3 * 1024 * 1024 + 7),
        rnd.randbytes(mn),
        rnd.randbytes(mn + 1),
        rnd.randbytes(avg - 1),
        rnd.randbytes(mx + 3),
        bytes(2 * mx + 5),
        b"x",
    ):
        assert ours.cut_buf(data) == [c.offset + c.length for c in ref.cut_buf(data)]


def test_min_and_max_are_respected() -> None:
    chunker = Chunker(SMALL, KEY)
    data = random.Random(3).randbytes(3 * 1024 * 1024) + bytes(1024 * 1024) + random.Random(4).randbytes(100_000)
    lengths = _lengths(chunker, data)
    assert sum(lengths) == len(data)
    assert all(SMALL["min"] <= n <= SMALL["max"] for n in lengths[:-1]) and 0 < lengths[-1] <= SMALL["max"]
    assert SMALL["max"] in lengths  # the zero run is cut at max
    assert _lengths(chunker, b"short") == [5] and _lengths(chunker, b"") == []


def test_different_keys_cut_differently_and_repositories_get_their_own_tables(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(4 * 1024 * 1024)
    a, b = _lengths(Chunker(SMALL, KEY), data), _lengths(Chunker(SMALL, bytes(32)), data)
    assert a != b and sum(a) == sum(b)
    repo = Repository.init(LocalBackend(tmp_path / "r"), "pw", kdf=FAST_KDF, no_cache=True)
    assert repo.config["chunker"]["algorithm"] == KEYED_GEAR == fmt.CHUNKER_ALGORITHM
    assert gear_table(repo.master.identity) != gear_table(KEY)


def test_concurrent_cutting_gives_the_same_cuts() -> None:
    """One chunker is shared by backup threads (the C scan runs without the GIL)."""
    chunker = Chunker(SMALL, KEY)
    data = [random.Random(i).randbytes(2 * 1024 * 1024) for i in range(4)]
    want = [_lengths(chunker, d) for d in data]
    got: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, _lengths(chunker, data[i]))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(4)] == want


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(errors.RepositoryError, match="unsupported chunker algorithm 'rabin'"):
        Chunker({**SMALL, "algorithm": "rabin"}, KEY)
    with pytest.raises(errors.RepositoryError, match="out of range"):
        Chunker({**SMALL, "min": 10}, KEY)
    with pytest.raises(errors.RepositoryError, match="out of range"):
        Chunker({**SMALL, "min": (1 << 64) + 16384}, KEY)  # would wrap to 16384 in C
    with pytest.raises(errors.RepositoryError, match="malformed"):
        Chunker({**SMALL, "max": "lots"}, KEY)
    with pytest.raises(errors.RepositoryError, match="malformed"):
        Chunker([1, 2], KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2048 bytes"):
        GearCDC(b"short", 64, 256, 1024)
    with pytest.raises(ValueError, match="not initialised"):
        GearCDC.__new__(GearCDC).cut_buf(b"data")


def make_version_1(path: Path) -> Repository:
    """A repository as kubekeep 0.1 created it: version 1, the seeded pyfastcdc chunker."""
    repo = Repository.init(LocalBackend(path), "pw", kdf=FAST_KDF, no_cache=True)
    config = dict(repo.config, version=1, chunker={**repo.config["chunker"], "algorithm": SEEDED})
    repo.backend.store("config", objects.seal(repo.cipher, config, fmt.AAD_CONFIG))
    repo.close()
    return Repository.open(LocalBackend(path), "pw", no_cache=True)


def _file_chunk_lengths(repo: Repository, tree_id: bytes, name: str) -> list[int]:
    for node in repo.load_tree(tree_id):
        if node.name == name and node.type == FILE:
            return [repo.index.lookup(b).raw_length for b in node.content]  # type: ignore[union-attr]
    raise AssertionError(f"{name} not in the tree")


def test_version_1_repository_keeps_its_cuts_and_dedups_against_old_snapshots(tmp_path: Path) -> None:
    repo = make_version_1(tmp_path / "v1")
    assert repo.format_version == 1 and repo.config["chunker"]["algorithm"] == SEEDED
    src = tmp_path / "src"
    src.mkdir()
    big = random.Random(6).randbytes(12 * 1024 * 1024)
    (src / "big.bin").write_bytes(big)
    first = api.backup(repo, str(src))

    # cut as kubekeep 0.1 cut it: pyfastcdc, seed from the identity key as 0.1 derived it
    seed = (
        int.from_bytes(blake3.blake3(b"kubekeep chunker seed", key=repo.master.identity).digest(8), "little") >> 2
    ) or 1
    ref = pyfastcdc.FastCDC(
        fmt.CHUNK_AVG, min_size=fmt.CHUNK_MIN, max_size=fmt.CHUNK_MAX, normalized_chunking=1, seed=seed
    )  # type: ignore[arg-type]
    assert _file_chunk_lengths(repo, bytes.fromhex(first.tree), "big.bin") == [c.length for c in ref.cut_buf(big)]
    # version-1 packs keep version 1's unpadded headers (kubekeep 0.1 reads them)
    pack = next(o.name for o in repo.backend.list("data/"))
    data = repo.backend.load(pack)
    (hlen,) = struct.unpack("<I", data[-4:])
    assert hlen < 4096 and read_header(data, repo.cipher, "pack")

    # an edit near the front: only the chunks around it are new
    (src / "big.bin").write_bytes(b"inserted" * 1000 + big)
    second = api.backup(repo, str(src))
    assert second.stats["bytes_new"] < 4 * 1024 * 1024
    repo.close()
