"""A minimal etcd v3 gRPC client: Maintenance.Status, Maintenance.Snapshot, Cluster.MemberList.

Endpoints are tried in order; the first that answers a Status call within the connect timeout
is used for everything after (a snapshot must come from one member). TLS works like
etcdctl's ``--cacert/--cert/--key``. Failures become kubekeep errors with one-line messages:
nothing answering is :class:`SourceUnreachable` (naming every endpoint tried), a TLS or
authorisation problem is :class:`ConnectorError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# gRPC's C core logs TLS failures to stderr on its own; kubekeep reports them as one-line
# errors instead. An explicit GRPC_VERBOSITY from the user still wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc

from kubekeep.errors import ConnectorError, IntegrityError, SourceUnreachable, UsageError

from . import services
from ._proto import rpc_pb2
from .snapshot import SnapshotStream

DEFAULT_PORT = 2379

_TLS_HINTS = ("ssl", "tls", "tsi_", "handshake", "certificate", "x509", "alert", "wrong_version", "verification check")
_AUTH_HINTS = (
    "permission denied",
    "user not found",
    "user name not found",
    "user name is empty",
    "invalid auth token",
    "authentication failed",
)
_MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd client URL. ``secure`` is None when the endpoint named no scheme."""

    host: str
    port: int
    secure: bool | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.address


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``host[:port]``, ``http://host:port``, ``https://host:port`` or ``[v6]:port``."""
    spec = text.strip()
    secure: bool | None = None
    m = re.match(r"^(https?)://", spec, re.I)
    if m:
        secure = m.group(1).lower() == "https"
        spec = spec[m.end() :]
    spec = spec.rstrip("/")
    if not spec or "/" in spec:
        raise UsageError(f"bad etcd endpoint {text!r}: expected HOST:PORT or https://HOST:PORT")
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0:
            raise UsageError(f"bad etcd endpoint {text!r}: unterminated IPv6 address")
        host, rest = spec[1:end], spec[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise UsageError(f"bad etcd endpoint {text!r}")
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    elif ":" in spec:
        host, port_text = spec, ""  # bare IPv6 address
    else:
        host, port_text = spec, ""
    if not host:
        raise UsageError(f"bad etcd endpoint {text!r}: no host")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"bad etcd endpoint {text!r}: port must be 1-65535")
        port = int(port_text)
    else:
        port = DEFAULT_PORT
    return Endpoint(host, port, secure)


def parse_endpoints(spec: str | Sequence[str]) -> list[Endpoint]:
    """Parse a comma-separated string or a sequence of endpoint strings (order is kept)."""
    items = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    endpoints = [parse_endpoint(s) for s in items if s.strip()]
    if not endpoints:
        raise UsageError("no etcd endpoint given")
    return endpoints


@dataclass(slots=True)
class Member:
    id: str  # hex, as etcdctl prints it
    name: str
    peer_urls: list[str] = field(default_factory=list)
    client_urls: list[str] = field(default_factory=list)
    is_learner: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Status:
    """Maintenance.Status of the member answering at ``endpoint``."""

    endpoint: str
    version: str
    db_size: int
    db_size_in_use: int
    revision: int
    raft_term: int
    raft_index: int
    raft_applied_index: int
    leader: str  # hex member id
    member_id: str  # hex member id of the answering member
    cluster_id: str  # hex
    is_learner: bool
    storage_version: str
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _read_file(path: str | os.PathLike[str] | None, what: str) -> bytes | None:
    if path is None or path == "":
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read etcd {what} {os.fspath(path)}: {exc.strerror}") from exc


