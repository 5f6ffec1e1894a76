"""Child processes of a test cluster: start, identify, stop, and clean up on exit.

Every component runs in its own session (so its own process group), logs into a
file in the run directory, and is stopped with SIGTERM, then SIGKILL after a
timeout. Processes started by this Python process are registered for cleanup at
interpreter exit and on SIGTERM/SIGHUP, so an interrupted test session leaks
nothing. A cluster left running on purpose (``python -m testenv up``) is
detached from that registry and later stopped by pid + start time from its
state file.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - non-glibc platforms
    _LIBC = None


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the thread that spawned it dies (even by SIGKILL)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ProcessError(RuntimeError):
    """A component process failed to start or exited unexpectedly."""


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on 127.0.0.1 (bind to port 0)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are clean.
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[19])


def _alive(pid: int, start_time: int | None) -> bool:
    current = process_start_time(pid)
    if current is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        return False
    return start_time is None or current == start_time


def tail(path: Path, lines: int = 30) -> str:
    """Last ``lines`` lines of a log file ('' if unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One component process (own process group, log file in the run dir)."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    #: Have the kernel SIGTERM the process if the spawning thread dies (even by SIGKILL).
    die_with_parent: bool = False
    pid: int | None = None
    start_time: int | None = None
    _popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn the process in a new session with stdout/stderr into the log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        self.pid = self._popen.pid
        self.start_time = process_start_time(self.pid)
        _REGISTRY.add(self)

    def alive(self) -> bool:
        """Whether the process is still running (and is still the one we started)."""
        if self.pid is None:
            return False
        if self._popen is not None:
            return self._popen.poll() is None
        return _alive(self.pid, self.start_time)

    def exit_code(self) -> int | None:
        """Exit code if the process was started here and has exited."""
        return self._popen.poll() if self._popen is not None else None

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of this component's log."""
        return tail(self.log_path, lines)

    def check_running(self) -> None:
        """Raise :class:`ProcessError` with the log tail if the process has exited."""
        if not self.alive():
            code = self.exit_code()
            raise ProcessError(
                f"{self.name} exited unexpectedly (exit code {code}); log {self.log_path}:\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` seconds."""
        try:
            if self.pid is None or not self.alive():
                return
            self._signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self.alive():
                    break
                time.sleep(0.05)
            else:
                self._signal(signal.SIGKILL)
                deadline = time.monotonic() + 5
                while self.alive() and time.monotonic() < deadline:
                    time.sleep(0.05)
            if self._popen is not None:
                # Our own child: sweep anything it left in its group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
        finally:
            if self._popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._popen.wait(timeout=1)
            _REGISTRY.discard(self)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.pid is not None
        # The process leads its own group (start_new_session), so pgid == pid.
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def detach(self) -> None:
        """Leave the process running after this interpreter exits."""
        _REGISTRY.discard(self)
        self._popen = None

    def to_state(self) -> dict[str, Any]:
        """JSON-able description for the cluster state file."""
        return {
            "name": self.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "log": str(self.log_path),
            "argv": list(self.argv),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> ManagedProcess:
        """Re-attach to a process described in a state file (to check or stop it)."""
        return cls(
            name=data["name"],
            argv=data.get("argv", []),
            log_path=Path(data["log"]),
            pid=data["pid"],
            start_time=data.get("start_time"),
        )


class _Registry:
    """Processes this interpreter started and must stop at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: list[ManagedProcess] = []
        self._installed = False

    def add(self, proc: ManagedProcess) -> None:
        with self._lock:
            self._procs.append(proc)
            if not self._installed:
                self._install()

    def discard(self, proc: ManagedProcess) -> None:
        with self._lock:
            self._procs = [p for p in self._procs if p is not proc]

    def snapshot(self) -> list[ManagedProcess]:
        with self._lock:
            return list(self._procs)

    def stop_all(self) -> None:
        # Reverse start order: clients before the apiserver before etcd.
        for proc in reversed(self.snapshot()):
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)

    def _install(self) -> None:
        self._installed = True
        atexit.register(self.stop_all)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(sig)
            signal.signal(sig, _make_handler(self, sig, previous))


def _make_handler(registry: _Registry, sig: signal.Signals, previous: Any) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        registry.stop_all()
        if callable(previous):
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        # Default action: exit like the signal would, after running atexit hooks.
        raise SystemExit(128 + signum)

    return handler


_REGISTRY = _Registry()


def stop_all() -> None:
    """Stop every process started (and not detached) by this interpreter."""
    _REGISTRY.stop_all()


@contextlib.contextmanager
def stopping_on_error(procs: list[ManagedProcess]) -> Iterator[None]:
    """Stop ``procs`` (reverse order) if the body raises."""
    try:
        yield
    except BaseException:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)
        raise
