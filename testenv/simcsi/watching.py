"""A minimal controller loop: list+watch sources, queue keys, reconcile one key at a time.

Level-triggered as real controllers are: a reconcile reads the object's current state, so a
missed or repeated event does no harm, and a failed reconcile is retried with backoff.
"""

from __future__ import annotations

import heapq
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testenv.simcsi.api import Obj, SimApi, SimApiError

Key = tuple[str, ...]


@dataclass
class Source:
    path: str  # collection path (cluster-wide or namespaced)
    key: Callable[[Obj], Key | None]  # which key an object maps to (None: ignore)
    query: dict[str, str] = field(default_factory=dict)


class Controller:
    """Run ``reconcile(key)`` for every key its sources report; it returns a delay in seconds
    to look again later, or None."""

    name = "controller"
    resync_s = 15.0

    def __init__(self, api: SimApi, stop: threading.Event, log: Callable[[str], None]) -> None:
        self.api = api
        self.stop = stop
        self.log = log
        self._cond = threading.Condition()
        self._ready: list[Key] = []
        self._queued: set[Key] = set()
        self._later: list[tuple[float, Key]] = []
        self._threads: list[threading.Thread] = []
        self._failures: dict[Key, int] = {}

    def sources(self) -> list[Source]:
        raise NotImplementedError

    def reconcile(self, key: Key) -> float | None:
        raise NotImplementedError

    # -- plumbing ------------------------------------------------------------------------------
    def start(self) -> None:
        for i, source in enumerate(self.sources()):
            t = threading.Thread(target=self._watch, args=(source,), name=f"simcsi-{self.name}-watch{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._work, name=f"simcsi-{self.name}", daemon=True)
        t.start()
        self._threads.append(t)

    def join(self, timeout: float) -> None:
        """Wait for the worker; watch threads (daemons) end with their watch's timeout."""
        with self._cond:
            self._cond.notify_all()
        self._threads[-1].join(timeout)

    def enqueue(self, key: Key, delay: float = 0.0) -> None:
        with self._cond:
            if delay > 0:
                heapq.heappush(self._later, (time.monotonic() + delay, key))
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
            self._cond.notify()

    def _watch(self, source: Source) -> None:
        while not self.stop.is_set():
            try:
                listing = self.api.request("GET", source.path, query=source.query or None)
                for obj in listing.get("items", ()):
                    key = source.key(obj)
                    if key is not None:
                        self.enqueue(key)
                rv = listing["metadata"]["resourceVersion"]
                deadline = time.monotonic() + self.resync_s
                for event in self.api.watch(source.path, rv, timeout_s=int(self.resync_s) + 1, query=source.query):
                    if self.stop.is_set():
                        return
                    obj = event.get("object") or {}
                    if event.get("type") != "BOOKMARK":
                        key = source.key(obj)
                        if key is not None:
                            self.enqueue(key)
                    if time.monotonic() > deadline:
                        break
            except (SimApiError, OSError, ValueError, KeyError) as exc:
                if self.stop.is_set():
                    return
                if not (isinstance(exc, SimApiError) and exc.status == 410):
                    self.log(f"{self.name}: watch of {source.path} failed: {exc}")
                    self.stop.wait(1.0)
            except Exception as exc:  # noqa: BLE001 - keep watching; a simulator must not die quietly
                self.log(f"{self.name}: watch of {source.path} crashed: {exc!r}")
                self.stop.wait(1.0)

    def _next(self) -> Key | None:
        with self._cond:
            while not self.stop.is_set():
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    _, key = heapq.heappop(self._later)
                    if key not in self._queued:
                        self._queued.add(key)
                        self._ready.append(key)
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    return key
                timeout = (self._later[0][0] - now) if self._later else 1.0
                self._cond.wait(min(max(timeout, 0.01), 1.0))
        return None

    def _work(self) -> None:
        while True:
            key = self._next()
            if key is None:
                return
            try:
                delay = self.reconcile(key)
                self._failures.pop(key, None)
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                delay = min(0.2 * 2**n, 5.0)
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self.log(f"{self.name}: reconcile {'/'.join(key)} failed (attempt {n}): {detail}")
            if delay is not None and not self.stop.is_set():
                self.enqueue(key, delay)


def meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def remove_finalizer(api: SimApi, path: str, obj: Obj, finalizer: str) -> None:
    """Drop one finalizer with an optimistic-concurrency JSON merge (retried by the caller)."""
    finalizers = [f for f in meta(obj).get("finalizers", []) if f != finalizer]
    if len(finalizers) != len(meta(obj).get("finalizers", [])):
        api.merge(
            path, {"metadata": {"finalizers": finalizers or None, "resourceVersion": meta(obj)["resourceVersion"]}}
        )


def add_finalizers(api: SimApi, path: str, obj: Obj, wanted: list[str]) -> Obj:
    have = list(meta(obj).get("finalizers", []))
    missing = [f for f in wanted if f not in have]
    if not missing:
        return obj
    updated = api.merge(
        path, {"metadata": {"finalizers": have + missing, "resourceVersion": meta(obj)["resourceVersion"]}}
    )
    return updated if updated is not None else obj
