"""A fault-injecting HTTP proxy on loopback, to put in front of an S3 server in tests.

It speaks just enough HTTP/1.1 to find where each request and response ends (Content-Length,
chunked, or until the server closes), so it can misbehave at the level a client notices: reset
the connection before or after the server handled a request, answer 500 or 503 itself, answer
late, dribble the body, or cut the body short. Which request gets which fault follows a seeded
random schedule (``FaultRates``), or an explicit queue of faults (``FaultProxy.schedule``)::

    with FaultProxy(server.endpoint_url, seed=7, rates=FaultRates(reset_after=0.05)) as proxy:
        S3Backend(bucket, endpoint_url=proxy.url, ...)
        ...
        proxy.injected   # Counter of the faults that actually happened

Threads interleave requests, so a seed fixes the sequence of decisions, not which request of a
concurrent client meets which one.
"""

from __future__ import annotations

import contextlib
import enum
import random
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from types import TracebackType

HOST = "127.0.0.1"
MAX_HEAD = 64 * 1024


class Fault(enum.Enum):
    RESET_BEFORE = "reset before the request reaches the server"
    RESET_AFTER = "reset after the server answered"
    ERROR_500 = "500 InternalError"
    ERROR_503 = "503 SlowDown"
    DELAY = "late answer"
    SLOW = "body dribbled in small pieces"
    TRUNCATE = "body cut short"
    STALL = "no answer for stall_s seconds (longer than a client's read timeout)"
    CUT_UNFRAMED = "body cut short, sent without Content-Length and ended by closing"


@dataclass(frozen=True)
class FaultRates:
    """Probability per request of each fault (their sum at most 1)."""

    reset_before: float = 0.0
    reset_after: float = 0.0
    error_500: float = 0.0
    error_503: float = 0.0
    delay: float = 0.0
    slow: float = 0.0
    truncate: float = 0.0
    stall: float = 0.0
    cut_unframed: float = 0.0

    @classmethod
    def uniform(cls, total: float) -> FaultRates:
        """``total`` spread evenly over every kind of fault but stalls and unframed cuts."""
        names = [f.name for f in fields(cls) if f.name not in ("stall", "cut_unframed")]
        return cls(**{name: total / len(names) for name in names})

    def table(self) -> list[tuple[float, Fault]]:
        out, acc = [], 0.0
        for f in fields(self):
            acc += float(getattr(self, f.name))
            out.append((acc, Fault[f.name.upper()]))
        if acc > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {acc}, more than 1")
        return out


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # lower-case names


class _Closed(Exception):
    """The peer closed the connection where a message should have started."""


