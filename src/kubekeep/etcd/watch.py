"""A watch on every key of an etcd cluster, read by a thread into a queue.

``Watch.Watch`` is a bidirectional stream: one create request (all keys, from a start
revision, fragmented responses allowed), then progress requests whenever the caller wants to
know how far the watch is. etcd sends the events of one revision together (a fragmented
response is put back together here), so every batch holds whole revisions. A progress answer
(a response without events) carries the store's revision: every event up to it has been sent.

A start revision that was compacted away cancels the watch with ``compact_revision`` set:
that is :class:`Compacted`, which the follower answers with a new full snapshot.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from kubekeep.errors import ConnectorError, SourceUnreachable

from . import services
from ._proto import kv_pb2, rpc_pb2
from .client import EtcdClient, rpc_error

#: the whole key space: key "\0" with range end "\0"
ALL_KEYS = b"\0"


class Compacted(ConnectorError):
    """The watch cannot start at its revision: etcd compacted the history up to ``revision``."""

    def __init__(self, start: int, revision: int) -> None:
        super().__init__(f"etcd compacted its history up to revision {revision}: a watch from {start} cannot resume")
        self.start = start
        self.revision = revision


@dataclass(slots=True)
class WatchBatch:
    """Events of whole revisions (possibly none: a progress answer) and when they arrived.

    ``revision`` is the store's revision in the response header; for a progress answer every
    event up to it has been delivered.
    """

    events: list[kv_pb2.Event] = field(default_factory=list)
    revision: int = 0
    received_ns: int = 0

    @property
    def progress(self) -> bool:
        return not self.events

    @property
    def last_revision(self) -> int:
        return self.events[-1].kv.mod_revision if self.events else 0


class Watcher:
    """Watches every key from ``start_revision`` through ``client``'s connected member."""

    def __init__(self, client: EtcdClient, start_revision: int, *, create_timeout: float = 30.0) -> None:
        self.client = client
        self.start_revision = start_revision
        self.create_timeout = create_timeout
        self.created_revision = 0  # the store's revision when the watch was created
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self._out: queue.Queue[WatchBatch | BaseException] = queue.Queue()
        self._call: Any = None  # grpc's stream call: an iterator of responses with cancel()
        self._thread: threading.Thread | None = None
        self._created = threading.Event()
        self._closed = False

    def _request_iter(self) -> Iterator[rpc_pb2.WatchRequest]:
        while True:
            req = self._requests.get()
            if req is None:
                return
            yield req

    def start(self) -> int:
        """Create the watch; return the store's revision at that moment. Raises
        :class:`Compacted` when ``start_revision`` is gone, other failures as one-line errors."""
        channel = self.client._chan()
        endpoint = str(self.client.endpoint)
        self._requests.put(
            rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(
                    key=ALL_KEYS, range_end=ALL_KEYS, start_revision=self.start_revision, fragment=True
                )
            )
        )
        self._call = services.watch(channel).Watch(self._request_iter())
        self._thread = threading.Thread(target=self._read, args=(endpoint,), name="kubekeep-etcd-watch", daemon=True)
        self._thread.start()
        if not self._created.wait(self.create_timeout):
            self.close()
            raise SourceUnreachable(f"etcd at {endpoint} did not create the watch within {self.create_timeout:g}s")
        if not self.created_revision:  # the reader failed before the watch was created
            item = self._out.get()
            self.close()
            if isinstance(item, BaseException):
                raise item
            raise ConnectorError(f"etcd at {endpoint} sent events before creating the watch")
        return self.created_revision

    def _read(self, endpoint: str) -> None:
        assert self._call is not None
        pending: list[kv_pb2.Event] = []
        try:
            for resp in self._call:
                if resp.canceled:
                    if resp.compact_revision:
                        raise Compacted(self.start_revision, resp.compact_revision)
                    reason = " ".join(resp.cancel_reason.split()) or "no reason given"
                    raise ConnectorError(f"etcd at {endpoint} cancelled the watch: {reason}")
                if resp.created:
                    self.created_revision = resp.header.revision
                    self._created.set()
                    continue
                pending.extend(resp.events)
                if resp.fragment:
                    continue
                batch = WatchBatch(pending, resp.header.revision, time.time_ns())
                pending = []
                self._out.put(batch)
            if not self._closed:
                raise SourceUnreachable(f"etcd at {endpoint} ended the watch stream")
        except grpc.RpcError as exc:
            if not self._closed:
                self._out.put(rpc_error(exc, endpoint, "the watch"))
        except Exception as exc:  # noqa: BLE001 - handed to the reading thread
            if not self._closed:
                self._out.put(exc)
        finally:
            self._created.set()

    def request_progress(self) -> None:
        """Ask for a progress answer: a batch without events carrying the store's revision."""
        self._requests.put(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    def get(self, timeout: float) -> WatchBatch | None:
        """The next batch, or None after ``timeout`` seconds; a broken watch raises."""
        try:
            item = self._out.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._closed = True
        self._requests.put(None)
        if self._call is not None:
            self._call.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
