"""The page-group chunker for paged content (issue #16)."""

from __future__ import annotations

import io
import random

import pytest

from kubekeep.engine.chunker import PageChunker
from kubekeep.engine.format import PageChunking
from kubekeep.engine.tree import FILE, Node, decode_tree, encode_tree


def _cut(data: bytes, page: int = 4096) -> list[bytes]:
    return [bytes(c) for c in PageChunker(PageChunking.for_page_size(page)).stream(io.BytesIO(data))]


def test_boundaries_on_page_multiples_and_deterministic() -> None:
    data = random.Random(1).randbytes(4096 * 1000 + 32)
    chunks = _cut(data)
    assert b"".join(chunks) == data
    assert all(len(c) == 16384 for c in chunks[:-1]) and len(chunks[-1]) == 4096 * 1000 % 16384 + 32
    assert _cut(data) == chunks


def test_rewritten_page_changes_one_chunk() -> None:
    data = bytearray(random.Random(2).randbytes(4096 * 300))
    before = _cut(bytes(data))
    data[4096 * 123 : 4096 * 124] = random.Random(3).randbytes(4096)
    after = _cut(bytes(data))
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 1


@pytest.mark.parametrize("page", [0, 100, 3000, 1 << 21])
def test_bad_page_size_refused(page: int) -> None:
    with pytest.raises(ValueError):
        PageChunking.for_page_size(page)


def test_chunking_recorded_in_tree() -> None:
    node = Node(name="snapshot.db", type=FILE, chunking=PageChunking(65536, 1))
    (back,) = decode_tree(encode_tree([node]), "t")
    assert back.chunking == PageChunking(65536, 1)
