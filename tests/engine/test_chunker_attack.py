"""The chunk-length fingerprinting attack of eprint 2025/532, run against both chunker designs.

Version 1 XORs one secret 64-bit seed into pyfastcdc's public gear table. The cut decision at a
position only looks at hash bits below 48, and bit ``k`` of the gear hash depends only on seed
bits ``0..k``, so the seed can be recovered bit by bit from the chunk lengths of known plaintext
(a storage attacker sees them as blob sizes), pruning candidates at every bit the masks test.
With the seed known, the attacker predicts the cuts of any file: chunk lengths fingerprint it.

Version 2 draws the whole table from a keyed PRF of the repository key: the same known-plaintext
cut lengths fit no seed of that form, and tell nothing about the cuts of another file.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from pyfastcdc.py.constants import GEAR, MASKS

from kubekeep.engine.chunker import SEEDED, Chunker, legacy_seed
from kubekeep.engine.repository import Repository
from kubekeep.storage.local import LocalBackend
from tests.cli.helpers import FAST_KDF

#: the cut condition looks at hash bits below this (the masks' highest bit is 47)
CUT_BITS = 48
#: bounded brute force: the attack gives up beyond this many live candidates
MAX_CANDIDATES = 1 << 16


def _masks(params: dict[str, Any]) -> tuple[int, int]:
    bits = math.floor(math.log2(int(params["avg"])) + 0.5)
    nc = int(params.get("normalization", 1))
    return MASKS[bits + nc], MASKS[bits - nc]


def _lengths(chunker: Chunker, data: bytes) -> list[int]:
    return [len(c) for c in chunker.buffer(data)]


def _cut_windows(data: bytes, lengths: list[int], params: dict[str, Any]) -> tuple[np.ndarray, list[int]]:
    """For every content-defined cut: the public gear values of the 48 bytes ending at the byte
    the cut was decided on (row j = j bytes before it), and the mask that was tested there.

    pyfastcdc's chunk of length L ends just before byte L, whose hash decided the cut; below
    ``avg`` (or the remaining length, if smaller) the stricter mask applies."""
    mask_s, mask_l = _masks(params)
    rows, masks = [], []
    start = 0
    for length in lengths[:-1]:  # the last chunk ends with the data
        if length < int(params["max"]):  # a chunk of max length was forced
            center = min(int(params["avg"]), len(data) - start)
            masks.append(mask_s if length < (center // 2) * 2 else mask_l)
            pos = start + length
            rows.append([GEAR[data[pos - j]] for j in range(CUT_BITS)])
        start += length
    return np.array(rows, dtype=np.uint64), masks


def recover_seed(data: bytes, lengths: list[int], params: dict[str, Any]) -> list[int]:
    """Every value of the seed's low 48 bits consistent with the cuts (empty: no seed fits)."""
    windows, masks = _cut_windows(data, lengths, params)
    assert len(masks) >= 8, "too few cuts to attack"
    cands = np.zeros(1, dtype=np.uint64)
    for k in range(CUT_BITS):
        cands = np.concatenate([cands, cands | np.uint64(1 << k)])
        tested = [i for i, m in enumerate(masks) if m >> k & 1]
        if tested:
            w = windows[tested, : k + 1]
            h = np.zeros((len(cands), len(tested)), dtype=np.uint64)
            for j in range(k + 1):  # bit k of sum_j (gear ^ seed) << j; uint64 wraps like the hash
                h += (w[None, :, j] ^ cands[:, None]) << np.uint64(j)
            cands = cands[((h >> np.uint64(k)) & np.uint64(1) == 0).all(axis=1)]
        assert len(cands) <= MAX_CANDIDATES
        if not len(cands):
            break
    return [int(c) for c in cands]


def _predicted_lengths(seed_bits: int, data: bytes, params: dict[str, Any]) -> list[int]:
    """The attacker's forecast: pyfastcdc with the recovered bits (higher bits do not matter)."""
    import pyfastcdc

    cdc = pyfastcdc.FastCDC(
        int(params["avg"]),
        min_size=int(params["min"]),
        max_size=int(params["max"]),
        normalized_chunking=int(params.get("normalization", 1)),
        seed=seed_bits or (1 << 63),
    )  # type: ignore[arg-type]
    return [c.length for c in cdc.cut_buf(data)]


@pytest.fixture(scope="module")
def known_files() -> tuple[bytes, bytes]:
    rnd = random.Random(2025_532)
    return rnd.randbytes(24 * 1024 * 1024), rnd.randbytes(12 * 1024 * 1024)


def _repo_chunker(tmp_path: Any, version: int) -> tuple[Chunker, dict[str, Any], bytes]:
    repo = Repository.init(LocalBackend(tmp_path / f"repo{version}"), "pw", kdf=FAST_KDF, no_cache=True)
    if version == 1:  # what kubekeep 0.1 wrote
        repo.config["version"] = 1
        repo.config["chunker"]["algorithm"] = SEEDED
    params = dict(repo.config["chunker"])
    return Chunker(params, repo.master.identity), params, repo.master.identity


def test_version_1_seed_is_recovered_from_known_plaintext_and_fingerprints_other_files(
    tmp_path: Any, known_files: tuple[bytes, bytes]
) -> None:
    known, other = known_files
    chunker, params, id_key = _repo_chunker(tmp_path, 1)
    candidates = recover_seed(known, _lengths(chunker, known), params)
    assert legacy_seed(id_key) & ((1 << CUT_BITS) - 1) in candidates
    actual = _lengths(chunker, other)
    assert len(actual) > 8
    # every surviving candidate forecasts the other file's chunk lengths exactly
    assert all(_predicted_lengths(c, other, params) == actual for c in candidates)


def test_keyed_gear_table_defeats_the_seed_recovery(tmp_path: Any, known_files: tuple[bytes, bytes]) -> None:
    known, other = known_files
    chunker, params, _ = _repo_chunker(tmp_path, 2)
    assert params["algorithm"] != SEEDED
    candidates = recover_seed(known, _lengths(chunker, known), params)
    assert candidates == []  # no seed of version 1's form fits the cuts
    actual = _lengths(chunker, other)
    assert not any(_predicted_lengths(c, other, params) == actual for c in candidates)
    # and the cuts themselves differ from any other repository's
    other_chunker, _, _ = _repo_chunker(tmp_path / "b", 2)
    assert _lengths(other_chunker, other) != actual
