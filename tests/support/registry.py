"""A real OCI registry (the CNCF distribution registry, built from its pinned Go module by
``testenv.build.ensure_registry``) on loopback, as a subprocess, for the OCI backend's tests.

    with running_registry() as registry:          # TLS from a fresh CA, htpasswd users
        backend = OciBackend(registry.host, "backups/one", **registry.backend_options())

The registry serves HTTPS with a certificate of a CA made for it (``testenv.pki``), checks
basic credentials against an htpasswd file (bcrypt lines from ``registry-htpasswd``), keeps its
data in a temporary directory and allows deletes. ``tls=False`` serves plain HTTP (the
``--insecure-registry`` case); ``auth="token"`` has it send clients to a token service
(tests/support/token_service.py) that checks the same user, the bearer-token flow of Docker Hub,
Harbor, GHCR and the like.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubekeep.storage.oci.credentials import Credentials
from testenv import build, pki
from testenv.processes import ManagedProcess
from tests.support.s3server import HOST, free_port
from tests.support.token_service import ISSUER, SERVICE, running_token_service

USERNAME = "kubekeep-test"


@dataclass(frozen=True)
class Registry:
    """Where the registry answers (``host`` is ``127.0.0.1:PORT``), its CA and a user's credentials."""

    host: str
    ca_file: Path | None
    username: str
    password: str
    data_dir: Path
    binary: Path
    config_file: Path
    #: with token authentication: who asked the token service for each token (test evidence)
    token_requests: list[str] | None = None

    @property
    def tls(self) -> bool:
        return self.ca_file is not None

    def location(self, repository: str) -> str:
        return f"oci://{self.host}/{repository}"

    def credentials(self) -> Credentials:
        return Credentials(self.username, self.password, source="the test registry's user")

    def backend_options(self) -> dict[str, Any]:
        """Keyword arguments for ``OciBackend`` / ``open_backend`` pointing at this registry."""
        options: dict[str, Any] = {"credentials": self.credentials()}
        if self.ca_file is not None:
            options["ca_file"] = str(self.ca_file)
        else:
            options["insecure"] = True
        return options

    def env(self) -> dict[str, str]:
        """The environment for the CLI to reach it (credentials, CA)."""
        env = {"KUBEKEEP_REGISTRY_USERNAME": self.username, "KUBEKEEP_REGISTRY_PASSWORD": self.password}
        if self.ca_file is not None:
            env["KUBEKEEP_REGISTRY_CA"] = str(self.ca_file)
        return env

    def garbage_collect(self) -> str:
        """Run the registry's garbage collection (untagged manifests too) on its data; the
        registry may keep running (the tests write nothing meanwhile). Returns its output."""
        done = subprocess.run(
            [str(self.binary), "garbage-collect", "--delete-untagged", str(self.config_file)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout


def _config(port: int, data: Path, htpasswd: Path, certs: pki.ServerPKI | None, tls: bool, realm: str | None) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {data}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: {HOST}:{port}",
        f"  secret: {secrets.token_hex(16)}",
    ]
    if tls and certs is not None:
        lines += ["  tls:", f"    certificate: {certs.server.cert}", f"    key: {certs.server.key}"]
    if realm is not None and certs is not None:
        lines += ["auth:", "  token:", f"    realm: {realm}", f"    service: {SERVICE}", f"    issuer: {ISSUER}"]
        lines += [f"    rootcertbundle: {certs.ca.cert}"]
    else:
        lines += ["auth:", "  htpasswd:", "    realm: kubekeep-test-registry", f"    path: {htpasswd}"]
    return "\n".join(lines) + "\n"


def _up(url: str, ca_file: Path | None) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=1) as answer:
            return int(answer.status) in (200, 401)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False


@contextlib.contextmanager
def running_registry(*, tls: bool = True, auth: str = "htpasswd", timeout_s: float = 30.0) -> Iterator[Registry]:
    """Start the registry on a free loopback port; stop it on exit. ``auth`` is ``htpasswd``
    (basic credentials, checked with bcrypt on every request) or ``token`` (a token service;
    the registry checks each request's JWT, as Harbor, GHCR and Docker Hub do)."""
    if auth not in ("htpasswd", "token"):
        raise ValueError(f"auth must be htpasswd or token, not {auth!r}")
    tools = build.ensure_registry()
    with tempfile.TemporaryDirectory(prefix="kubekeep-registry-") as tmp, contextlib.ExitStack() as stack:
        base = Path(tmp)
        password = secrets.token_hex(12)
        line = subprocess.run(
            [str(tools["registry-htpasswd"]), USERNAME],
            input=password,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        htpasswd = base / "htpasswd"
        htpasswd.write_text(line)
        # the certificate serves TLS and, with token authentication, signs the tokens
        certs = pki.generate_server(base / "pki", "kubekeep-test-registry") if tls or auth == "token" else None
        realm, requests = None, None
        if auth == "token" and certs is not None:
            realm, requests = stack.enter_context(
                running_token_service(HOST, certs.server.cert, certs.server.key, USERNAME, password, tls=tls)
            )
        last_error = "did not start"
        for attempt in range(3):  # the port may be taken between free_port() and bind
            port = free_port()
            config = base / f"config-{attempt}.yml"
            data = base / f"data-{attempt}"
            config.write_text(_config(port, data, htpasswd, certs, tls, realm))
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            proc = ManagedProcess(
                name="registry",
                argv=[str(tools["registry"]), "serve", str(config)],
                log_path=base / f"registry-{attempt}.log",
                env=env,
                die_with_parent=True,
            )
            proc.start()
            try:
                scheme = "https" if tls else "http"
                deadline = time.monotonic() + timeout_s
                while proc.alive() and time.monotonic() < deadline:
                    ca = certs.ca.cert if certs and tls else None
                    if _up(f"{scheme}://{HOST}:{port}/v2/", ca):
                        yield Registry(
                            f"{HOST}:{port}",
                            ca,
                            USERNAME,
                            password,
                            data,
                            tools["registry"],
                            config,
                            requests,
                        )
                        return
                    time.sleep(0.05)
                last_error = proc.log_tail() or ("timed out" if proc.alive() else f"exit code {proc.exit_code()}")
            finally:
                proc.stop()
    raise RuntimeError(f"the test registry did not start: {last_error}")