def _rpc_details(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return code, _one_line(details or str(code))


def _is_tls_failure(details: str) -> bool:
    low = details.lower()
    return any(h in low for h in _TLS_HINTS)


def _tls_reason(details: str) -> str:
    """Say what a gRPC TLS failure means in etcdctl terms."""
    low = details.lower()
    m = re.search(r"certificate_verify_failed:?\s*([^:]+)", low)
    if m:
        return f"server certificate not trusted ({m.group(1).strip()}; check cacert)"
    if "peer name" in low or "hostname" in low or "subject alternative" in low:
        return (
            "server certificate does not match the host name "
            "(--etcd-server-name or server_name= names the one to check)"
        )
    if "tsi_data_corrupted" in low or "unwrap failed" in low or "certificate_required" in low:
        return "the server rejected the TLS session (client certificate missing or not trusted?)"
    if "wrong_version_number" in low or "packet_length_too_long" in low:
        return "the endpoint does not speak TLS (use http:// or drop cacert/cert/key)"
    return details.rsplit("last error:", 1)[-1].strip()


def rpc_error(exc: grpc.RpcError, endpoint: str, action: str) -> ConnectorError:
    """Map a gRPC error from an established connection to a kubekeep error."""
    code, details = _rpc_details(exc)
    auth_refusal = any(h in details.lower() for h in _AUTH_HINTS)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or auth_refusal:
        return ConnectorError(
            f"etcd at {endpoint} refused {action}: {details} "
            "(check the client certificate or the etcd user's permissions)"
        )
    if code == grpc.StatusCode.UNAVAILABLE and _is_tls_failure(details):
        return ConnectorError(f"TLS with etcd at {endpoint} failed during {action}: {_tls_reason(details)}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return SourceUnreachable(f"etcd at {endpoint} stopped answering during {action}: {details}")
    name = code.name if code is not None else "error"
    return ConnectorError(f"etcd at {endpoint} failed {action}: {name}: {details}")


class EtcdClient:
    """Connects to the first answering endpoint and talks to that member only.

    ``tls``: None decides per endpoint (an ``https://`` endpoint or any of cacert/cert/key
    means TLS); True/False forces it for endpoints without a scheme. ``server_name``
    overrides the name checked against the server certificate.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        cacert: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        tls: bool | None = None,
        server_name: str | None = None,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        if bool(cert) != bool(key):
            raise UsageError("etcd client TLS needs both a certificate and its key (cert= and key=)")
        self._ca = _read_file(cacert, "CA certificate")
        self._cert = _read_file(cert, "client certificate")
        self._key = _read_file(key, "client key")
        self._tls_default = tls if tls is not None else bool(self._ca or self._cert)
        self._server_name = server_name
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._channel: grpc.Channel | None = None
        self._endpoint: Endpoint | None = None
        self._secure = False

    # -- connection -------------------------------------------------------------------------

    def _uses_tls(self, ep: Endpoint) -> bool:
        return ep.secure if ep.secure is not None else self._tls_default

    def _open_channel(self, ep: Endpoint) -> grpc.Channel:
        options: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1_000),
        ]
        if self._uses_tls(ep):
            if self._server_name:
                options.append(("grpc.ssl_target_name_override", self._server_name))
            creds = grpc.ssl_channel_credentials(
                root_certificates=self._ca, private_key=self._key, certificate_chain=self._cert
            )
            return grpc.secure_channel(ep.address, creds, options=options)
        return grpc.insecure_channel(ep.address, options=options)

    def connect(self) -> Endpoint:
        """Use the first endpoint that answers Status; return it. Idempotent."""
        if self._endpoint is not None:
            return self._endpoint
        failures: list[str] = []
        tls_failures: list[str] = []
        for ep in self.endpoints:
            channel = self._open_channel(ep)
            try:
                services.maintenance(channel).Status(rpc_pb2.StatusRequest(), timeout=self.connect_timeout)
            except grpc.RpcError as exc:
                channel.close()
                code, details = _rpc_details(exc)
                if code == grpc.StatusCode.UNAVAILABLE and _is_tls_failure(details):
                    tls_failures.append(f"{ep}: {_tls_reason(details)}")
                elif code == grpc.StatusCode.UNAVAILABLE:
                    failures.append(f"{ep}: {_short_reason(details)}")
                elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    failures.append(f"{ep}: no answer within {self.connect_timeout:g}s")
                else:
                    raise rpc_error(exc, str(ep), "the status request") from None
                continue
            self._channel, self._endpoint, self._secure = channel, ep, self._uses_tls(ep)
            return ep
        if tls_failures:
            raise ConnectorError("TLS with etcd failed (check cacert/cert/key): " + "; ".join(tls_failures + failures))
        raise SourceUnreachable(f"no etcd endpoint answered ({len(failures)} tried): " + "; ".join(failures))

    @property
    def endpoint(self) -> Endpoint:
        return self.connect()

    @property
    def secure(self) -> bool:
        self.connect()
        return self._secure

    def _chan(self) -> grpc.Channel:
        self.connect()
        assert self._channel is not None
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._endpoint = None

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ------------------------------------------------------------------------------

    def status(self) -> Status:
        """Maintenance.Status of the connected member."""
        stub = services.maintenance(self._chan())
        try:
            r = stub.Status(rpc_pb2.StatusRequest(), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, str(self._endpoint), "the status request") from None
        return Status(
            endpoint=str(self._endpoint),
            version=r.version,
            db_size=r.dbSize,
            db_size_in_use=r.dbSizeInUse,
            revision=r.header.revision,
            raft_term=r.raftTerm,
            raft_index=r.raftIndex,
            raft_applied_index=r.raftAppliedIndex,
            leader=f"{r.leader:x}",
            member_id=f"{r.header.member_id:x}",
            cluster_id=f"{r.header.cluster_id:x}",
            is_learner=r.isLearner,
            storage_version=r.storageVersion,
            errors=list(r.errors),
        )

    def member_list(self) -> list[Member]:
        """Cluster.MemberList as seen by the connected member."""
        stub = services.cluster(self._chan())
        try:
            r = stub.MemberList(rpc_pb2.MemberListRequest(), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, str(self._endpoint), "the member list request") from None
        return [
            Member(
                id=f"{m.ID:x}",
                name=m.name,
                peer_urls=list(m.peerURLs),
                client_urls=list(m.clientURLs),
                is_learner=m.isLearner,
            )
            for m in r.members
        ]

    def snapshot(self) -> SnapshotStream:
        """Open Maintenance.Snapshot on the connected member as a verifying byte stream.

        The stream yields exactly what ``etcdctl snapshot save`` writes (the bbolt database
        followed by its 32-byte SHA-256) and raises :class:`IntegrityError` at its end if the
        data was cut short or does not match the trailing hash. The first message is awaited
        here, so a member that is gone or refuses the snapshot fails this call
        (:class:`SourceUnreachable`/:class:`ConnectorError`) and any later failure is an
        :class:`IntegrityError`.
        """
        stub = services.maintenance(self._chan())
        endpoint = str(self._endpoint)
        call = stub.Snapshot(rpc_pb2.SnapshotRequest())

        def on_error(exc: BaseException, received: int, expected: int | None) -> Exception:
            if isinstance(exc, grpc.RpcError):
                if received == 0:
                    return rpc_error(exc, endpoint, "the snapshot request")
                _code, details = _rpc_details(exc)
            else:
                details = _one_line(str(exc)) or type(exc).__name__
            total = "?" if expected is None else str(expected)
            return IntegrityError(
                f"etcd snapshot stream from {endpoint} broke after {received} of {total} bytes: {details}"
            )

        stream = SnapshotStream(call, source=f"etcd at {endpoint}", cancel=call.cancel, error_hook=on_error)
        try:
            return stream.start()
        except BaseException:
            stream.close()
            raise

    # -- key-value (used by tests and tooling) -----------------------------------------------

    def put(self, key: bytes, value: bytes) -> int:
        """KV.Put; returns the new revision."""
        try:
            r = services.kv(self._chan()).Put(rpc_pb2.PutRequest(key=key, value=value), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, str(self._endpoint), "a put") from None
        return r.header.revision

    def delete(self, key: bytes, range_end: bytes = b"") -> int:
        """KV.DeleteRange; returns the number of keys deleted."""
        try:
            r = services.kv(self._chan()).DeleteRange(
                rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end), timeout=self.timeout
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, str(self._endpoint), "a delete") from None
        return r.deleted

    def range(self, key: bytes, range_end: bytes = b"", *, count_only: bool = False) -> rpc_pb2.RangeResponse:
        """KV.Range (linearizable)."""
        try:
            return services.kv(self._chan()).Range(
                rpc_pb2.RangeRequest(key=key, range_end=range_end, count_only=count_only),
                timeout=self.timeout,
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, str(self._endpoint), "a range request") from None


def _short_reason(details: str) -> str:
    """Boil gRPC's 'failed to connect to all addresses; last error: ...' down to its cause."""
    low = details.lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("name resolution", "name resolution failed"),
        ("dns resolution failed", "name resolution failed"),
        ("no route to host", "no route to host"),
        ("network is unreachable", "network unreachable"),
        ("timed out", "timed out"),
        ("connection reset", "connection reset (plaintext client on a TLS port?)"),
        ("socket closed", "connection closed by the server (TLS or plaintext mismatch?)"),
    ):
        if needle in low:
            return reason
    return details
