"""Waiting for the cluster: the one poll loop behind every wait in kubekeep's Kubernetes code
(a helper pod starting, a snapshot becoming ready, a claim being bound, objects going away),
with a deadline and progress reports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: waits poll the API quickly at first, then every second at most
POLL_FIRST_S, POLL_MAX_S = 0.1, 1.0
#: a wait reports its progress this often
PROGRESS_EVERY_S = 5.0


def poll_delays() -> Iterator[float]:
    delay = POLL_FIRST_S
    while True:
        yield delay
        delay = min(delay * 1.3, POLL_MAX_S)


def poll(
    check: Callable[[], T | None],
    *,
    timeout: float,
    timed_out: Callable[[], Exception],
    progress: Callable[[float], None] | None = None,
    interval: float | None = None,
) -> T:
    """Call ``check`` until it returns something other than None, and return that. ``check``
    raises itself when waiting cannot help. Once ``timeout`` seconds have passed, raise
    ``timed_out()``; meanwhile call ``progress(elapsed)`` at once and every few seconds.
    Polls every ``interval`` seconds, or quickly at first and then every second at most."""
    started = time.monotonic()
    last = -2 * PROGRESS_EVERY_S
    delays = poll_delays()
    while True:
        value = check()
        if value is not None:
            return value
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            raise timed_out()
        if progress is not None and elapsed - last >= PROGRESS_EVERY_S:
            last = elapsed
            progress(elapsed)
        time.sleep(next(delays) if interval is None else interval)
