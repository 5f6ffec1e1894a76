"""Keys, authenticated encryption, pack files and per-blob compression."""

from __future__ import annotations

import json
import os
import random
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine import compression, keyfile
from kubekeep.engine import writer as writer_module
from kubekeep.engine.crypto import Cipher, MasterKey
from kubekeep.engine.keyfile import KeyFile
from kubekeep.engine.pack import DATA, TREE, PackBuffer, PackWriter, blob_aad, pack_name, read_header, verify_pack_id
from kubekeep.engine.repository import Repository
from kubekeep.engine.writer import BlobWriter
from kubekeep.storage.local import LocalBackend
from tests.cli.helpers import FAST_KDF
from tests.engine.conftest import PASSWORD


def test_master_key_wrap_and_unwrap() -> None:
    master = MasterKey.generate()
    details = keyfile.KeyDetails("2026-12-04T10:00:00Z", "host", "user")
    key = keyfile.wrap(master, b"right", keyfile.kdf_params(FAST_KDF)).with_details(master, details)
    text = key.to_json().decode()
    assert "right" not in text and master.encryption.hex() not in text
    assert KeyFile.parse(key.to_json()).unwrap(b"right") == master
    assert KeyFile.parse(key.to_json()).details(master) == details
    assert key.unwrap(b"wrong") is None
    assert key.unwrap(b"") is None
    body = json.loads(text)
    data = body["data"]
    tampered = dict(body, data=data[:20] + ("A" if data[20] != "A" else "B") + data[21:])
    assert KeyFile.parse(json.dumps(tampered).encode()).unwrap(b"right") is None
    with pytest.raises(errors.IntegrityError):
        KeyFile.parse(json.dumps({"kdf": FAST_KDF}).encode())


def test_repository_open_with_wrong_password(repo: Repository, tmp_path: Path) -> None:
    with pytest.raises(errors.WrongPassword) as exc:
        Repository.open(LocalBackend(tmp_path / "repo"), "not it", no_cache=True)
    assert exc.value.exit_code == 12
    assert Repository.open(LocalBackend(tmp_path / "repo"), PASSWORD, no_cache=True).id == repo.id
    with pytest.raises(errors.RepositoryNotFound):
        Repository.open(LocalBackend(tmp_path / "elsewhere"), PASSWORD, no_cache=True)


def test_cipher_authenticates_content_and_role() -> None:
    c = Cipher(os.urandom(32))
    ct = c.encrypt(b"secret payload", b"role-a")
    assert b"secret payload" not in ct and len(ct) == len(b"secret payload") + 28
    assert c.encrypt(b"secret payload", b"role-a") != ct  # fresh nonce every time
    assert c.decrypt(ct, b"role-a", "x") == b"secret payload"
    with pytest.raises(errors.IntegrityError, match="authentication failed"):
        c.decrypt(ct, b"role-b", "x")
    for pos in (0, 12, len(ct) - 1):
        bad = bytearray(ct)
        bad[pos] ^= 1
        with pytest.raises(errors.IntegrityError):
            c.decrypt(bytes(bad), b"role-a", "x")
    with pytest.raises(errors.IntegrityError, match="truncated"):
        c.decrypt(ct[:20], b"role-a", "x")
    with pytest.raises(errors.IntegrityError):
        Cipher(os.urandom(32)).decrypt(ct, b"role-a", "x")


def _pack() -> tuple[Cipher, bytes, bytes, list[tuple[bytes, bytes]]]:
    cipher = Cipher(os.urandom(32))
    writer = PackWriter(DATA)
    blobs = []
    for i in range(5):
        blob_id, plain = os.urandom(32), os.urandom(100 + i)
        writer.add(blob_id, cipher.encrypt(plain, blob_aad(DATA, blob_id)), len(plain))
        blobs.append((blob_id, plain))
    pack_id, data = writer.finish(cipher)
    return cipher, pack_id, bytes(data), blobs


def test_pack_header_roundtrip() -> None:
    cipher, pack_id, data, blobs = _pack()
    assert verify_pack_id(pack_id, data)
    header = read_header(data, cipher, "pack")
    assert [e.id for e in header] == [b for b, _ in blobs]
    for e, (blob_id, plain) in zip(header, blobs, strict=True):
        assert e.type == DATA and e.raw_length == len(plain)
        raw = data[e.offset : e.offset + e.length]
        assert cipher.decrypt(raw, blob_aad(DATA, blob_id), "blob") == plain
        with pytest.raises(errors.IntegrityError):  # a data blob cannot pass as a tree blob
            cipher.decrypt(raw, blob_aad(TREE, blob_id), "blob")


