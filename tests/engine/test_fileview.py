"""FileView: seekable reads of a stored multi-chunk file, loading blobs on demand."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine.fileview import FileView
from kubekeep.engine.repository import Repository


@pytest.fixture
def stored(repo: Repository, tmp_path: Path) -> tuple[Repository, bytes]:
    data = random.Random(5).randbytes(6 * 1024 * 1024)  # several ~1 MiB chunks
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(data)
    (src / "sub").mkdir()
    api.backup(repo, str(src))
    return repo, data


def test_sequential_read_loads_each_blob_once(stored: tuple[Repository, bytes]) -> None:
    repo, data = stored
    node = repo.resolve(repo.find_snapshot("latest"), "big.bin")
    assert len(node.content) >= 3
    with FileView(repo, node) as view:
        assert view.seekable() and view.size == len(data)
        assert view.read() == data
        assert view.blob_loads == len(node.content)
        assert view.read(10) == b""  # at the end


def test_seek_and_read_across_blob_boundaries(stored: tuple[Repository, bytes]) -> None:
    repo, data = stored
    node = repo.resolve(repo.find_snapshot("latest"), "big.bin")
    rnd = random.Random(1)
    with FileView(repo, node, cached_blobs=2) as view:
        for _ in range(200):
            pos, n = rnd.randrange(len(data)), rnd.randrange(1, 3 * 1024 * 1024)
            assert view.seek(pos) == pos
            assert view.read(n) == data[pos : pos + n]
            assert view.tell() == min(pos + n, len(data))
        assert view.seek(-100, os.SEEK_END) == len(data) - 100
        assert view.read() == data[-100:]
        view.seek(10)
        assert view.seek(5, os.SEEK_CUR) == 15
        assert view.seek(len(data) + 10) == len(data) + 10  # past the end reads nothing
        assert view.read(5) == b""
        with pytest.raises(ValueError):
            view.seek(-1)
        buffered = io.BufferedReader(view)  # usable as a normal binary file
        buffered.seek(1000)
        assert buffered.read(5000) == data[1000:6000]
    with pytest.raises(ValueError):
        view.read(1)  # closed


def test_refuses_directories_and_size_mismatch(stored: tuple[Repository, bytes]) -> None:
    repo, _ = stored
    snap = repo.find_snapshot("latest")
    with pytest.raises(errors.UsageError, match="not a file"):
        FileView(repo, repo.resolve(snap, "sub"))
    node = repo.resolve(snap, "big.bin")
    node.size += 1
    with pytest.raises(errors.IntegrityError, match="tree records"):
        FileView(repo, node)
