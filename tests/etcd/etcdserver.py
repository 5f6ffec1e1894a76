"""Test helpers: throw-away PKI, a real etcd process with TLS client-cert auth, a cutting proxy.

The etcd binary comes from ``$KUBEKEEP_ETCD_BIN``, else from testenv's pinned build
(``testenv.build.ensure_binaries()["etcd"]``), else from PATH. Finding none is an error, never
a skip: these tests exist to run against a real etcd.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubekeep.etcd.client import EtcdClient


class NoEtcdBinary(RuntimeError):
    pass


def _testenv_binaries() -> tuple[dict[str, Path], str]:
    try:
        from testenv import build  # type: ignore[import-not-found]
    except ImportError as exc:
        return {}, f"testenv.build not importable ({exc})"
    ensure = getattr(build, "ensure_binaries", None)
    if ensure is None:
        return {}, "testenv.build has no ensure_binaries()"
    try:
        return {k: Path(v) for k, v in ensure().items()}, ""
    except Exception as exc:  # noqa: BLE001 - report, then try PATH
        return {}, f"testenv.build.ensure_binaries() failed: {' '.join(str(exc).split())[:300]}"


@dataclass(frozen=True)
class Tools:
    etcd: Path
    version: tuple[int, int, int]
    etcdctl: Path | None
    etcdutl: Path | None
    origin: str


def _version(binary: Path) -> tuple[int, int, int]:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    m = re.search(r"etcd Version:\s*(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    if not m:
        raise NoEtcdBinary(f"{binary} --version printed no etcd version: {out.stdout[:200]!r}")
    return int(m[1]), int(m[2]), int(m[3])


def _sibling(etcd: Path, name: str) -> Path | None:
    cand = etcd.parent / name
    if cand.is_file() and os.access(cand, os.X_OK):
        return cand
    found = shutil.which(name)
    return Path(found) if found else None


def find_tools() -> Tools:
    """Locate etcd (and etcdctl/etcdutl next to it or on PATH); raise if there is no etcd."""
    notes: list[str] = []
    env = os.environ.get("KUBEKEEP_ETCD_BIN")
    if env:
        etcd, origin = Path(env), "$KUBEKEEP_ETCD_BIN"
        if not (etcd.is_file() and os.access(etcd, os.X_OK)):
            raise NoEtcdBinary(f"$KUBEKEEP_ETCD_BIN={env} is not an executable file")
    else:
        bins, note = _testenv_binaries()
        etcd_path = bins.get("etcd")
        if etcd_path is not None and etcd_path.is_file():
            etcd, origin = etcd_path, "testenv"
        else:
            if note:
                notes.append(note)
            found = shutil.which("etcd")
            if not found:
                raise NoEtcdBinary(
                    "no etcd binary for tests/etcd: set $KUBEKEEP_ETCD_BIN, build testenv's "
                    "binaries, or install etcd (apt-get install etcd-server etcd-client); " + "; ".join(notes)
                )
            etcd, origin = Path(found), "PATH"
    return Tools(
        etcd=etcd,
        version=_version(etcd),
        etcdctl=_sibling(etcd, "etcdctl"),
        etcdutl=_sibling(etcd, "etcdutl"),
        origin=origin,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PKI ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of the above
    nobody_cert: Path  # a valid client certificate for user "nobody" (no such etcd user)
    nobody_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if server:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("kubekeep-test-ca", ca_key, None, ca_key, ca=True)
    other_key = _key()
    other = _cert("some-other-ca", other_key, None, other_key, ca=True)
    srv_key = _key()
    srv = _cert("etcd-server", srv_key, ca.subject, ca_key, server=True, client=True)
    cli_key = _key()
    cli = _cert("root", cli_key, ca.subject, ca_key, client=True)
    nobody_key = _key()
    nobody = _cert("nobody", nobody_key, ca.subject, ca_key, client=True)
    pem = serialization.Encoding.PEM
    paths = Pki(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.crt",
        nobody_cert=directory / "nobody.crt",
        nobody_key=directory / "nobody.key",
    )
    paths.ca.write_bytes(ca.public_bytes(pem))
    paths.other_ca.write_bytes(other.public_bytes(pem))
    paths.server_cert.write_bytes(srv.public_bytes(pem))
    paths.client_cert.write_bytes(cli.public_bytes(pem))
    _write_key(srv_key, paths.server_key)
    _write_key(cli_key, paths.client_key)
    paths.nobody_cert.write_bytes(nobody.public_bytes(pem))
    _write_key(nobody_key, paths.nobody_key)
    return paths


# -- etcd process -------------------------------------------------------------------------


@dataclass
class EtcdServer:
    tools: Tools
    pki: Pki
    data_dir: Path
    name: str = "kk0"
    token: str = "kubekeep-test"
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def initial_cluster(self) -> str:
        return f"{self.name}={self.peer_url}"

    def client(self, **kw: object) -> EtcdClient:
        endpoints = kw.pop("endpoints", self.endpoint)
        opts: dict[str, object] = {"cacert": self.pki.ca, "cert": self.pki.client_cert, "key": self.pki.client_key}
        opts.update(kw)
        return EtcdClient(endpoints, **opts)  # type: ignore[arg-type]

    def start(self, *, new_cluster: bool = True, timeout: float = 30.0) -> EtcdServer:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        cmd = [
            str(self.tools.etcd),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new" if new_cluster else "existing",
            "--cert-file", str(self.pki.server_cert),
            "--key-file", str(self.pki.server_key),
            "--trusted-ca-file", str(self.pki.ca),
            "--client-cert-auth",
            "--logger", "zap",
            "--log-level", "warn",
        ]  # fmt: skip
        if self.tools.version >= (3, 5, 0):
            cmd.append("--unsafe-no-fsync")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with self.client(connect_timeout=1.0) as c:
                    c.status()
                    c.range(b"health-probe")
                return self
            except Exception as exc:  # noqa: BLE001 - keep polling
                last = str(exc)
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"etcd did not become ready in {timeout}s: {last}; {self.log_tail()}")

    def etcdctl(self, *args: str) -> str:
        """Run the etcdctl found with etcd against this server as the "root" client cert."""
        assert self.tools.etcdctl is not None, "etcdctl not found next to etcd or on PATH"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        env["ETCDCTL_API"] = "3"
        out = subprocess.run(
            [str(self.tools.etcdctl), "--endpoints", self.client_url, "--cacert", str(self.pki.ca),
             "--cert", str(self.pki.client_cert), "--key", str(self.pki.client_key), *args],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# -- a TCP proxy that can cut the server-to-client direction ---------------------------------


class CuttingProxy:
    """Forwards 127.0.0.1:port to a target; drops every connection after ``cut_after`` bytes
    have gone from the server to the client (None: never). At the limit it stops forwarding and
    holds the connection open for ``linger`` seconds before dropping it: a client gets to take
    in what it already received (gRPC discards messages it buffered but had not handed out
    when the connection dies, so an immediate drop could land before the first message, which
    is a member that never answered, not a stream that broke)."""

    def __init__(self, target_port: int, cut_after: int | None = None, *, linger: float = 1.0) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.linger = linger
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(16)
        self.port = self._lsock.getsockname()[1]
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._lsock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.cut_after), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: max(0, limit - sent)])
                    self._stop.wait(self.linger)
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._stop.set()
        self._lsock.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        self._thread.join(2)
