"""A tiny container runtime for the simulated node: pods as Linux namespaces on this machine.

Each pod gets a sandbox: a holder process (:mod:`testenv.simcsi.sandbox`) in its own mount and
network namespaces, with one root filesystem per container built from the image's host
directories (read-only) and the pod's volumes. Containers and ``exec`` sessions are entered
with ``nsenter`` + ``chroot`` and run under ``setpriv`` with the capability bounding set, user
and no-new-privileges flag of their security context, so a locked-down pod really cannot do
more than its spec allows. The pod IP is a loopback address of this machine on which the
runtime relays each declared container port into the pod's network namespace, as a CNI
plugin would route to it; port-forward connects inside the namespace, as the CRI does.

A pod whose containers declare no ports (a CLI run by a Job) or that asks for ``hostNetwork``
shares this machine's network namespace instead, as a ``hostNetwork`` pod does: that is how it
reaches the apiserver, the S3 server and other pods' IPs, which all live on this machine's
loopback (there is no pod network to route it through).

Needs root (or an unprivileged user namespace) for the namespaces and mounts.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)

#: what a container runtime grants when the security context does not say (containerd's list)
DEFAULT_CAPS = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
)
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    """An "image": host directories that make up its filesystem, its entrypoint and env."""

    paths: tuple[str, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def host_image(
    entrypoint: tuple[str, ...] = (),
    cmd: tuple[str, ...] = (),
    *,
    python: bool = False,
    extra: tuple[str, ...] = (),
    pythonpath: tuple[str, ...] = (),
) -> Image:
    """An image made of this machine's /usr and /etc (and its Python, with ``python``;
    ``pythonpath`` directories, also part of the image, come first on its import path)."""
    paths = ["/usr", "/etc"]
    env = [("PATH", BASE_PATH)]
    if python:
        prefix = os.path.realpath(sys.prefix)
        paths.append(prefix)
        # a virtual environment's python is a symlink into the base installation
        paths.append(os.path.realpath(sys.base_prefix))
        env = [("PATH", f"{prefix}/bin:{BASE_PATH}"), ("PYTHONDONTWRITEBYTECODE", "1")]
        if pythonpath:
            env.append(("PYTHONPATH", os.pathsep.join(pythonpath)))
    paths.extend(extra)
    paths.extend(pythonpath)
    return Image(tuple(dict.fromkeys(paths)), entrypoint, cmd, tuple(env))


@dataclass
class Mount:
    path: str
    host: str
    read_only: bool


@dataclass
class ContainerSpec:
    name: str
    image: Image
    argv: list[str]
    env: dict[str, str]
    workdir: str
    mounts: list[Mount]
    caps: list[str]
    uid: int | None
    gid: int | None
    no_new_privs: bool
    read_only_root: bool
    ports: list[int]
    #: supplementary groups (the pod's supplementalGroups and fsGroup)
    groups: list[int] = field(default_factory=list)


@dataclass
class Container:
    spec: ContainerSpec
    rootfs: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    exit_code: int | None = None
    restarts: int = 0
    finished_at: float = 0.0


@dataclass
class Sandbox:
    uid: str
    ip: str
    dir: Path
    holder: subprocess.Popen[str]
    host_network: bool = False
    containers: dict[str, Container] = field(default_factory=dict)
    listeners: list[socket.socket] = field(default_factory=list)
    closed: bool = False


class PortPool:
    """Loopback addresses for pod IPs: one random 127.x.y.0/24 per runtime."""

    def __init__(self) -> None:
        self.prefix = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"
        self._free = list(range(2, 255))
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            if not self._free:
                raise RuntimeError("simulated node is out of pod IPs")
            return f"{self.prefix}.{self._free.pop(0)}"

    def give(self, ip: str) -> None:
        with self._lock:
            self._free.append(int(ip.rsplit(".", 1)[1]))


class Runtime:
    def __init__(self, root: Path, log: Any) -> None:
        self.root = root
        self.log = log
        self.ips = PortPool()
        root.mkdir(parents=True, exist_ok=True)
        self._userns = os.geteuid() != 0

    # -- sandboxes -------------------------------------------------------------------------
    def create_sandbox(
        self, uid: str, containers: list[ContainerSpec], ip: str, *, host_network: bool = False
    ) -> Sandbox:
        """A pod's sandbox at ``ip`` (with ``host_network``: this machine's address, no relays)."""
        base = self.root / uid
        for earlier in ("rootfs", "logs"):  # the kubelet has already written volumes/
            shutil.rmtree(base / earlier, ignore_errors=True)
        (base / "logs").mkdir(parents=True)
        spec = {
            "containers": [
                {
                    "rootfs": str(base / "rootfs" / c.name),
                    "image_paths": list(c.image.paths),
                    "mounts": [{"path": m.path, "host": m.host, "read_only": m.read_only} for m in c.mounts],
                    "read_only_root": c.read_only_root,
                }
                for c in containers
            ],
            "host_network": host_network,
        }
        spec_file = base / "sandbox.json"
        spec_file.write_text(json.dumps(spec))
        argv = ["unshare", "--mount", *(() if host_network else ("--net",)), "--propagation", "private"]
        if self._userns:
            argv += ["--user", "--map-root-user"]
        argv += ["--", sys.executable, "-m", "testenv.simcsi.sandbox", str(spec_file)]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        holder = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert holder.stdout is not None
        line = holder.stdout.readline().strip()
        if line != "ready":
            holder.kill()
            rest = holder.stdout.read()
            holder.wait()
            raise RuntimeError(f"pod sandbox failed: {line} {rest}".strip())
        sandbox = Sandbox(uid, ip, base, holder, host_network)
        for c in containers:
            sandbox.containers[c.name] = Container(c, base / "rootfs" / c.name, base / "logs" / f"{c.name}.log")
        if host_network:
            return sandbox
        for port in sorted({p for c in containers for p in c.ports}):
            self._listen(sandbox, port)
        return sandbox

    def _enter(self, sandbox: Sandbox, container: Container, argv: list[str], workdir: str) -> list[str]:
        spec = container.spec
        caps = ",".join(["-all", *(f"+{c.lower()}" for c in spec.caps)])
        priv = ["/usr/bin/setpriv", f"--bounding-set={caps}", "--inh-caps=-all"]
        if spec.no_new_privs:
            priv.append("--no-new-privs")
        if spec.uid is not None:
            priv += [
                f"--reuid={spec.uid}",
                f"--regid={spec.gid if spec.gid is not None else spec.uid}",
                f"--groups={','.join(map(str, spec.groups))}" if spec.groups else "--clear-groups",
            ]
        ns = ["nsenter", f"--target={sandbox.holder.pid}", "--mount", *(() if sandbox.host_network else ("--net",))]
        if self._userns:
            ns.append("--user")
        return [
            *ns,
            "--",
            "chroot",
            str(container.rootfs),
            *priv,
            "--",
            "/usr/bin/env",
            f"--chdir={workdir or '/'}",
            "--",
            *argv,
        ]

    def start_container(self, sandbox: Sandbox, name: str) -> None:
        container = sandbox.containers[name]
        spec = container.spec
        log = open(container.log_path, "ab")  # noqa: SIM115 - owned by the process
        try:
            container.proc = subprocess.Popen(
                self._enter(sandbox, container, spec.argv, spec.workdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=spec.env,
                start_new_session=True,
            )
        finally:
            log.close()
        container.started_at = time.time()
        container.exit_code = None

    def exec(self, sandbox: Sandbox, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        container = sandbox.containers[name]
        return subprocess.Popen(
            self._enter(sandbox, container, argv, container.spec.workdir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=container.spec.env,
            start_new_session=True,
        )

    def stop_container(self, container: Container, grace: float) -> None:
        proc = container.proc
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()

    def destroy(self, sandbox: Sandbox, grace: float = 1.0) -> None:
        if sandbox.closed:
            return
        sandbox.closed = True
        for container in sandbox.containers.values():
            self.stop_container(container, grace)
        for listener in sandbox.listeners:
            listener.close()
        if sandbox.holder.poll() is None:
            assert sandbox.holder.stdin is not None
            sandbox.holder.stdin.close()
            try:
                sandbox.holder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sandbox.holder.kill()
                sandbox.holder.wait()
        if not sandbox.host_network:
            self.ips.give(sandbox.ip)
        shutil.rmtree(sandbox.dir / "rootfs", ignore_errors=True)

    def read_log(self, sandbox: Sandbox, name: str, tail: int | None = None) -> bytes:
        container = sandbox.containers.get(name)
        if container is None or not container.log_path.exists():
            return b""
        data = container.log_path.read_bytes()
        if tail is not None:
            data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail > 0 else b""
        return data

    # -- networking ------------------------------------------------------------------------
    def connect(self, sandbox: Sandbox, port: int, timeout: float = 5.0) -> socket.socket:
        """A TCP connection to ``127.0.0.1:port`` inside the pod's network namespace."""
        if sandbox.host_network:
            direct = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            direct.settimeout(None)
            return direct
        result: list[Any] = []

        def inside() -> None:
            try:
                fd = os.open(f"/proc/{sandbox.holder.pid}/ns/net", os.O_RDONLY)
                try:
                    if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                result.append(socket.create_connection(("127.0.0.1", port), timeout=timeout))
            except OSError as exc:
                result.append(exc)

        t = threading.Thread(target=inside, name="simcsi-netns-connect")  # setns changes only this thread
        t.start()
        t.join()
        if isinstance(result[0], OSError):
            raise result[0]
        sock: socket.socket = result[0]
        sock.settimeout(None)
        return sock

    def _listen(self, sandbox: Sandbox, port: int) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((sandbox.ip, port))
        listener.listen(16)
        sandbox.listeners.append(listener)

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                try:
                    upstream = self.connect(sandbox, port)
                except OSError:
                    conn.close()  # nothing listens in the pod: refused, as on a real network
                    continue
                relay(conn, upstream)

        threading.Thread(target=accept, name=f"simcsi-podip-{sandbox.ip}:{port}", daemon=True).start()


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways between two sockets (spliced in the kernel) until both ends close."""
    state = {"open": 2}
    lock = threading.Lock()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            _splice(src, dst)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            with lock:
                state["open"] -= 1
                last = state["open"] == 0
            if last:
                a.close()
                b.close()

    threading.Thread(target=pump, args=(a, b), name="simcsi-relay", daemon=True).start()
    threading.Thread(target=pump, args=(b, a), name="simcsi-relay", daemon=True).start()


def _splice(src: socket.socket, dst: socket.socket) -> None:
    r, w = os.pipe()
    try:
        while True:
            n = os.splice(src.fileno(), w, 1 << 20)
            if n == 0:
                return
            while n:
                n -= os.splice(r, dst.fileno(), n)
    finally:
        os.close(r)
        os.close(w)


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def capabilities(security_context: dict[str, Any]) -> list[str]:
    """The bounding set a container's security context leaves it."""
    caps = security_context.get("capabilities") or {}
    drop = {_cap(c) for c in caps.get("drop") or ()}
    add = [_cap(c) for c in caps.get("add") or ()]
    base = [] if "ALL" in drop else [c for c in DEFAULT_CAPS if c not in drop]
    if security_context.get("privileged"):
        return ["ALL"]
    return list(dict.fromkeys([*base, *add]))


def _cap(name: str) -> str:
    name = name.upper()
    return name.removeprefix("CAP_")


def stream_pipe(pipe: IO[bytes], sink: Any) -> None:
    """Read ``pipe`` to its end, handing each piece to ``sink``."""
    while True:
        piece = pipe.read1(65536)  # type: ignore[attr-defined]
        if not piece:
            return
        sink(piece)
