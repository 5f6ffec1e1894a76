"""Server side of RFC 6455 WebSockets, just enough for the kubelet's streaming endpoints
(``v4.channel.k8s.io``: binary messages whose first byte is a channel number).

One thread per connection does all reads and writes of the TLS socket (an OpenSSL connection
must not be read and written from two threads at once): :func:`pump` waits on the socket and
on the local file descriptors whose output goes to the client.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import ssl
import struct
from collections.abc import Callable

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return head + payload


class FrameParser:
    """Incremental parser of client frames (masked), reassembling fragmented messages."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._message = bytearray()
        self._opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            if len(self.buf) < 2:
                return out
            b0, b1 = self.buf[0], self.buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(self.buf) < 4:
                    return out
                (n,) = struct.unpack_from(">H", self.buf, 2)
                pos = 4
            elif n == 127:
                if len(self.buf) < 10:
                    return out
                (n,) = struct.unpack_from(">Q", self.buf, 2)
                pos = 10
            masked = bool(b1 & 0x80)
            end = pos + (4 if masked else 0) + n
            if len(self.buf) < end:
                return out
            data_start = pos + (4 if masked else 0)
            payload = bytes(self.buf[data_start:end])
            if masked:
                payload = _unmask(payload, bytes(self.buf[pos : pos + 4]))
            del self.buf[:end]
            op = b0 & 0x0F
            if op >= OP_CLOSE:  # control frames are never fragmented
                out.append((op, payload))
                continue
            if op != OP_CONT:
                self._opcode = op
            self._message += payload
            if b0 & 0x80:
                out.append((self._opcode, bytes(self._message)))
                self._message = bytearray()


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


def pump(
    sock: ssl.SSLSocket | socket.socket,
    initial: bytes,
    sources: dict[int, int],
    on_message: Callable[[int, bytes], bool],
    *,
    on_source_closed: Callable[[int], bool],
) -> None:
    """Relay until done: client messages go to ``on_message(opcode, payload)`` (False ends the
    loop); whatever is read from a source fd is sent as a message on its channel; when a
    source reaches its end, ``on_source_closed(fd)`` decides whether to stop."""
    parser = FrameParser()
    open_sources = dict(sources)

    def handle(data: bytes) -> bool:
        for op, payload in parser.feed(data):
            if op == OP_CLOSE:
                return False
            if op == OP_PING:
                sock.sendall(frame(payload, OP_PONG))
                continue
            if op == OP_PONG:
                continue
            if not on_message(op, payload):
                return False
        return True

    if initial and not handle(initial):
        return
    while True:
        readable = [sock.fileno(), *open_sources]
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        ready = [sock.fileno()] if pending else select.select(readable, [], [])[0]
        if sock.fileno() in ready:
            try:
                data = sock.recv(1 << 20)
            except (OSError, ssl.SSLError):
                return
            if not data or not handle(data):
                return
        for fd in ready:
            if fd == sock.fileno():
                continue
            try:
                data = os.read(fd, 1 << 20)
            except OSError:
                data = b""
            if data:
                sock.sendall(frame(bytes([open_sources[fd]]) + data))
            else:
                del open_sources[fd]
                if on_source_closed(fd):
                    return
