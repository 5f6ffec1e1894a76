"""``etcd://`` importer: a verified point-in-time snapshot of one etcd member.

URI: ``etcd://HOST:PORT[,HOST:PORT...]`` (``etcds://`` forces TLS), optionally with query
options ``?cacert=PATH&cert=PATH&key=PATH&tls=1&server_name=NAME&connect_timeout=SECONDS``.
Keyword arguments override the query; TLS files default to etcdctl's environment variables
``ETCDCTL_CACERT``, ``ETCDCTL_CERT`` and ``ETCDCTL_KEY``, and an empty host list to
``ETCDCTL_ENDPOINTS``. The endpoints are tried in order and the first that answers serves
the whole backup.

The snapshot tree holds one file, ``etcd/snapshot.db``, byte for byte what
``etcdctl snapshot save`` would write (bbolt database + 32-byte SHA-256), so
``etcdutl snapshot restore`` accepts it as is.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import IO, Any, cast
from urllib.parse import parse_qsl

from kubekeep.engine.entries import ChunkHint, Entry, EntryType, Importer, SnapshotKind, SourceInfo
from kubekeep.errors import UsageError
from kubekeep.etcd.boltmeta import META_HEAD, page_size_of, read_snapshot_info
from kubekeep.etcd.client import EtcdClient, Member, Status
from kubekeep.etcd.snapshot import SnapshotStream

SCHEMES = ("etcd", "etcds")
SNAPSHOT_DIR = "etcd"
SNAPSHOT_PATH = "etcd/snapshot.db"

_URI_RE = re.compile(r"^(etcds?)://([^/?#]*)/?(?:\?([^#]*))?$", re.I)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_STR_OPTS = ("cacert", "cert", "key", "server_name")
_FLOAT_OPTS = ("connect_timeout", "timeout")


def _parse_bool(name: str, text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise UsageError(f"etcd URI option {name}={text!r} is not a boolean")


def parse_uri(uri: str) -> tuple[list[str], dict[str, Any]]:
    """Split an ``etcd://`` / ``etcds://`` URI into endpoint strings and options."""
    m = _URI_RE.match(uri.strip())
    if not m:
        raise UsageError(f"bad etcd URI {uri!r}: expected etcd://HOST:PORT[,HOST:PORT...]")
    scheme, hosts, query = m.group(1).lower(), m.group(2), m.group(3) or ""
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _STR_OPTS:
            options[name] = value
        elif name in _FLOAT_OPTS:
            try:
                options[name] = float(value)
            except ValueError:
                raise UsageError(f"etcd URI option {name}={value!r} is not a number") from None
        elif name == "tls":
            options["tls"] = _parse_bool(name, value)
        else:
            raise UsageError(f"unknown etcd URI option {name!r}")
    if scheme == "etcds":
        options["tls"] = True
    return [h for h in hosts.split(",") if h.strip()], options