def _read_head(stream: socket.SocketIO | object) -> bytes:
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline(MAX_HEAD)  # type: ignore[attr-defined]
        if not line:
            if not head:
                raise _Closed
            raise ConnectionError("connection closed inside a message head")
        head += line
        if len(head) > MAX_HEAD:
            raise ConnectionError("message head too long")
    return bytes(head)


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _build_head(first: str, headers: list[tuple[str, str]]) -> bytes:
    return (first + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode("latin-1")


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def _read_body(stream: object, headers: list[tuple[str, str]], *, until_close: bool) -> bytes:
    """The body as it travels (chunked bodies keep their framing)."""
    read = stream.read  # type: ignore[attr-defined]
    readline = stream.readline  # type: ignore[attr-defined]
    if (_header(headers, "transfer-encoding") or "").lower() == "chunked":
        out = bytearray()
        while True:
            size_line = readline(MAX_HEAD)
            if not size_line:
                raise ConnectionError("connection closed inside a chunked body")
            out += size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    line = readline(MAX_HEAD)
                    out += line
                    if line in (b"\r\n", b"\n", b""):
                        return bytes(out)
            chunk = read(size + 2)
            if len(chunk) < size + 2:
                raise ConnectionError("connection closed inside a chunk")
            out += chunk
    length = _header(headers, "content-length")
    if length is not None:
        n = int(length)
        data = read(n) if n else b""
        if len(data) < n:
            raise ConnectionError("connection closed inside a body")
        return bytes(data)
    return bytes(read()) if until_close else b""


def _abort(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed peer or a middlebox does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


_ERROR_BODY = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


class FaultProxy:
    """A threaded HTTP proxy from ``url`` to ``upstream`` that injects faults."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        rates: FaultRates | None = None,
        max_delay_s: float = 0.4,
        stall_s: float = 5.0,
        applies_to: Callable[[Request], bool] | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise ValueError(f"upstream must be http://HOST:PORT, not {upstream!r}")
        self.upstream = (parsed.hostname, parsed.port)
        self.seed = seed
        self.rates = rates or FaultRates()
        self.max_delay_s = max_delay_s
        self.stall_s = stall_s
        self.applies_to = applies_to
        self.enabled = True
        #: faults that actually happened, and requests seen
        self.injected: Counter[Fault] = Counter()
        self.requests = 0
        self._rng = random.Random(seed)
        self._table = self.rates.table()
        self._queue: deque[Fault | None] = deque()
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0))
        self.url = f"http://{HOST}:{self._listener.getsockname()[1]}"
        self._open: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="faultproxy", daemon=True)

    # -- control ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks = list(self._open)
        for sock in socks:
            _abort(sock)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def schedule(self, *faults: Fault | None) -> None:
        """The next matching requests meet these faults (None: no fault), before the random schedule."""
        with self._lock:
            self._queue.extend(faults)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No faults inside the block (requests still pass through)."""
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True

    @property
    def faults(self) -> int:
        return sum(self.injected.values())

    # -- the proxy -------------------------------------------------------------------------

    def _decide(self, request: Request) -> tuple[Fault | None, float]:
        """The fault for this request, and a random number in [0, 1) for its details."""
        with self._lock:
            self.requests += 1
            if not self.enabled or (self.applies_to is not None and not self.applies_to(request)):
                return None, 0.0
            if self._queue:
                return self._queue.popleft(), self._rng.random()
            r = self._rng.random()
            detail = self._rng.random()
        for bound, fault in self._table:
            if r < bound:
                return fault, detail
        return None, detail

    def _count(self, fault: Fault) -> None:
        with self._lock:
            self.injected[fault] += 1

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.add(client)
            threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            cin = client.makefile("rb")
            up_in = None
            while not self._stopped.is_set():
                try:
                    head = _read_head(cin)
                except _Closed:
                    return
                first, headers = _parse_head(head)
                method, target, _ = first.split(" ", 2)
                if (_header(headers, "expect") or "").lower() == "100-continue":
                    headers = [(n, v) for n, v in headers if n.lower() != "expect"]
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = _read_body(cin, headers, until_close=False)
                path, _, query = target.partition("?")
                request = Request(method, path, query, {n.lower(): v for n, v in headers})
                fault, detail = self._decide(request)

                if fault is Fault.RESET_BEFORE:
                    self._count(fault)
                    _abort(client)
                    return
                if fault in (Fault.ERROR_500, Fault.ERROR_503):
                    self._count(fault)
                    self._answer_error(client, 500 if fault is Fault.ERROR_500 else 503)
                    continue

                if upstream is None:
                    upstream = socket.create_connection(self.upstream, timeout=120)
                    with self._lock:
                        self._open.add(upstream)
                    up_in = upstream.makefile("rb")
                upstream.sendall(_build_head(first, headers) + body)
                assert up_in is not None
                status_line, rheaders = _parse_head(_read_head(up_in))
                status = int(status_line.split(" ", 2)[1])
                no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                rbody = b"" if no_body else _read_body(up_in, rheaders, until_close=True)
                server_closes = (_header(rheaders, "connection") or "").lower() == "close" or (
                    not no_body
                    and _header(rheaders, "content-length") is None
                    and (_header(rheaders, "transfer-encoding") or "").lower() != "chunked"
                )
                if server_closes:
                    with self._lock:
                        self._open.discard(upstream)
                    upstream.close()
                    upstream, up_in = None, None
                rhead = _build_head(status_line, rheaders)

                if fault is Fault.RESET_AFTER:
                    self._count(fault)
                    _abort(client)
                    return
                if fault is Fault.TRUNCATE and rbody:
                    self._count(fault)
                    client.sendall(rhead + rbody[: int(detail * len(rbody))])
                    with contextlib.suppress(OSError):
                        client.shutdown(socket.SHUT_RDWR)
                    return
                if fault is Fault.CUT_UNFRAMED and rbody and (_header(rheaders, "transfer-encoding") or "") == "":
                    self._count(fault)
                    unframed = [(n, v) for n, v in rheaders if n.lower() not in ("content-length", "connection")]
                    client.sendall(
                        _build_head(status_line, [*unframed, ("Connection", "close")])
                        + rbody[: int(detail * len(rbody))]
                    )
                    with contextlib.suppress(OSError):
                        client.shutdown(socket.SHUT_RDWR)
                    return
                if fault is Fault.DELAY:
                    self._count(fault)
                    time.sleep(0.05 + detail * self.max_delay_s)
                if fault is Fault.STALL:
                    self._count(fault)
                    if self._stopped.wait(self.stall_s):
                        return
                if fault is Fault.SLOW and rbody:
                    self._count(fault)
                    client.sendall(rhead)
                    pieces = max(2, min(20, len(rbody) // 1024))
                    step = -(-len(rbody) // pieces)
                    for at in range(0, len(rbody), step):
                        client.sendall(rbody[at : at + step])
                        time.sleep(self.max_delay_s / pieces)
                else:
                    client.sendall(rhead + rbody)
                if server_closes:
                    return
        except (OSError, ConnectionError, ValueError, IndexError):
            return  # a broken or aborted connection: the client sees it closed
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._open.discard(sock)
                    with contextlib.suppress(OSError):
                        sock.close()

    @staticmethod
    def _answer_error(client: socket.socket, status: int) -> None:
        code, message = _ERROR_BODY[status]
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>"
        ).encode()
        reason = "Internal Server Error" if status == 500 else "Service Unavailable"
        client.sendall(
            _build_head(
                f"HTTP/1.1 {status} {reason}",
                [
                    ("Content-Type", "application/xml"),
                    ("Content-Length", str(len(body))),
                    ("x-amz-request-id", "faultproxy"),
                ],
            )
            + body
        )
