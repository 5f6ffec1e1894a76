"""Readiness probes: HTTPS GETs with client certificates, and polling helpers."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from testenv.processes import ManagedProcess, ProcessError

T = TypeVar("T")


class NotReadyError(RuntimeError):
    """A component did not become ready in time."""


def tls_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Client TLS context; ``ca=None`` skips verification (self-signed component ports)."""
    if ca is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def https_get(url: str, ctx: ssl.SSLContext, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``url``; return (status, body). Connection errors raise ``OSError``."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    watch: Iterable[ManagedProcess] = (),
    interval: float = 0.25,
) -> T:
    """Poll ``probe`` until it returns a non-None value.

    Fails fast with the log tail if a watched process exits; on timeout the
    error names ``what``, the last probe error and the first watched process's log.
    """
    deadline = time.monotonic() + timeout
    watched = list(watch)
    last_error = ""
    while True:
        for proc in watched:
            proc.check_running()
        try:
            result = probe()
        except (OSError, ssl.SSLError, ValueError) as err:
            result, last_error = None, f"{type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - API client errors differ by library
            result, last_error = None, f"{type(err).__name__}: {str(err)[:500]}"
        if result is not None:
            return result
        if time.monotonic() > deadline:
            # The first watched process is the one being waited for: show its log.
            logs = "".join(f"\n--- {p.name} log ({p.log_path}) ---\n{p.log_tail()}" for p in watched[:1])
            raise NotReadyError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_error})" if last_error else "")
                + logs
            )
        time.sleep(interval)


__all__ = ["NotReadyError", "ProcessError", "https_get", "tls_context", "wait_for"]
