"""A TCP connection to a pod's port through the API server (the ``portforward`` subresource).

The WebSocket (``v4.channel.k8s.io``) is driven by the client library's ``PortForward``, which
does every read and write of the TLS socket on one thread (an OpenSSL connection must not be
used from two at once) and hands us the other end of a socket pair: a plain socket for the
agent protocol. Nothing listens on a local port, so nothing else on this machine can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.stream import ws_client

from kubekeep import errors
from kubekeep.kube.config import ClusterAccess
from kubekeep.kube.requesting import api_path

# the client library's stream module is untyped
create_websocket: Callable[..., Any] = ws_client.create_websocket
get_websocket_url: Callable[..., str] = ws_client.get_websocket_url
PortForward: Callable[..., Any] = ws_client.PortForward


def websocket_headers(access: ClusterAccess, protocol: str) -> dict[str, str]:
    """Headers for a WebSocket to the API server: the subprotocol and, for token credentials,
    the (refreshed) bearer token; client certificates ride on the TLS connection."""
    headers = {"sec-websocket-protocol": protocol}
    for auth in access.api_client.configuration.auth_settings().values():
        if auth.get("in") == "header" and auth.get("key", "").lower() == "authorization" and auth.get("value"):
            headers["authorization"] = str(auth["value"])
    return headers


class ForwardedPort:
    """A connected stream to ``pod:port``; a :class:`kubekeep.agent.protocol.Transport`."""

    def __init__(self, forward: Any, port: int) -> None:
        self._forward = forward
        self._socket = forward.socket(port)
        self.port = port

    def sendall(self, data: bytes | memoryview, /) -> None:
        self._socket.sendall(data)

    def recv_into(self, buffer: memoryview, nbytes: int = 0, /) -> int:
        n: int = self._socket.recv_into(buffer, nbytes)
        return n

    def error(self) -> str | None:
        """What the kubelet reported for the port (e.g. nothing listening), if anything."""
        error: str | None = self._forward.error(self.port)
        return error

    def close(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass
        self._forward.close()


def connect(access: ClusterAccess, namespace: str, pod: str, port: int) -> ForwardedPort:
    url = (
        access.server.rstrip("/")
        + api_path("", "v1", "pods", namespace=namespace, name=pod, subresource="portforward")
        + f"?ports={port}"
    )
    try:
        ws = create_websocket(
            access.api_client.configuration,
            get_websocket_url(url),
            headers=websocket_headers(access, "v4.channel.k8s.io"),
        )
    except Exception as exc:  # noqa: BLE001 - websocket-client raises many unrelated types
        raise errors.SourceUnreachable(f"port-forward to {namespace}/{pod}:{port} failed: {_one_line(exc)}") from None
    return ForwardedPort(PortForward(ws, [port]), port)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text.split(" -+-+- ")[0][:300] or type(exc).__name__
