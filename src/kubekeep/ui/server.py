"""Running the UI: bind the socket first (so that the printed URL is right and a busy port is a
one-line error), then serve it with uvicorn, in the foreground or on a background thread."""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Any

import uvicorn

from kubekeep import errors
from kubekeep.ui.access import is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8737


def parse_listen(listen: str) -> tuple[str, int | None]:
    """``HOST:PORT``, ``HOST``, ``PORT``, ``:PORT`` or ``[V6]:PORT`` -> (host, port or None)."""
    text = listen.strip()
    if text.isdigit():
        host, port_text = "", text
    elif text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""  # a name, an IPv4 address or a bare IPv6 address
    if port_text and not (port_text.isdigit() and int(port_text) <= 65535):
        raise errors.UsageError(f"--listen {listen!r}: expected HOST:PORT with a port from 0 to 65535")
    return host or DEFAULT_HOST, int(port_text) if port_text else None


def bind(listen: str = f"{DEFAULT_HOST}:{DEFAULT_PORT}") -> socket.socket:
    """A listening socket for ``listen``; without a port, kubekeep's default port or, if that is
    taken, any free one."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [port] if port is not None else [DEFAULT_PORT, 0]
    for i, candidate in enumerate(candidates):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE and i + 1 < len(candidates):
                continue
            raise errors.UsageError(f"cannot listen on {host}:{candidate}: {exc.strerror}") from None
        except socket.gaierror as exc:
            sock.close()
            raise errors.UsageError(f"cannot listen on {host!r}: {exc.strerror}") from None
        sock.listen(128)
        sock.set_inheritable(True)
        return sock
    raise AssertionError("unreachable")


def url_of(sock: socket.socket, token: str) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"http://{shown}:{port}/?token={token}"


def listens_on_loopback(sock: socket.socket) -> bool:
    return is_loopback(sock.getsockname()[0])


class Server:
    """uvicorn serving ``app`` on an already bound socket; ``run()`` in the foreground, or
    ``start()``/``stop()`` on a background thread."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=5,
            )
        )
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> Server:
        self._thread = threading.Thread(target=self.run, name="kubekeep-ui", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the UI server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