def _members_meta(members: Sequence[Member] | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in members:
        d = m.to_dict() if isinstance(m, Member) else m
        out.append(
            {
                "id": d["id"],
                "name": d.get("name", ""),
                "peer_urls": list(d.get("peer_urls", [])),
                "client_urls": list(d.get("client_urls", [])),
            }
        )
    return out


class EtcdImporter(Importer):
    """Streams one etcd member's snapshot into the repository as ``etcd/snapshot.db``."""

    scheme = "etcd"

    def __init__(
        self,
        endpoints: str | Sequence[str] | None,
        cacert: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        *,
        tls: bool | None = None,
        server_name: str | None = None,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        if not endpoints:
            endpoints = env.get("ETCDCTL_ENDPOINTS", "")
            if not endpoints:
                raise UsageError("no etcd endpoint given (etcd://HOST:PORT or ETCDCTL_ENDPOINTS)")
        cacert = cacert or env.get("ETCDCTL_CACERT") or None
        cert = cert or env.get("ETCDCTL_CERT") or None
        key = key or env.get("ETCDCTL_KEY") or None
        self.client = EtcdClient(
            endpoints,
            cacert=cacert,
            cert=cert,
            key=key,
            tls=tls,
            server_name=server_name,
            connect_timeout=connect_timeout,
            timeout=timeout,
        )
        self._endpoints = self.client.endpoints
        self.uri = "etcd://" + ",".join(e.address for e in self._endpoints)
        self._status: Status | None = None
        self._members: list[Member] | None = None
        self._snap_status: Status | None = None
        self._after_status: Status | None = None
        self._stream: SnapshotStream | None = None
        self._warnings: list[str] = []

    # -- Importer ---------------------------------------------------------------------------

    def source(self) -> SourceInfo:
        """Connect (first answering endpoint), then read Status and MemberList there."""
        if self._status is None:
            self.client.connect()
            self._status = self.client.status()
            self._members = self.client.member_list()
            for err in self._status.errors:
                self._warnings.append(f"etcd at {self._status.endpoint} reports: {err}")
            if self._status.leader in ("", "0"):
                self._warnings.append(f"etcd at {self._status.endpoint} has no leader; its snapshot may be stale")
        st = self._status
        cluster = st.cluster_id if st.cluster_id not in ("", "0") else ""
        return SourceInfo(
            uri=self.uri,
            kind=SnapshotKind.ETCD.value,
            host=cluster or str(self._endpoints[0]),
            extra={
                "endpoint": st.endpoint,
                "version": st.version,
                "cluster_id": st.cluster_id,
                "member_id": st.member_id,
                "members": _members_meta(self._members or []),
            },
        )

    def entries(self) -> Iterator[Entry]:
        self.source()
        assert self._status is not None
        now = time.time_ns()
        yield Entry(path=SNAPSHOT_DIR, type=EntryType.DIR, mode=0o700, mtime_ns=now)
        # the stream starts now: its first bytes (bbolt's first meta page) give the page size,
        # which tells the engine to cut the database into groups of whole pages (issue #16)
        stream = self._open_snapshot()
        head = _read_head(stream, META_HEAD)
        page_size = page_size_of(head)
        if page_size is None:
            self._warnings.append(
                f"etcd at {self._status.endpoint}: the snapshot does not start with a bbolt meta page; "
                "stored with the repository's default chunking"
            )
        first = [cast(IO[bytes], _Prefixed(head, stream))]

        def opener() -> IO[bytes]:
            # the stream opened above on the first call, a new one if asked again
            return first.pop() if first else self._open_snapshot()

        yield Entry(
            path=SNAPSHOT_PATH,
            type=EntryType.FILE,
            mode=0o600,
            mtime_ns=now,
            size=self._status.db_size,  # a hint: the stream's own length is authoritative
            attrs={"etcd_endpoint": self._status.endpoint, "etcd_version": self._status.version},
            opener=opener,
            chunking=ChunkHint(page_size=page_size),
        )

    def _open_snapshot(self) -> IO[bytes]:
        if self._stream is not None:
            self._stream.close()
        self._snap_status = self.client.status()
        self._stream = self.client.snapshot()
        return cast(IO[bytes], self._stream)

    def metadata(self) -> dict[str, Any]:
        """Status + MemberList facts and the verified SHA-256 of the streamed database."""
        self.source()
        st = self._snap_status or self._status
        assert st is not None
        stream = self._stream
        if stream is not None and stream.complete and self._after_status is None:
            self._after_status = self.client.status()
        after = self._after_status
        return {
            "etcd": {
                "version": st.version,
                "revision": st.revision,
                "revision_after": after.revision if after else None,
                "raft_term": st.raft_term,
                "leader": st.leader,
                "member_id": st.member_id,
                "members": _members_meta(self._members or []),
                "cluster_id": st.cluster_id,
                "db_size": stream.db_size if stream is not None and stream.complete else st.db_size,
                "sha256": stream.sha256 if stream is not None else None,
                "endpoint": st.endpoint,
                "storage_version": (stream.version if stream is not None else "") or st.storage_version,
            }
        }

    def warnings(self) -> list[str]:
        return list(self._warnings)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.client.close()


def _read_head(stream: IO[bytes], n: int) -> bytes:
    """The first ``n`` bytes of ``stream`` (fewer if it ends first)."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read from ``stream``) followed by the rest of ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        out = memoryview(b).cast("B")
        if self._head:
            k = min(len(out), len(self._head))
            out[:k] = self._head[:k]
            self._head = self._head[k:]
            if k == len(out):
                return k
            return k + int(self._stream.readinto(out[k:]))  # type: ignore[attr-defined]
        return int(self._stream.readinto(out))  # type: ignore[attr-defined]  # SnapshotStream has it

    def close(self) -> None:
        self._stream.close()
        super().close()


def snapshot_file_metadata(path: str | os.PathLike[str], *, check_hash: bool = True) -> dict[str, Any]:
    """The importer's metadata shape, read offline from a snapshot file with boltmeta.

    Facts only a live member knows (endpoint, leader, raft term, member id) are None; the
    file adds what only it knows (live key count, consistent index, compaction revision).
    """
    info = read_snapshot_info(path, check_hash=check_hash)
    return {
        "etcd": {
            "version": info.cluster_version,
            "revision": info.revision,
            "revision_after": None,
            "raft_term": info.term,
            "leader": None,
            "member_id": None,
            "members": _members_meta(info.members),
            "cluster_id": info.cluster_id,
            "db_size": info.db_size,
            "sha256": info.sha256,
            "endpoint": None,
            "storage_version": info.storage_version,
            "live_keys": info.live_keys,
            "revisions": info.revisions,
            "compact_revision": info.compact_revision,
            "consistent_index": info.consistent_index,
            "hash_ok": info.hash_ok,
            "file": os.fspath(path),
        }
    }


@dataclass(frozen=True)
class EtcdSourceOptions:
    """TLS and timeouts of an ``etcd://`` source; each given one overrides the URI's query."""

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None
    tls: bool | None = None
    connect_timeout: float | None = None
    timeout: float | None = None
    #: where ETCDCTL_* defaults come from (default: the process environment)
    env: Mapping[str, str] | None = None


SOURCE_OPTIONS = EtcdSourceOptions


def open_importer(uri: str, options: EtcdSourceOptions) -> EtcdImporter:
    """Build an :class:`EtcdImporter` from an ``etcd://`` / ``etcds://`` URI and its options."""
    hosts, from_uri = parse_uri(uri)
    given = {f.name: getattr(options, f.name) for f in fields(options)}
    from_uri.update({k: v for k, v in given.items() if v is not None})
    return EtcdImporter(hosts or None, **from_uri)
