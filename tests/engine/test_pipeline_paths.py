"""The engine's fast paths give the same results as the plain ones: chunking a large stream
through one reusable buffer, sealing a large stream's chunks in a pool, and restoring by
ranged reads of whole runs of blobs (with a damaged blob failing only its own file)."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api, errors
from kubekeep.engine import backup as backup_mod
from kubekeep.engine import chunker as chunker_mod
from kubekeep.engine.backup import run_backup
from kubekeep.engine.chunker import Chunker
from kubekeep.engine.entries import Entry, EntryType, Importer, SourceInfo
from kubekeep.engine.pack import pack_name
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import run_restore
from kubekeep.files.write import FsExporter
from tests.cli.helpers import assert_same_tree, manifest

PARAMS = {"min": 16 * 1024, "avg": 64 * 1024, "max": 256 * 1024, "normalization": 1}


class _Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read (like a socket or gRPC)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:  # type: ignore[override]
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class _NoReadinto:
    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, n: int) -> bytes:
        return self._f.read(min(n, 100_000))


def _cuts(chunks: Iterator[memoryview]) -> list[bytes]:
    return [bytes(c) for c in chunks]


@pytest.mark.parametrize("algorithm", chunker_mod.ALGORITHMS)
def test_stream_paths_cut_like_the_whole_buffer(monkeypatch: pytest.MonkeyPatch, algorithm: str) -> None:
    monkeypatch.setattr(chunker_mod, "READ_BLOCK", 1024 * 1024)  # many blocks, quickly
    data = random.Random(5).randbytes(5 * 1024 * 1024 + 12345)
    chunker = Chunker({**PARAMS, "algorithm": algorithm}, bytes(range(32)))
    whole = _cuts(chunker.buffer(data))
    assert len(whole) > 40
    assert _cuts(chunker.stream(_Trickle(data, 70_001), size_hint=len(data))) == whole  # reused buffer, short reads
    assert _cuts(chunker.stream(io.BytesIO(data), size_hint=len(data))) == whole  # reused buffer
    assert _cuts(chunker.stream(_Trickle(data, 70_001))) == whole  # unsized: blocks, short reads
    assert _cuts(chunker.stream(_NoReadinto(data))) == whole  # blocks joined
    assert _cuts(chunker.stream(io.BytesIO(data), size_hint=1000)) == whole  # sized as small
    assert _cuts(chunker.stream(io.BytesIO(b""))) == []


class _StreamImporter(Importer):
    """One directory holding the given streams, of unknown size; one may fail part-way."""

    def __init__(self, files: dict[str, bytes], fail: str | None = None) -> None:
        self.files, self.fail = files, fail

    def source(self) -> SourceInfo:
        return SourceInfo(uri="test:streams", kind="test", host="here", extra={})

    def entries(self) -> Iterator[Entry]:
        yield Entry("d", EntryType.DIR, mode=0o755, mtime_ns=1)
        for name, data in self.files.items():
            yield Entry(
                f"d/{name}",
                EntryType.FILE,
                mode=0o644,
                mtime_ns=1,
                size=len(data),
                opener=lambda data=data, name=name: self._open(name, data),
            )

    def _open(self, name: str, data: bytes) -> Any:
        if name != self.fail:
            return io.BytesIO(data)
        stream = _Trickle(data, 1 << 20)
        real = stream.readinto

        def broken(b: Any) -> int:
            if stream._pos >= len(data) // 2:
                raise OSError(5, "Input/output error")
            return real(b)

        stream.readinto = broken  # type: ignore[method-assign]
        return stream


def test_large_streams_are_sealed_in_a_pool(repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_mod, "LARGE_STREAM", 1)  # every file takes the pool path
    monkeypatch.setattr(chunker_mod, "READ_BLOCK", 1024 * 1024)
    rnd = random.Random(9)
    files = {
        "a.bin": rnd.randbytes(3 * 1024 * 1024),
        "b.txt": b"compressible line\n" * 200_000,
        "c.bin": rnd.randbytes(2 * 1024 * 1024),
    }
    files["copy.bin"] = files["a.bin"]
    with repo.lock():
        snap = run_backup(repo, _StreamImporter(files))
    assert snap.stats["bytes_new"] < sum(map(len, files.values())) - len(files["a.bin"]) + 100_000  # copy deduped
    out = tmp_path / "out"
    with repo.lock():
        run_restore(repo, snap, FsExporter(out))
    for name, data in files.items():
        assert (out / "d" / name).read_bytes() == data

    # a stream failing half-way with chunks still in the pool: the file is skipped, others land
    with repo.lock():
        broken = run_backup(
            repo, _StreamImporter({"ok.bin": rnd.randbytes(1 << 20), "bad.bin": rnd.randbytes(4 << 20)}, fail="bad.bin")
        )
    assert any("bad.bin" in w and "read failed" in w for w in broken.warnings)
    assert [n.name for n in repo.load_tree(repo.resolve(broken, "d").subtree)] == ["ok.bin"]
    assert api.check(repo).ok


class _CountingLoads:
    def __init__(self, repo: Repository) -> None:
        self.calls = 0
        self._load = repo.backend.load

    def __call__(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if name.startswith("data/"):
            self.calls += 1
        return self._load(name, offset, length)


def test_restore_reads_runs_of_blobs_and_fails_only_the_damaged_file(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    (src / "many").mkdir(parents=True)
    rnd = random.Random(3)
    for i in range(300):
        (src / "many" / f"f{i:03}.txt").write_bytes(rnd.randbytes(rnd.randrange(1, 20_000)))
    (src / "big.bin").write_bytes(rnd.randbytes(3 * 1024 * 1024))
    snap = api.backup(repo, str(src))

    counting = _CountingLoads(repo)
    monkeypatch.setattr(repo.backend, "load", counting)
    api.restore(repo, snap.id, str(tmp_path / "out"))
    assert_same_tree(manifest(src), manifest(tmp_path / "out"))
    assert counting.calls < 30, f"{counting.calls} reads for 301 files"

    # damage the blob of one small file in the middle of a run
    victim = repo.resolve(snap, "many/f150.txt")
    loc = repo.index.lookup(victim.content[0])
    assert loc is not None
    path = tmp_path / "repo" / pack_name(loc.pack_id)
    raw = bytearray(path.read_bytes())
    raw[loc.offset + loc.length // 2] ^= 0x10
    path.chmod(0o600)
    path.write_bytes(bytes(raw))
    with pytest.raises(errors.IntegrityError, match="1 entry"):
        api.restore(repo, snap.id, str(tmp_path / "again"))
    again = tmp_path / "again" / "many"
    assert not (again / "f150.txt").exists()
    for i in (149, 151, 299):
        assert (again / f"f{i:03}.txt").read_bytes() == (src / "many" / f"f{i:03}.txt").read_bytes()
    assert len(list(again.iterdir())) == 299
