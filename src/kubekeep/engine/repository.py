"""The repository: keys, config, index, blobs, trees and snapshots on one storage backend.

Storage layout (docs/format.md)::

    config                  encrypted: format version, repository id, chunker parameters
    keys/<random id>        JSON: Argon2id parameters, salt, wrapped master key
    data/<xx>/<pack id>     packs of encrypted blobs (name = BLAKE3 of content)
    index/<id>              encrypted lists of packs and their blobs (name = BLAKE3 of content)
    snapshots/<id>          encrypted snapshot metadata (name = BLAKE3 of content)
    locks/<random id>       encrypted lock records

Writers only ever add objects; a snapshot file is written last, so a backup killed at any
point leaves nothing that looks complete. Only prune deletes, under an exclusive lock.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypedDict

from kubekeep import __version__, errors
from kubekeep.engine import format as fmt
from kubekeep.engine import host, keyfile, objects
from kubekeep.engine.cache import Cache, default_cache_root
from kubekeep.engine.crypto import MasterKey
from kubekeep.engine.index import BlobRow, Index, Location, decode_index_body
from kubekeep.engine.keyfile import KdfParams, KeyDetails, KeyFile
from kubekeep.engine.locks import RepositoryLock
from kubekeep.engine.objectlock import Ledger, LockPolicy, RetainingBackend, extend_for_snapshot, parse_time
from kubekeep.engine.objectlock import flush as flush_retention
from kubekeep.engine.objectlock import require_support as require_lock_support
from kubekeep.engine.pack import DATA, TREE, BlobEntry, pack_name, verify_pack_id
from kubekeep.engine.pack_headers import pack_id_of, read_stored_header
from kubekeep.engine.sealing import compiled
from kubekeep.engine.snapshot import DamagedSnapshot, Snapshot, now_rfc3339
from kubekeep.engine.tree import Node, decode_tree
from kubekeep.engine.writer import BlobWriter
from kubekeep.storage.base import Backend


def _open_cache(root: Path | None, repo_id: str) -> Cache | None:
    """The local cache, or None when its directory cannot be created: a cache only saves time."""
    try:
        return Cache(root or default_cache_root(), repo_id)
    except OSError:
        return None


class KeyListing(TypedDict):
    """A key file as :meth:`Repository.list_keys` describes it."""

    id: str
    current: bool  # the key this repository was opened with
    created: str | None
    hostname: str | None
    username: str | None
    damaged: str | None  # why the key file is unusable


#: metadata objects (index files, snapshot files, pack headers) read at once
PARALLEL_READS = 4
#: trees kept decoded in memory (most recently used)
TREE_CACHE_SIZE = 4096
#: restores read the blobs of one pack together when they are at most this far apart
READ_GAP = 256 * 1024
#: and read at most this much at once
READ_SPAN = fmt.PACK_SIZE
#: plaintext bytes a check or a repack decodes per call (engine/_seal), a bound on what it holds
DECODE_RUN = 32 * 1024 * 1024
#: and a restore's reads (one per worker): ``read_blobs`` decodes this much of a span ahead
STREAM_RUN = 4 * 1024 * 1024


#: what stands in for a blob that cannot be read: damaged, or its pack is gone
BlobUnreadable = errors.IntegrityError | errors.ObjectNotFound


class Repository:
    """An open, unlocked repository. Obtain one with :meth:`init` or :meth:`open`."""

    def __init__(
        self, backend: Backend, master: MasterKey, config: fmt.RepositoryConfig, key_name: str, cache: Cache | None
    ) -> None:
        #: the Object Lock policy of a version-3 repository (None: no retention dates)
        self.object_lock: LockPolicy | None = None
        self.retaining: RetainingBackend | None = None
        self.ledger: Ledger | None = None
        if "object_lock" in config:
            self.object_lock = LockPolicy.from_config(config["object_lock"])
            backend = self.retaining = (
                backend if isinstance(backend, RetainingBackend) else RetainingBackend(backend, self.object_lock)
            )
        self.backend = backend
        self.master = master
        self.cipher = master.cipher()
        self.config = config
        self.key_name = key_name
        self.cache = cache
        self._index: Index | None = None
        self._index_files: set[str] = set()
        self._index_lock = threading.Lock()
        #: index files that failed verification when the index was loaded: name -> reason
        self.damaged_index_files: dict[str, str] = {}
        self._headers_read = False  # packs the index does not cover were added from their headers
        self._headers_lock = threading.Lock()
        self._tree_cache: OrderedDict[bytes, list[Node]] = OrderedDict()
        self._tree_cache_lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        #: snapshot files found damaged by :meth:`snapshots` with ``skip_damaged``, by id
        self.damaged_snapshots: dict[str, DamagedSnapshot] = {}
        #: every warning said about skipped damage (a snapshot, index or key file), in order;
        #: those said before :attr:`on_warning` is set (while opening) are passed on when it is
        self.warnings: list[str] = []
        self._on_warning: Callable[[str], None] | None = None
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()
        if self.retaining is not None:
            self.ledger = Ledger(self, self.retaining)

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        backend: Backend,
        password: str,
        *,
        kdf: KdfParams | dict[str, int | str] | None = None,
        compression_level: int = fmt.DEFAULT_COMPRESSION_LEVEL,
        cache_root: Path | None = None,
        no_cache: bool = False,
        object_lock: LockPolicy | None = None,
    ) -> Repository:
        """Create a repository; with ``object_lock``, on a location that can hold retention
        dates (an S3 bucket with Object Lock on and no default retention), or refuse."""
        if not password:
            raise errors.UsageError("an empty password is not allowed")
        params = keyfile.kdf_params(kdf)
        if object_lock is not None:
            require_lock_support(backend)
        backend.create()
        master = MasterKey.generate()
        config: fmt.RepositoryConfig = {
            "version": fmt.REPOSITORY_VERSION,
            "id": secrets.token_hex(16),
            "chunker": {
                "algorithm": fmt.CHUNKER_ALGORITHM,
                "min": fmt.CHUNK_MIN,
                "avg": fmt.CHUNK_AVG,
                "max": fmt.CHUNK_MAX,
                "normalization": 1,
            },
            "compression": {"algorithm": "zstd", "level": compression_level},
            "created_by": f"kubekeep {__version__}",
        }
        if object_lock is not None:
            config["version"] = fmt.OBJECT_LOCK_VERSION
            config["object_lock"] = object_lock.to_config()
            backend = RetainingBackend(backend, object_lock)
        key_name = cls._store_key(backend, master, password, params)
        backend.store("config", objects.seal(master.cipher(), config, fmt.AAD_CONFIG), exclusive=True)
        cache = None if no_cache else _open_cache(cache_root, config["id"])
        repo = cls(backend, master, config, key_name, cache)
        flush_retention(repo)
        return repo

    @classmethod
    def open(
        cls, backend: Backend, password: str, *, cache_root: Path | None = None, no_cache: bool = False
    ) -> Repository:
        try:
            sealed_config = backend.load("config")
        except errors.ObjectNotFound:
            raise errors.RepositoryNotFound(
                f"no repository at {backend.location} (run 'kubekeep init' to create one)"
            ) from None
        key_names = sorted(o.name for o in backend.list("keys/"))
        if not key_names:
            raise errors.RepositoryError(f"repository at {backend.location} has no key files")
        parsed: dict[str, KeyFile] = {}
        problems: dict[str, str] = {}
        master: MasterKey | None = None
        name = ""
        for name in key_names:
            try:
                key = parsed[name] = KeyFile.parse(backend.load(name))
            except errors.IntegrityError as exc:
                problems[name] = str(exc)
                continue
            except errors.ObjectNotFound:
                continue  # removed meanwhile
            master = key.unwrap(password.encode())
            if master is not None:
                break
        if master is None:
            skipped = (
                f" ({len(problems)} malformed key file(s) skipped: {_first_problem(problems)})" if problems else ""
            )
            if problems and not parsed:
                raise errors.IntegrityError(
                    f"no key file of the repository at {backend.location} is readable: {_first_problem(problems)}"
                )
            raise errors.WrongPassword(
                f"wrong password: no key of the repository at {backend.location} opens with it{skipped}"
            )
        # decoded and authenticated, of the shape every writer wrote; only its version is checked
        config: fmt.RepositoryConfig = objects.unseal(master.cipher(), sealed_config, fmt.AAD_CONFIG, "config")
        if config.get("version") not in fmt.SUPPORTED_VERSIONS:
            raise errors.RepositoryError(
                f"repository format version {config.get('version')} is not supported by kubekeep {__version__}"
            )
        cache = None if no_cache else _open_cache(cache_root, config["id"])
        repo = cls(backend, master, config, name, cache)
        repo._verify_key_files(key_names, parsed, problems)
        return repo

    def _verify_key_files(self, names: list[str], parsed: dict[str, KeyFile], problems: dict[str, str]) -> None:
        """Warn about every key file that is malformed or whose sealed details do not verify
        under the master key (version 2 key files; version 1 ones have nothing to verify)."""
        for name in names:
            if name not in parsed and name not in problems:
                try:
                    parsed[name] = KeyFile.parse(self.backend.load(name))
                except errors.IntegrityError as exc:
                    problems[name] = str(exc)
                except errors.ObjectNotFound:
                    continue
            key = parsed.get(name)
            if key is not None:
                try:
                    key.details(self.master)
                except errors.IntegrityError:
                    problems[name] = "it does not verify under the master key (damaged or tampered with)"
        for name, why in problems.items():
            self.warn(
                name,
                f"key file {name} is damaged and was skipped: {why}; "
                f"'kubekeep key remove {name.split('/', 1)[1][:8]}' removes it",
            )

    @property
    def id(self) -> str:
        return str(self.config["id"])

    @property
    def format_version(self) -> int:
        return int(self.config["version"])

    @property
    def compression_level(self) -> int:
        return int(self.config["compression"]["level"])

    # -- keys ---------------------------------------------------------------------------------
    @staticmethod
    def _store_key(backend: Backend, master: MasterKey, password: str, kdf: KdfParams) -> str:
        details = KeyDetails(now_rfc3339(), host.hostname(), host.username())
        key = keyfile.wrap(master, password.encode(), kdf).with_details(master, details)
        name = f"keys/{secrets.token_hex(16)}"
        backend.store(name, key.to_json(), exclusive=True)
        return name

    def add_key(self, password: str, kdf: KdfParams | dict[str, int | str] | None = None) -> str:
        if not password:
            raise errors.UsageError("an empty password is not allowed")
        name = self._store_key(self.backend, self.master, password, keyfile.kdf_params(kdf))
        flush_retention(self)
        return name.split("/", 1)[1]

    def list_keys(self) -> list[KeyListing]:
        """Every key file: id, whether it is the one in use, who made it and when (verified
        under the master key for version-2 key files; ``damaged`` says why one is not usable)."""
        out = []
        for info in sorted(self.backend.list("keys/"), key=lambda o: o.name):
            entry: KeyListing = {
                "id": info.name.split("/", 1)[1],
                "current": info.name == self.key_name,
                "created": None,
                "hostname": None,
                "username": None,
                "damaged": None,
            }
            try:
                key = KeyFile.parse(self.backend.load(info.name))
                details = key.details(self.master) or key.plaintext_details
                if details is not None:
                    entry["created"] = details.created
                    entry["hostname"] = details.hostname
                    entry["username"] = details.username
            except errors.IntegrityError as exc:
                entry["damaged"] = str(exc)
            except errors.ObjectNotFound:
                continue
            out.append(entry)
        return out

    def remove_key(self, key_id: str) -> None:
        keys = self.list_keys()
        matches = [k for k in keys if k["id"].startswith(key_id)]
        if not matches:
            raise errors.UsageError(f"no key with id {key_id}")
        if len(matches) > 1:
            raise errors.UsageError(f"key id prefix {key_id} is ambiguous")
        if matches[0]["current"]:
            raise errors.UsageError("refusing to remove the key in use; open the repository with another key first")
        self.backend.delete(f"keys/{matches[0]['id']}")

    @property
    def on_warning(self) -> Callable[[str], None] | None:
        """Where warnings about skipped damage go (the CLI prints them on stderr)."""
        return self._on_warning

    @on_warning.setter
    def on_warning(self, callback: Callable[[str], None] | None) -> None:
        self._on_warning = callback
        if callback is not None:
            for message in list(self.warnings):
                callback(message)

    def warn(self, key: str, message: str) -> None:
        """Pass ``message`` to :attr:`on_warning`, once per ``key`` for this object."""
        with self._warn_lock:
            if key in self._warned:
                return
            self._warned.add(key)
            self.warnings.append(message)
        if self._on_warning is not None:
            self._on_warning(message)

    # -- cached metadata objects --------------------------------------------------------------
    def load_cached(self, name: str, *, cache: bool = True) -> bytes:
        data = self.cache.get(name) if (cache and self.cache) else None
        if data is not None and objects.content_name(data) == name.rsplit("/", 1)[1]:
            return data
        data = self.backend.load(name)
        if cache and self.cache:
            self.cache.put(name, data)
        return data

    def save_object(self, prefix: str, body: object, aad: bytes) -> str:
        data = objects.seal(self.cipher, body, aad)
        name = objects.content_name(data)
        self.backend.store(f"{prefix}/{name}", data)
        if self.cache and prefix in ("index", "snapshots"):
            self.cache.put(f"{prefix}/{name}", data)
        return name

    # -- index --------------------------------------------------------------------------------
    @property
    def index(self) -> Index:
        if self._index is None:
            with self._index_lock:
                if self._index is None:
                    self._index = self._load_index()
        return self._index

    def _load_index(self) -> Index:
        """The union of the readable index files. A damaged one is skipped with a warning: the
        packs it listed still describe themselves (:meth:`read_uncovered_pack_headers`)."""
        names = {o.name for o in self.backend.list("index/")}
        if self.cache:
            self.cache.retain("index/", names)
        index = Index()
        damaged: dict[str, str] = {}

        def load(name: str) -> list[tuple[bytes, list[BlobRow]]]:
            try:
                data = self.load_cached(name)
                return decode_index_body(objects.unseal(self.cipher, data, fmt.AAD_INDEX, name), name)
            except errors.IntegrityError as exc:
                damaged[name] = str(exc).removeprefix(f"{name}: ")
                return []

        with ThreadPoolExecutor(PARALLEL_READS) as pool:
            for packs in pool.map(load, sorted(names)):
                index.add_bulk(packs)
        for name, reason in sorted(damaged.items()):
            self.warn(
                name,
                f"index file {name} is damaged and was skipped: {reason}; blobs it listed are "
                "found from pack headers; 'kubekeep repair index' rebuilds the index",
            )
        self._index_files = names
        self.damaged_index_files = dict(sorted(damaged.items()))
        self._headers_read = False
        return index

    def read_uncovered_pack_headers(self) -> int:
        """Add to the index, from their headers (ranged reads of each pack's end), the stored
        packs it does not cover: those a damaged or lost index file listed, and those of
        interrupted backups. Done once per loaded index; returns the number of blobs added."""
        index = self.index
        with self._headers_lock:
            if self._headers_read:
                return 0
            covered = {pack_name(p) for p in index.pack_ids()}
            todo = [
                (o.name, o.size, pid)
                for o in self.backend.list("data/")
                if o.name not in covered and (pid := pack_id_of(o.name)) is not None
            ]

            def read(item: tuple[str, int, bytes]) -> tuple[str, bytes, list[BlobEntry] | str]:
                name, size, pid = item
                try:
                    return (
                        name,
                        pid,
                        read_stored_header(self.backend, name, size, self.cipher, f"pack {pid.hex()[:16]}"),
                    )
                except (errors.IntegrityError, errors.ObjectNotFound) as exc:
                    return name, pid, str(exc)

            added = packs = 0
            with ThreadPoolExecutor(PARALLEL_READS) as pool:
                for name, pid, result in pool.map(read, todo):
                    if isinstance(result, str):
                        self.warn(name, f"{result}; its blobs cannot be found without an index entry")
                        continue
                    index.add_pack(pid, result)
                    added += len(result)
                    packs += 1
            self._headers_read = True
        if added:
            self.warn(
                "uncovered packs",
                f"{added} blob(s) were found in the headers of {packs} pack(s) "
                "the index does not list; 'kubekeep repair index' adds them to it",
            )
        return added

    def locate(self, blob_id: bytes) -> Location | None:
        """Where a blob is stored: the index, else the headers of packs the index does not cover."""
        loc = self.index.lookup(blob_id)
        if loc is None:
            self.read_uncovered_pack_headers()  # or waits while another thread does
            loc = self.index.lookup(blob_id)
        return loc

    def index_files(self) -> set[str]:
        self.index  # noqa: B018 - loads it
        return set(self._index_files)

    def use_index(self, index: Index) -> None:
        """Work from ``index`` instead of the stored one (``check`` uses the index it verified),
        as it is: a blob it lacks is missing, not looked for in pack headers."""
        with self._index_lock:
            self._index = index
            self._headers_read = True

    @contextlib.contextmanager
    def bypassing_caches(self) -> Iterator[None]:
        """Read only from storage inside the block: no disk cache, no trees or snapshots held in
        memory from earlier use of this object; the index is loaded afresh afterwards."""
        saved = self.cache, self._tree_cache, self._snapshots
        self.cache, self._tree_cache, self._snapshots = None, OrderedDict(), {}
        try:
            yield
        finally:
            self.cache, self._tree_cache, self._snapshots = saved
            with self._index_lock:
                self._index = None
                self._headers_read = False

    def refresh_index(self) -> bool:
        """Reload the index when a file it was built from is gone (a prune ran since): a
        long-running writer calls this under its lock before each write, so that it never
        takes a pruned blob for stored. True when it reloaded."""
        if self._index is None:
            return False
        names = {o.name for o in self.backend.list("index/")}
        if self._index_files <= names:
            return False
        self.reload_index()
        return True

    def reload_index(self) -> Index:
        with self._index_lock:
            self._index = self._load_index()
        return self._index

    # -- blobs --------------------------------------------------------------------------------
    def load_blob(self, blob_id: bytes) -> bytes:
        """Return a blob's plaintext, verified against its id; IntegrityError on any mismatch."""
        loc = self.locate(blob_id)
        if loc is None:
            raise errors.IntegrityError(
                f"blob {blob_id.hex()[:16]} is not in the index (repository damaged; run 'kubekeep check')"
            )
        name = pack_name(loc.pack_id)
        if loc.type == TREE and self.cache is not None:
            cached = self.cache.get_range(name, loc.offset, loc.length)
            if cached is not None:
                try:
                    return self.decode_blob(blob_id, loc.type, cached, loc.raw_length)
                except errors.IntegrityError:
                    self.cache.discard(name)  # a damaged cached copy costs a download, never the data
            pack = self.backend.load(name)
            if verify_pack_id(loc.pack_id, pack):  # cache only what matches its name
                self.cache.put(name, pack)
            raw = pack[loc.offset : loc.offset + loc.length]
        else:
            raw = self.backend.load(name, loc.offset, loc.length)
        return self.decode_blob(blob_id, loc.type, raw, loc.raw_length)

    def decode_blob(self, blob_id: bytes, blob_type: int, raw: bytes | memoryview, raw_length: int) -> bytes:
        """A stored blob's plaintext, verified against its id; IntegrityError on any mismatch."""
        (plain,) = self.decode_blobs(raw, [BlobEntry(blob_type, blob_id, 0, len(raw), raw_length)])
        if isinstance(plain, errors.IntegrityError):
            raise plain
        return plain

    def decode_blobs(self, data: bytes | memoryview, entries: list[BlobEntry]) -> list[bytes | errors.IntegrityError]:
        """The plaintexts of blobs stored in ``data`` (a pack or a range of one; ``entries``'
        offsets are into it), each verified against its id, or the IntegrityError that says why
        it cannot be read. Decrypted, decompressed and hashed by engine/_seal without the GIL."""
        opened = compiled.open_blobs(
            data,
            [(e.offset, e.length, e.raw_length, e.id, e.type) for e in entries],
            self.master.encryption,
            self.master.identity,
        )
        return [
            plain if isinstance(plain, bytes) else errors.IntegrityError(f"blob {e.id.hex()[:16]}: {plain}")
            for e, plain in zip(entries, opened, strict=True)
        ]

    def decoded(
        self, data: bytes | memoryview, entries: list[BlobEntry], limit: int = DECODE_RUN
    ) -> Iterator[tuple[BlobEntry, bytes | errors.IntegrityError]]:
        """Each of ``entries`` with what :meth:`decode_blobs` makes of it, decoded in runs of at
        most ``limit`` plaintext bytes (or one blob): what one call holds decoded at once."""
        run: list[BlobEntry] = []
        size = 0
        for e in entries:
            if run and size + e.raw_length > limit:
                yield from zip(run, self.decode_blobs(data, run), strict=True)
                run, size = [], 0
            run.append(e)
            size += e.raw_length
        if run:
            yield from zip(run, self.decode_blobs(data, run), strict=True)

    def load_tree(self, tree_id: bytes) -> list[Node]:
        with self._tree_cache_lock:
            nodes = self._tree_cache.get(tree_id)
            if nodes is not None:
                self._tree_cache.move_to_end(tree_id)
                return nodes
        nodes = decode_tree(self.load_blob(tree_id), f"tree {tree_id.hex()[:16]}")
        with self._tree_cache_lock:
            self._tree_cache[tree_id] = nodes
            while len(self._tree_cache) > TREE_CACHE_SIZE:
                self._tree_cache.popitem(last=False)
        return nodes

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot_ids(self) -> list[str]:
        return sorted(o.name.split("/", 1)[1] for o in self.backend.list("snapshots/"))

    def load_snapshot(self, snap_id: str) -> Snapshot:
        snap = self._snapshots.get(snap_id)
        if snap is None:
            name = f"snapshots/{snap_id}"
            try:
                data = self.load_cached(name)
            except errors.ObjectNotFound:
                raise errors.SnapshotNotFound(f"snapshot {snap_id[:8]} does not exist") from None
            body = objects.unseal(self.cipher, data, fmt.AAD_SNAPSHOT, f"snapshot {snap_id[:8]}")
            try:
                snap = Snapshot.from_wire(body, snap_id)
            except (TypeError, ValueError, AttributeError):
                raise errors.IntegrityError(f"snapshot {snap_id[:8]}: snapshot file is malformed") from None
            self._snapshots[snap_id] = snap
        return snap

    def snapshots(self, *, skip_damaged: bool = False) -> list[Snapshot]:
        """All snapshots, oldest first. A snapshot file that fails verification raises, unless
        ``skip_damaged``: then it is left out, recorded in :attr:`damaged_snapshots` and warned
        about (listing, ``latest`` and retention policies go on with the readable ones; prune
        must not, as it cannot tell what an unreadable snapshot needs)."""
        ids = self.snapshot_ids()
        if self.cache:
            self.cache.retain("snapshots/", {f"snapshots/{i}" for i in ids})
        damaged: dict[str, DamagedSnapshot] = {}

        def load(snap_id: str) -> Snapshot | None:
            try:
                return self.load_snapshot(snap_id)
            except errors.SnapshotNotFound:
                if skip_damaged:
                    return None  # removed since the listing
                raise
            except errors.IntegrityError as exc:
                if not skip_damaged:
                    raise
                damaged[snap_id] = DamagedSnapshot(snap_id, str(exc).removeprefix(f"snapshot {snap_id[:8]}: "))
                return None

        with ThreadPoolExecutor(PARALLEL_READS) as pool:
            snaps = [s for s in pool.map(load, ids) if s is not None]
        if skip_damaged:
            self.damaged_snapshots = dict(sorted(damaged.items()))
            for d in self.damaged_snapshots.values():
                self.warn(
                    f"snapshots/{d.id}",
                    f"snapshot {d.id} is damaged and was skipped: {d.reason}; 'kubekeep forget {d.id[:12]}' removes it",
                )
        return sorted(snaps, key=lambda s: (s.time, s.id))

    def save_snapshot(self, snap: Snapshot) -> str:
        """Write a snapshot file. With Object Lock, first extend the retention of what it needs
        that is near its date, and record the dates set afterwards (docs/immutability.md)."""
        if self.object_lock is not None:
            extend_for_snapshot(self, bytes.fromhex(snap.tree), parse_time(snap.time))
        snap.id = self.save_object("snapshots", snap.to_wire(), fmt.AAD_SNAPSHOT)
        self._snapshots[snap.id] = snap
        flush_retention(self)
        return snap.id

    def delete_snapshot(self, snap_id: str) -> None:
        self.backend.delete(f"snapshots/{snap_id}")
        self._snapshots.pop(snap_id, None)
        self.damaged_snapshots.pop(snap_id, None)
        if self.cache:
            self.cache.discard(f"snapshots/{snap_id}")

    def snapshot_name(self, ref: str) -> str:
        """The storage name (full id) of the snapshot file a unique id prefix names; the file is
        not read, so this works for damaged snapshots too."""
        if not ref:
            raise errors.UsageError("empty snapshot reference")
        matches = [i for i in self.snapshot_ids() if i.startswith(ref.lower())]
        if not matches:
            raise errors.SnapshotNotFound(f"no snapshot matches {ref!r}")
        if len(matches) > 1:
            raise errors.UsageError(
                f"snapshot prefix {ref!r} is ambiguous ({len(matches)} snapshots match); give more characters"
            )
        return matches[0]

    def find_snapshot(self, ref: str, *, kind: str | None = None, uri: str | None = None) -> Snapshot:
        """Resolve ``latest`` (the newest readable snapshot; damaged ones are skipped with a
        warning) or a unique id prefix to a snapshot."""
        if ref == "latest":
            snaps = [
                s
                for s in self.snapshots(skip_damaged=True)
                if (kind is None or s.kind == kind) and (uri is None or s.uri == uri)
            ]
            if not snaps:
                raise errors.SnapshotNotFound("no snapshot found for 'latest'")
            return snaps[-1]
        return self.load_snapshot(self.snapshot_name(ref))

    # -- walking ------------------------------------------------------------------------------
    def walk(self, tree_id: bytes, prefix: str = "") -> Iterator[tuple[str, Node]]:
        """Depth-first pre-order walk: ``(path, node)`` for everything under ``tree_id``."""
        for node in self.load_tree(tree_id):
            path = f"{prefix}/{node.name}" if prefix else node.name
            yield path, node
            if node.type == "dir" and node.subtree is not None:
                yield from self.walk(node.subtree, path)

    def resolve(self, snap: Snapshot, path: str) -> Node:
        """The node at ``path`` in ``snap`` (``""`` or ``/`` is the root, as a directory node)."""
        root = Node(name="", type="dir", mode=0o755, subtree=bytes.fromhex(snap.tree))
        parts = [p for p in path.strip("/").split("/") if p]
        node = root
        for i, part in enumerate(parts):
            if node.type != "dir" or node.subtree is None:
                raise errors.PathNotFound(f"{'/'.join(parts[:i])} is not a directory in snapshot {snap.short_id}")
            found = next((n for n in self.load_tree(node.subtree) if n.name == part), None)
            if found is None:
                raise errors.PathNotFound(f"no /{'/'.join(parts[: i + 1])} in snapshot {snap.short_id}")
            node = found
        return node

    def read_file(self, node: Node) -> Iterator[bytes]:
        return self.read_blobs(node.content)

    def read_blobs(self, blob_ids: list[bytes]) -> Iterator[bytes]:
        """The plaintexts of ``blob_ids`` in order, each verified, like :meth:`load_blob` on each
        (raising at the first that cannot be read: see :meth:`read_blob_results`)."""
        for plain in self.read_blob_results(blob_ids):
            if isinstance(plain, errors.KubekeepError):
                raise plain
            yield plain

    def read_blob_results(self, blob_ids: list[bytes]) -> Iterator[bytes | BlobUnreadable]:
        """The plaintexts of ``blob_ids`` in order, each verified, or the error (damaged, or its
        pack gone) that stands in for one that cannot be read; the others are still read.

        Data blobs that follow each other in one pack (a file's chunks, a directory's small
        files: the backup wrote them in that order) are fetched with one ranged read, gaps of
        up to ``READ_GAP`` included, at most ``READ_SPAN`` at a time: one request instead of one
        per blob, which is what makes restores from object storage and of many small files fast.
        """
        locs = self.index.lookup_many(blob_ids)
        if None in locs:
            self.read_uncovered_pack_headers()  # or waits while another thread does
            locs = self.index.lookup_many(blob_ids)
        i, n = 0, len(blob_ids)
        while i < n:
            loc = locs[i]
            if loc is None or loc.type != DATA:
                plain: bytes | BlobUnreadable
                try:
                    plain = self.load_blob(blob_ids[i])  # the not-in-index error; trees use the cache
                except (errors.IntegrityError, errors.ObjectNotFound) as exc:
                    plain = exc
                yield plain
                i += 1
                continue
            start, end, j = loc.offset, loc.offset + loc.length, i + 1
            while j < n:
                nxt = locs[j]
                if (
                    nxt is None
                    or nxt.pack_id != loc.pack_id
                    or nxt.type != DATA
                    or nxt.offset < end
                    or nxt.offset - end > READ_GAP
                    or nxt.offset + nxt.length - start > READ_SPAN
                ):
                    break
                end = nxt.offset + nxt.length
                j += 1
            try:
                span = self.backend.load(pack_name(loc.pack_id), start, end - start)
            except errors.ObjectNotFound as exc:
                for _ in range(i, j):
                    yield exc
                i = j
                continue
            entries: list[BlobEntry] = []
            for k in range(i, j):
                at = locs[k]
                assert at is not None
                entries.append(BlobEntry(DATA, blob_ids[k], at.offset - start, at.length, at.raw_length))
            for _, plain in self.decoded(span, entries, STREAM_RUN):
                yield plain
            i = j

    def lock(self, *, exclusive: bool = False) -> RepositoryLock:
        """A context manager holding a shared (or exclusive) lock on the repository."""
        return RepositoryLock(self, exclusive=exclusive)

    def close(self) -> None:
        self.backend.close()


def _first_problem(problems: dict[str, str]) -> str:
    name, why = next(iter(problems.items()))
    return f"{name}: {why}"
