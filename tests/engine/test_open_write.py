"""The compiled read and restore path (engine/_seal ``open_blobs`` and ``write_files``): blobs
written by the Python definitions (older repositories) read back; every kind of damage fails its
own blob and no other; restored files are created new, never through a symlink, with holes,
modes and times, and a file that cannot be written is removed again."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubekeep import errors
from kubekeep.engine import _seal, compression
from kubekeep.engine.pack import DATA, TREE, BlobEntry, blob_aad
from kubekeep.engine.repository import Repository

TEXT = b"kind: Deployment\nmetadata:\n  name: web\n" * 900
RANDOM = os.urandom(50_000)


def python_sealed(repo: Repository, data: bytes, blob_type: int, level: int, blob_id: bytes | None = None) -> bytes:
    """A blob as the Python write path (before engine/_seal) stored it."""
    blob_id = repo.master.blob_id(data) if blob_id is None else blob_id
    return bytes(repo.cipher.encrypt(compression.pack_payload(data, level), blob_aad(blob_type, blob_id)))


def sealed_payload(repo: Repository, payload: bytes, blob_id: bytes) -> bytes:
    """A blob whose decrypted payload (method byte first) is ``payload``."""
    return bytes(repo.cipher.encrypt(payload, blob_aad(DATA, blob_id)))


@pytest.mark.parametrize("level", [0, 1, 3, 19])
def test_blobs_the_python_path_wrote_read_back(repo: Repository, level: int) -> None:
    datas = [b"", b"short", bytes(64), TEXT, RANDOM, RANDOM[:9_000] + bytes(1_000)]
    types = [DATA, TREE] * 3
    span, entries = bytearray(b"pad"), []
    for data, blob_type in zip(datas, types, strict=False):
        blob = python_sealed(repo, data, blob_type, level)
        entries.append(BlobEntry(blob_type, repo.master.blob_id(data), len(span), len(blob), len(data)))
        span += blob + b"gap"
    assert repo.decode_blobs(bytes(span), entries) == datas
    assert repo.decode_blobs(memoryview(span), entries[2:4]) == datas[2:4]


def test_each_kind_of_damage_fails_its_blob_alone(repo: Repository) -> None:
    good = python_sealed(repo, TEXT, DATA, 3)
    good_id = repo.master.blob_id(TEXT)
    flipped = bytearray(good)
    flipped[40] ^= 1
    other_id = repo.master.blob_id(b"something else")
    cases: list[tuple[str, bytes, BlobEntry]] = []

    def case(why: str, blob: bytes, blob_id: bytes = good_id, raw_length: int = len(TEXT), **kw: int) -> None:
        cases.append((why, blob, BlobEntry(kw.get("blob_type", DATA), blob_id, 0, len(blob), raw_length)))

    case("truncated", good[:20])
    case("authentication failed", bytes(flipped))
    case("authentication failed", good, blob_type=TREE)  # stored as data, read as a tree
    case("authentication failed", good, blob_id=other_id)  # bound to its id
    # encrypted under the id it claims, but the content is another's
    case("content does not match its id", python_sealed(repo, TEXT, DATA, 3, other_id), other_id)
    case("cannot decompress", good, raw_length=len(TEXT) - 1)  # the index's length is wrong
    case("content does not match its id", good, raw_length=len(TEXT) + 1)
    case("content does not match its id", sealed_payload(repo, b"\x00" + TEXT[:-1], good_id))
    case("content does not match its id", good, raw_length=1 << 40)  # never allocated
    case("unknown compression method 7", sealed_payload(repo, b"\x07" + TEXT, good_id))
    case("cannot decompress", sealed_payload(repo, b"\x01" + b"not zstd at all" * 10, good_id))
    case("empty payload", sealed_payload(repo, b"", good_id))

    span, entries = bytearray(), []
    for _, blob, e in cases:
        entries.append(BlobEntry(e.type, e.id, len(span), len(blob), e.raw_length))
        span += blob
        entries.append(BlobEntry(DATA, good_id, len(span), len(good), len(TEXT)))  # a good neighbour
        span += good
    entries.append(BlobEntry(DATA, good_id, len(span) - 10, len(good), len(TEXT)))  # past the span's end
    got = repo.decode_blobs(bytes(span), entries)
    for i, (why, _, e) in enumerate(cases):
        failed, neighbour = got[2 * i], got[2 * i + 1]
        assert isinstance(failed, errors.IntegrityError) and why in str(failed), (why, failed)
        assert str(failed).startswith(f"blob {e.id.hex()[:16]}: "), failed
        assert neighbour == TEXT, why
    assert isinstance(got[-1], errors.IntegrityError) and "truncated" in str(got[-1])
    with pytest.raises(errors.IntegrityError, match="authentication failed"):
        repo.decode_blob(good_id, DATA, bytes(flipped), len(TEXT))


def test_open_blobs_refuses_bad_keys(repo: Repository) -> None:
    with pytest.raises(ValueError, match="enc_key must be 32 bytes"):
        _seal.open_blobs(b"", [], b"short", repo.master.identity)
    with pytest.raises(ValueError, match="id_key must be 32 bytes"):
        _seal.open_blobs(b"", [], repo.master.encryption, b"")


def job(
    dir_fd: int, name: str, pieces: list[bytes], *, mode: int = 0o640, chmod: int = -1, mtime_ns: int = 7_000_000_123
) -> tuple[int, bytes, int, int, int, int, int, list[bytes]]:
    return (dir_fd, os.fsencode(name), mode, chmod, -1, -1, mtime_ns, pieces)


def test_write_files_creates_files_with_holes_modes_and_times(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    block = 16 * 1024
    holes = [b"a" * 100, bytes(3 * block), b"b" * block, bytes(2 * block + 5)]  # a hole inside, zeros at the end
    tail_hole = [b"c" * block, bytes(4 * block)]  # ends in a hole: its length still set
    try:
        got = _seal.write_files(
            [
                job(fd, "holes", holes),
                job(fd, "tail", tail_hole, mode=0o600, chmod=0o2750),
                job(fd, "empty", []),
                job(fd, "caf\udce9", [b"not UTF-8"]),  # a name as the file system has it
            ]
        )
    finally:
        os.close(fd)
    assert got == [(0, 0)] * 4
    assert (tmp_path / "holes").read_bytes() == b"".join(holes)
    assert (tmp_path / "tail").read_bytes() == b"".join(tail_hole)
    assert (tmp_path / "empty").read_bytes() == b""
    assert Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9")).read_bytes() == b"not UTF-8"
    st = (tmp_path / "holes").stat()
    assert st.st_blocks * 512 < st.st_size  # the zero blocks were not written
    assert stat.S_IMODE(st.st_mode) == 0o640 & ~current_umask() and st.st_mtime_ns == 7_000_000_123
    assert stat.S_IMODE((tmp_path / "tail").stat().st_mode) == 0o2750


def test_write_files_never_replaces_or_follows(tmp_path: Path) -> None:
    (tmp_path / "there").write_bytes(b"keep me")
    outside = tmp_path / "outside"
    outside.write_bytes(b"not yours")
    (tmp_path / "link").symlink_to(outside)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        got = _seal.write_files([job(fd, "there", [b"new"]), job(fd, "link", [b"new"]), job(fd, "new", [b"ok"])])
    finally:
        os.close(fd)
    assert got == [(1, errno.EEXIST), (1, errno.EEXIST), (0, 0)]
    assert (tmp_path / "there").read_bytes() == b"keep me" and outside.read_bytes() == b"not yours"
    assert (tmp_path / "new").read_bytes() == b"ok"


def test_a_file_that_cannot_be_written_is_removed(tmp_path: Path) -> None:
    """A real write failure: the file-size limit (RLIMIT_FSIZE) of a child process, EFBIG."""
    script = textwrap.dedent(
        f"""
        import os, resource, signal
        from kubekeep.engine import _seal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        fd = os.open({str(tmp_path)!r}, os.O_RDONLY | os.O_DIRECTORY)
        print(_seal.write_files([
            (fd, b"small", 0o644, -1, -1, -1, 0, [b"x" * 1000]),
            (fd, b"too-big", 0o644, -1, -1, -1, 0, [b"y" * 60_000, b"z" * 60_000]),
        ]))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"[(0, 0), (2, {errno.EFBIG})]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small"]


def current_umask() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