def test_pack_tamper_detection() -> None:
    cipher, pack_id, data, _ = _pack()
    for pos in (0, len(data) // 2, len(data) - 10, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x80
        assert not verify_pack_id(pack_id, bytes(bad))
    hlen = struct.unpack("<I", data[-4:])[0]
    bad = bytearray(data)
    bad[len(data) - 4 - hlen // 2] ^= 1  # inside the encrypted header
    with pytest.raises(errors.IntegrityError, match="header"):
        read_header(bytes(bad), cipher, "pack")
    with pytest.raises(errors.IntegrityError, match="out of range"):
        read_header(data[-4 - hlen + 5 :], cipher, "pack")
    with pytest.raises(errors.IntegrityError, match="truncated"):
        read_header(b"\x01", cipher, "pack")
    with pytest.raises(errors.IntegrityError):
        read_header(data, Cipher(os.urandom(32)), "pack")


def test_compression_only_when_it_pays() -> None:
    noise = random.Random(1).randbytes(200_000)
    packed = compression.pack_payload(noise, 3)
    assert packed[0] == compression.NONE and packed[1:] == noise
    text = b"compressible line of text\n" * 5000
    packed = compression.pack_payload(text, 3)
    assert packed[0] == compression.ZSTD and len(packed) < len(text) // 20
    assert compression.unpack_payload(packed, len(text), "blob") == text
    assert compression.pack_payload(b"short", 3)[0] == compression.NONE  # below 64 bytes
    assert compression.pack_payload(text, 0)[0] == compression.NONE  # level 0: disabled
    with pytest.raises(errors.IntegrityError, match="compression method"):
        compression.unpack_payload(b"\x07abc", 3, "blob")
    with pytest.raises(errors.IntegrityError, match="decompress"):
        compression.unpack_payload(bytes((compression.ZSTD,)) + b"not zstd", 10, "blob")


def test_blob_roundtrip_and_mismatch(repo: Repository) -> None:
    with repo.writer() as w:
        text_id = w.save(DATA, b"hello world " * 1000)
        noise = os.urandom(300_000)
        noise_id = w.save(DATA, noise)
        w.flush()
    assert repo.load_blob(text_id) == b"hello world " * 1000
    assert repo.load_blob(noise_id) == noise
    loc = repo.index.lookup(noise_id)
    assert loc is not None and loc.length == len(noise) + 1 + 28  # method byte + nonce + tag
    assert repo.index.lookup(text_id).length < 2000  # type: ignore[union-attr]
    with pytest.raises(errors.IntegrityError, match="not in the index"):
        repo.load_blob(os.urandom(32))
    raw = repo.backend.load(f"data/{loc.pack_id.hex()[:2]}/{loc.pack_id.hex()}", loc.offset, loc.length)
    with pytest.raises(errors.IntegrityError):  # the right bytes under another id
        repo.decode_blob(text_id, DATA, raw, loc.raw_length)


def _pack_of(cipher: Cipher, blobs: int, *, pad_header: bool = True) -> bytes:
    writer = PackWriter(DATA)
    for _ in range(blobs):
        blob_id, plain = os.urandom(32), os.urandom(300)
        writer.add(blob_id, cipher.encrypt(plain, blob_aad(DATA, blob_id)), 1 << 20)
    return bytes((writer.finish(cipher) if pad_header else writer.finish(cipher, pad_header=False))[1])


def _header_length(pack: bytes) -> int:
    return int(struct.unpack("<I", pack[-4:])[0])


def test_pack_header_length_does_not_tell_the_blob_count() -> None:
    cipher = Cipher(os.urandom(32))
    one, twenty, sixty = (_pack_of(cipher, n) for n in (1, 20, 60))
    assert _header_length(one) == _header_length(twenty) == _header_length(sixty) == 4096 + 28
    assert len(read_header(one, cipher, "pack")) == 1 and len(read_header(sixty, cipher, "pack")) == 60
    many = _pack_of(cipher, 300)  # past the first bucket: the next power of two
    assert _header_length(many) == 16384 + 28 and len(read_header(many, cipher, "pack")) == 300


def test_unpadded_version_1_headers_still_read_and_bad_padding_is_refused() -> None:
    cipher = Cipher(os.urandom(32))
    old = _pack_of(cipher, 3, pad_header=False)
    assert _header_length(old) < 300 and len(read_header(old, cipher, "pack")) == 3
    # padding that is not zero bytes (only a key holder could write it) is a malformed header
    body = old[: -4 - _header_length(old)]
    header = cipher.decrypt(old[-4 - _header_length(old) : -4], b"pack header", "h") + b"\x00\x01"
    enc = cipher.encrypt(header, b"pack header")
    with pytest.raises(errors.IntegrityError, match="malformed"):
        read_header(body + bytes(enc) + struct.pack("<I", len(enc)), cipher, "pack")


def test_version_2_repository_writes_padded_headers(repo: Repository, tmp_path: Path) -> None:
    assert repo.format_version == 2
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(os.urandom(5000))
    api.backup(repo, str(tmp_path / "src"))
    packs = [repo.backend.load(o.name) for o in repo.backend.list("data/")]
    assert len(packs) == 2  # one data pack, one tree pack
    assert all(_header_length(p) == 4096 + 28 for p in packs)


def test_pack_buffer_grows_past_its_first_size_and_keeps_what_it_held() -> None:
    buffer = PackBuffer(4096)
    first, second = os.urandom(3000), os.urandom(10_000)
    assert buffer.append(first) == 0
    assert buffer.append(second) == 3000
    view = buffer.view()
    assert bytes(view) == first + second
    view.release()
    buffer.reset()
    assert buffer.append(b"next") == 0 and bytes(buffer.view()) == b"next"


def test_packs_reuse_their_buffers_end_before_the_limit_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[PackBuffer] = []

    class Counted(PackBuffer):
        def __init__(self, capacity: int) -> None:
            super().__init__(capacity)
            made.append(self)

    monkeypatch.setattr(writer_module, "PackBuffer", Counted)
    repo = Repository.init(LocalBackend(tmp_path / "repo"), "pw", kdf=FAST_KDF, no_cache=True)
    blobs = [os.urandom(40_000) for _ in range(60)]
    with BlobWriter(repo, pack_size=200_000, uploads=1) as writer:
        ids = [writer.save(DATA, b) for b in blobs]
        writer.flush()
        assert writer.stats.packs >= 12
    assert len(made) <= 3 + 1  # at most uploads + 2 data buffers, and a tree buffer
    for obj in repo.backend.list("data/"):
        assert obj.size <= 200_000 + 8192  # blobs end before the limit; then the header
    for blob_id, data in zip(ids, blobs, strict=True):
        loc = repo.index.lookup(blob_id)
        assert loc is not None
        raw = repo.backend.load(pack_name(loc.pack_id), loc.offset, loc.length)
        assert repo.decode_blob(blob_id, DATA, raw, loc.raw_length) == data


class _SlowStores(LocalBackend):
    def store(self, name: str, data: bytes | memoryview, *, exclusive: bool = False, **kw: object) -> None:
        if name.startswith("data/"):
            time.sleep(0.01)
        super().store(name, data, exclusive=exclusive)


def test_savers_wait_for_pack_buffers_without_deadlock_when_stores_are_slow(tmp_path: Path) -> None:
    repo = Repository.init(_SlowStores(tmp_path / "repo"), "pw", kdf=FAST_KDF, no_cache=True)
    blobs = [[os.urandom(30_000 + 997 * i) for i in range(40)] for _ in range(6)]
    with BlobWriter(repo, pack_size=100_000, uploads=1) as writer:
        with ThreadPoolExecutor(6) as pool:
            saved = list(pool.map(lambda part: [writer.save(DATA, b) for b in part], blobs))
        writer.flush()
        assert writer.stats.packs >= 60
        assert sum(len(free) for free in writer._free.values()) <= 3 + 1  # uploads + 2 data, 1 tree
    for part_ids, part in zip(saved, blobs, strict=True):
        for blob_id, data in zip(part_ids, part, strict=True):
            loc = repo.index.lookup(blob_id)
            assert loc is not None
            raw = repo.backend.load(pack_name(loc.pack_id), loc.offset, loc.length)
            assert repo.decode_blob(blob_id, DATA, raw, loc.raw_length) == data


def test_an_index_file_is_written_every_so_many_blobs_before_the_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "INDEX_EVERY_BLOBS", 100)
    repo = Repository.init(LocalBackend(tmp_path / "repo"), "pw", kdf=FAST_KDF, no_cache=True)
    with BlobWriter(repo, pack_size=20_000, uploads=1) as writer:
        for _ in range(500):
            writer.save(DATA, os.urandom(400))
        written = len(writer.index_files)  # before the flush: 25 packs, far from 64
        writer.flush()
    assert written >= 3
    assert len(list(repo.backend.list("index/"))) == len(writer.index_files)
