"""A real S3-compatible server (moto's standalone server) on loopback, as a subprocess.

Used by the ``s3_server`` fixtures in ``tests.support.s3_fixtures``; usable on its own::

    with running_s3_server() as server:
        boto3.client("s3", endpoint_url=server.endpoint_url, ...)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
ACCESS_KEY = "kubekeep-test-access"
SECRET_KEY = "kubekeep-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    #: True when the server checks credentials (moto's IAM emulation)
    require_auth: bool = False

    def backend_options(self) -> dict[str, Any]:
        """Keyword arguments for ``S3Backend`` / ``open_backend`` pointing at this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        }


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means it is serving
    except OSError:
        return False


@contextlib.contextmanager
def running_s3_server(*, require_auth: bool = False, timeout_s: float = 20.0) -> Iterator[S3Server]:
    """Start moto's server on a free loopback port; stop it (terminate, then kill) on exit.

    With ``require_auth`` moto authenticates every request (``INITIAL_NO_AUTH_ACTION_COUNT=0``),
    so made-up keys are refused with ``InvalidAccessKeyId`` as on AWS.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    if require_auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    else:
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    last_error = "did not start"
    for _ in range(3):  # the port may be taken between free_port() and bind
        port = free_port()
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            try:
                endpoint = f"http://{HOST}:{port}"
                deadline = time.monotonic() + timeout_s
                while proc.poll() is None and time.monotonic() < deadline:
                    if _answers(f"{endpoint}/moto-api/"):
                        yield S3Server(endpoint, ACCESS_KEY, SECRET_KEY, REGION, require_auth)
                        return
                    time.sleep(0.05)
                log.seek(0)
                last_error = log.read().decode(errors="replace")[-2000:] or "timed out"
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    raise RuntimeError(f"moto server did not start: {last_error}")
