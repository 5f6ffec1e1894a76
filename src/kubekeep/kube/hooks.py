"""Consistency hooks: commands run in an application's containers just before a volume is
snapshotted and just after (a database flush, ``fsfreeze``), from the command line or from
pod annotations::

    hooks.kubekeep.io/pre-command:  '["/bin/sh", "-c", "pg_ctl ... checkpoint"]'   (or a shell string)
    hooks.kubekeep.io/pre-container: db             (default: the pod's first container)
    hooks.kubekeep.io/pre-timeout:  30s             (default 30s)
    hooks.kubekeep.io/pre-on-error: fail            (fail | continue)

and the same with ``post-``. Commands run through the API server's ``exec`` subresource
(WebSocket, ``v4.channel.k8s.io``); their exit code and output go into the snapshot's report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from kubernetes.stream import ws_client

from kubekeep import errors
from kubekeep.kube.config import ClusterAccess
from kubekeep.kube.portforward import get_websocket_url, websocket_headers
from kubekeep.kube.requesting import api_path
from kubekeep.units import parse_timeout

ANNOTATION_PREFIX = "hooks.kubekeep.io/"
PHASES = ("pre", "post")
ON_ERROR = ("fail", "continue")
DEFAULT_TIMEOUT_S = 30.0
#: output kept per stream in the report
OUTPUT_LIMIT = 4096
STDOUT, STDERR, STATUS = ws_client.STDOUT_CHANNEL, ws_client.STDERR_CHANNEL, ws_client.ERROR_CHANNEL
#: the client library's exec WebSocket (untyped)
WSClient: Callable[..., Any] = ws_client.WSClient


@dataclass(frozen=True)
class Hook:
    phase: str  # "pre" or "post"
    command: tuple[str, ...]
    container: str = ""  # "" = the pod's first container
    timeout: float = DEFAULT_TIMEOUT_S
    on_error: str = "fail"
    origin: str = "command line"


@dataclass
class HookResult:
    phase: str
    pod: str
    container: str
    command: list[str]
    origin: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_command(text: str) -> tuple[str, ...]:
    """A JSON array of arguments, or a shell string run with ``/bin/sh -c``."""
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise errors.UsageError(f"hook command {text!r} is not a valid JSON array") from None
        if not value or not all(isinstance(a, str) for a in value):
            raise errors.UsageError(f"hook command {text!r} must be a non-empty array of strings")
        return tuple(value)
    if not text:
        raise errors.UsageError("empty hook command")
    return ("/bin/sh", "-c", text)


def _on_error(text: str) -> str:
    if text not in ON_ERROR:
        raise errors.UsageError(f"hook on-error policy {text!r}: expected fail or continue")
    return text


def from_annotations(pod: dict[str, Any]) -> list[Hook]:
    """The hooks a pod's annotations ask for."""
    ann = pod["metadata"].get("annotations") or {}
    hooks = []
    where = f"annotations of pod {pod['metadata']['namespace']}/{pod['metadata']['name']}"
    for phase in PHASES:
        command = ann.get(f"{ANNOTATION_PREFIX}{phase}-command")
        if not command:
            continue
        try:
            hooks.append(
                Hook(
                    phase=phase,
                    command=parse_command(command),
                    container=ann.get(f"{ANNOTATION_PREFIX}{phase}-container", ""),
                    timeout=parse_timeout(ann.get(f"{ANNOTATION_PREFIX}{phase}-timeout", str(DEFAULT_TIMEOUT_S))),
                    on_error=_on_error(ann.get(f"{ANNOTATION_PREFIX}{phase}-on-error", "fail")),
                    origin=where,
                )
            )
        except errors.UsageError as exc:
            raise errors.UsageError(f"{where}: {exc}") from None
    return hooks


def run(access: ClusterAccess, pod: dict[str, Any], hook: Hook) -> HookResult:
    """Run ``hook`` in ``pod``; never raises for the command's own failure (see ``result.ok``)."""
    meta = pod["metadata"]
    containers = [c["name"] for c in pod["spec"]["containers"]]
    container = hook.container or containers[0]
    result = HookResult(
        phase=hook.phase,
        pod=f"{meta['namespace']}/{meta['name']}",
        container=container,
        command=list(hook.command),
        origin=hook.origin,
    )
    if container not in containers:
        result.error = f"pod has no container {container!r} (it has {', '.join(containers)})"
        return result
    query = [("container", container), ("stdout", "1"), ("stderr", "1")] + [("command", a) for a in hook.command]
    url = access.server.rstrip("/") + api_path(
        "", "v1", "pods", namespace=meta["namespace"], name=meta["name"], subresource="exec"
    )
    started = time.monotonic()
    try:
        client = WSClient(
            access.api_client.configuration,
            get_websocket_url(url, query),
            websocket_headers(access, "v4.channel.k8s.io"),
            False,
            binary=True,
        )
    except Exception as exc:  # noqa: BLE001 - websocket-client raises many unrelated types
        result.error = f"exec failed: {' '.join(str(exc).split()).split(' -+-+- ')[0][:300]}"
        return result
    out, err, status = bytearray(), bytearray(), bytearray()
    try:
        while client.is_open():
            left = hook.timeout - (time.monotonic() - started)
            if left <= 0:
                result.error = f"timed out after {hook.timeout:g}s (the command may still be running)"
                break
            client.update(timeout=min(left, 1.0))
            out += client.read_channel(STDOUT)
            err += client.read_channel(STDERR)
            status += client.read_channel(STATUS)
    except Exception as exc:  # noqa: BLE001 - the connection broke mid-command
        result.error = f"exec connection failed: {' '.join(str(exc).split())[:200]}"
    finally:
        client.close()
    result.duration_s = round(time.monotonic() - started, 3)
    result.stdout = out.decode("utf-8", "replace")[-OUTPUT_LIMIT:]
    result.stderr = err.decode("utf-8", "replace")[-OUTPUT_LIMIT:]
    if not result.error:
        text = status.decode("utf-8", "replace")
        result.exit_code = _exit_code(text)
        if result.exit_code is None:
            result.error = (
                f"exec ended without an exit status: {text[:200]}" if text else "exec ended without an exit status"
            )
    return result


def _exit_code(status: str) -> int | None:
    if not status:
        return None
    try:
        body = json.loads(status)
    except ValueError:
        return None
    if body.get("status") == "Success":
        return 0
    for cause in (body.get("details") or {}).get("causes") or ():
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return None
    return None


def describe(result: HookResult) -> str:
    """One line for warnings and errors."""
    what = f"{result.phase}-snapshot hook {' '.join(result.command)!r} in {result.pod} ({result.container})"
    if result.error:
        return f"{what} failed: {result.error}"
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
    return f"{what} exited with {result.exit_code}" + (f": {tail[0][:200]}" if tail[0] else "")
