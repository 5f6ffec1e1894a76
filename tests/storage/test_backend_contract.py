"""The contract every ``Backend`` honours (see ``kubekeep.storage.base``), run per backend."""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubekeep.errors import ObjectNotFound, RepositoryExists, StorageError
from kubekeep.storage.base import Backend, ObjectInfo

from .conftest import BackendFactory


def blob(seed: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(f"{seed}:{counter}".encode(), digest_size=64).digest()
        counter += 1
    return bytes(out[:size])


def listing(backend: Backend, prefix: str) -> dict[str, int]:
    infos = list(backend.list(prefix))
    assert all(isinstance(i, ObjectInfo) for i in infos)
    names = [i.name for i in infos]
    assert len(names) == len(set(names)), "duplicate names listed"
    return {i.name: i.size for i in infos}


def test_store_load_roundtrip(backend: Backend) -> None:
    data = blob("roundtrip", 4097)
    backend.store("keys/k1", data)
    assert backend.load("keys/k1") == data
    assert backend.exists("keys/k1")
    assert not backend.exists("keys/k2")


def test_store_accepts_memoryview(backend: Backend) -> None:
    data = blob("mv", 1000)
    backend.store("index/mv", memoryview(data)[100:900])
    assert backend.load("index/mv") == data[100:900]


def test_store_keeps_no_reference_to_the_data(backend: Backend) -> None:
    # the engine stores packs from buffers it reuses for the next pack once store returns
    buffer = bytearray(b"first pack " * 1000)
    view = memoryview(buffer)
    backend.store("data/aa/reused", view)
    view.release()
    buffer[:] = bytes(len(buffer))
    assert backend.load("data/aa/reused") == b"first pack " * 1000


def test_ranged_load(backend: Backend) -> None:
    data = blob("ranged", 10_000)
    backend.store("data/ab/ranged", data)
    assert backend.load("data/ab/ranged", 0, 10) == data[:10]
    assert backend.load("data/ab/ranged", 1234, 4321) == data[1234:5555]
    assert backend.load("data/ab/ranged", 9000) == data[9000:]
    assert backend.load("data/ab/ranged", 5, 0) == b""
    # a range running past the end is a short read, a range after the end is empty
    assert backend.load("data/ab/ranged", 9990, 100) == data[9990:]
    assert backend.load("data/ab/ranged", 20_000, 10) == b""
    with pytest.raises(ValueError):
        backend.load("data/ab/ranged", -1, 10)


def test_load_missing_raises_object_not_found(backend: Backend) -> None:
    with pytest.raises(ObjectNotFound) as info:
        backend.load("snapshots/missing")
    assert "snapshots/missing" in str(info.value)
    with pytest.raises(ObjectNotFound):
        backend.load("snapshots/missing", 10, 10)


def test_exclusive_store_creates_then_refuses(backend: Backend) -> None:
    backend.store("locks/l1", b"first", exclusive=True)
    with pytest.raises(StorageError) as info:
        backend.store("locks/l1", b"second", exclusive=True)
    assert not isinstance(info.value, ObjectNotFound)
    assert "locks/l1" in str(info.value) and "\n" not in str(info.value)
    assert backend.load("locks/l1") == b"first"
    assert listing(backend, "locks/") == {"locks/l1": 5}


def test_non_exclusive_store_overwrites(backend: Backend) -> None:
    backend.store("config", b"old contents")
    backend.store("config", b"new")
    assert backend.load("config") == b"new"
    assert listing(backend, "config") == {"config": 3}


def test_delete(backend: Backend) -> None:
    backend.store("locks/a", b"a")
    backend.store("locks/b", b"b")
    backend.delete("locks/a")
    assert not backend.exists("locks/a")
    with pytest.raises(ObjectNotFound):
        backend.load("locks/a")
    assert listing(backend, "locks/") == {"locks/b": 1}
    backend.delete("locks/a")  # deleting a missing object is fine
    backend.delete("never/stored")


def test_list_by_prefix_with_sizes(backend: Backend) -> None:
    objects = {
        "config": 7,
        "keys/k1": 11,
        "data/ab/ab01": 100,
        "data/ab/ab02": 200,
        "data/cd/cd01": 300,
        "index/i1": 13,
        "snapshots/s1": 17,
    }
    for name, size in objects.items():
        backend.store(name, blob(name, size))
    assert listing(backend, "") == objects
    assert listing(backend, "data/") == {k: v for k, v in objects.items() if k.startswith("data/")}
    assert listing(backend, "data/ab/") == {"data/ab/ab01": 100, "data/ab/ab02": 200}
    assert listing(backend, "data/ab/ab0") == {"data/ab/ab01": 100, "data/ab/ab02": 200}
    assert listing(backend, "data/c") == {"data/cd/cd01": 300}
    assert listing(backend, "index/") == {"index/i1": 13}
    assert listing(backend, "locks/") == {}
    assert listing(backend, "nonexistent/deeper/") == {}


def test_nested_names(backend: Backend) -> None:
    names = ["a/b/c/d/e/f", "a/b/x", "a/y", "z"]
    for name in names:
        backend.store(name, name.encode())
    for name in names:
        assert backend.load(name) == name.encode()
    assert listing(backend, "a/") == {n: len(n) for n in names if n.startswith("a/")}
    assert listing(backend, "a/b/c/") == {"a/b/c/d/e/f": 11}


def test_invalid_names_are_refused(backend: Backend) -> None:
    for name in ["", "/abs", "a//b", "../escape", "data/../../x", "a/./b", "dir/"]:
        with pytest.raises(StorageError):
            backend.store(name, b"x")
        with pytest.raises(StorageError):
            backend.load(name)
    assert listing(backend, "") == {}


def test_empty_object(backend: Backend) -> None:
    backend.store("locks/empty", b"")
    assert backend.exists("locks/empty")
    assert backend.load("locks/empty") == b""
    assert backend.load("locks/empty", 0, 10) == b""
    assert listing(backend, "locks/") == {"locks/empty": 0}


def test_large_object(backend: Backend) -> None:
    data = os.urandom(20 * 1024 * 1024)
    backend.store("data/ff/large", data)
    assert listing(backend, "data/ff/") == {"data/ff/large": len(data)}
    assert backend.load("data/ff/large", len(data) - 4096, 4096) == data[-4096:]
    assert backend.load("data/ff/large") == data


def test_concurrent_stores(backend: Backend) -> None:
    expected = {f"data/{t:02x}/obj-{t}-{i}": blob(f"{t}-{i}", 1000 + 97 * i) for t in range(8) for i in range(6)}
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for name, data in expected.items():
            if name.startswith(f"data/{t:02x}/"):
                backend.store(name, data, exclusive=(t % 2 == 0))

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(worker, t) for t in range(8)]:
            future.result()
    assert listing(backend, "data/") == {n: len(d) for n, d in expected.items()}
    with ThreadPoolExecutor(8) as pool:
        loaded = dict(zip(expected, pool.map(backend.load, expected), strict=True))
    assert loaded == expected


def test_create_on_fresh_location_then_refuses_existing(make_backend: BackendFactory) -> None:
    first = make_backend()
    first.create()
    first.create()  # no config yet: still an empty location
    first.store("config", b"repository config")
    with pytest.raises(RepositoryExists) as info:
        make_backend().create()
    assert first.location in str(info.value) or str(getattr(first, "root", "")) in str(info.value)
    assert first.load("config") == b"repository config"
