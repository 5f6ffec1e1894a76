"""What a run creates in the cluster, and removing it: at the end of the run in every case,
or afterwards with ``kubekeep cleanup`` when the run was killed.

Every object a run creates carries the labels ``app.kubernetes.io/managed-by=kubekeep`` and
``kubekeep.io/run=<run id>``, and the annotation ``kubekeep.io/owner`` naming the process
(``host/pid/start-time``). ``cleanup`` removes the objects of runs whose process is gone (on
this host), of runs older than a given age (any host), or of one named run.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubekeep import errors
from kubekeep.kube import volumes, waiting
from kubekeep.kube.requesting import Session, api_path

MANAGED_BY = "app.kubernetes.io/managed-by"
RUN_LABEL = "kubekeep.io/run"
PURPOSE_LABEL = "kubekeep.io/purpose"
OWNER_ANNOTATION = "kubekeep.io/owner"
SELECTOR = f"{MANAGED_BY}=kubekeep,{RUN_LABEL}"
#: how often removal checks whether what it deleted is gone
DELETE_POLL_S = 0.3

#: what runs create, in the order they are removed (users of a claim before the claim, the
#: snapshot a claim was made from after it)
KINDS: list[tuple[str, str, str, bool]] = [  # (group, version, resource, namespaced)
    ("", "v1", "pods", True),
    ("", "v1", "secrets", True),
    ("", "v1", "persistentvolumeclaims", True),
    (volumes.SNAPSHOT_GROUP, volumes.SNAPSHOT_VERSION, "volumesnapshots", True),
    ("", "v1", "persistentvolumes", False),
    ("", "v1", "namespaces", False),  # restore drills' scratch namespaces (api.drills)
]


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def owner_id() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_ticks(pid)}"


def owner_alive(owner: str) -> bool | None:
    """True/False for an owner on this host; None when it ran elsewhere (cannot tell)."""
    try:
        host, pid, ticks = owner.split("/")
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    return bool(pid.isdigit() and ticks and _start_ticks(int(pid)) == ticks)


class Run:
    """The objects one kubekeep run creates; ``remove()`` deletes them all, newest first."""

    def __init__(self, session: Session, *, run_id: str | None = None) -> None:
        self.session = session
        self.id = run_id or f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"
        self.owner = owner_id()
        self._created: list[tuple[str, str]] = []  # (path, description)
        self._lock = threading.Lock()

    def metadata(self, purpose: str) -> dict[str, Any]:
        """Labels and annotations for an object this run creates."""
        return {
            "labels": {MANAGED_BY: "kubekeep", RUN_LABEL: self.id, PURPOSE_LABEL: purpose},
            "annotations": {OWNER_ANNOTATION: self.owner},
        }

    def name(self, kind: str) -> str:
        """A name for a new object (DNS-1123, unique per run and use)."""
        return f"kubekeep-{kind}-{self.id[-6:]}-{secrets.token_hex(3)}"

    def track(self, path: str, description: str) -> None:
        with self._lock:
            self._created.append((path, description))

    def create(self, path: str, obj: dict[str, Any], description: str) -> dict[str, Any]:
        """Create ``obj`` in the collection ``path`` and remember to delete it."""
        name = obj["metadata"]["name"]
        self.track(f"{path}/{name}", description)  # before: a kill mid-request still gets it cleaned
        return volumes.create(self.session, path, obj)

    def created(self) -> list[str]:
        """What the run created and has not removed yet, newest first (descriptions)."""
        with self._lock:
            return [description for _, description in reversed(self._created)]

    def forget(self, path: str) -> None:
        with self._lock:
            self._created = [(p, d) for p, d in self._created if p != path]

    def remove(self, *, wait: float = 0.0, status: Callable[[str], None] | None = None) -> list[str]:
        """Delete everything created (newest first); problems are returned, not raised, so one
        failure does not leave the rest behind."""
        with self._lock:
            created, self._created = list(reversed(self._created)), []
        problems = _remove_all(self.session, [(p, d, "/volumesnapshots/" in p) for p, d in created], wait)
        if status is not None and created:
            status(f"removed {len(created)} temporary object(s) of run {self.id}")
        return problems


@dataclass(frozen=True)
class Leftover:
    kind: str
    namespace: str
    name: str
    run: str
    owner: str
    created: str
    path: str

    def describe(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where} (run {self.run})"


def find(
    session: Session, *, namespace: str = "", run: str = "", everything: bool = False, older_than: float | None = None
) -> list[Leftover]:
    """Objects of kubekeep runs that are over: their process is gone (this host), they are older
    than ``older_than`` seconds, or (``everything``) all of them; ``run`` narrows to one run."""
    selector = f"{MANAGED_BY}=kubekeep,{RUN_LABEL}={run}" if run else SELECTOR
    now = dt.datetime.now(dt.UTC)
    found: list[Leftover] = []
    for group, version, resource, namespaced in KINDS:
        path = api_path(group, version, resource, namespace=namespace if namespaced else "")
        listing = session.get_or_none(path, labelSelector=selector)
        if listing is None:
            continue  # e.g. no VolumeSnapshot CRDs
        for obj in listing.get("items") or ():
            meta = obj["metadata"]
            if resource == "namespaces" and namespace and meta["name"] != namespace:
                continue  # another drill's scratch namespace: not asked about
            owner = (meta.get("annotations") or {}).get(OWNER_ANNOTATION, "")
            created = meta.get("creationTimestamp", "")
            if not (everything or run):
                alive = owner_alive(owner)
                age = (now - dt.datetime.fromisoformat(created)).total_seconds() if created else 0.0
                old = older_than is not None and age >= older_than
                if not (alive is False or old):
                    continue
            found.append(
                Leftover(
                    kind=obj.get("kind") or resource,
                    namespace=meta.get("namespace", ""),
                    name=meta["name"],
                    run=meta["labels"].get(RUN_LABEL, ""),
                    owner=owner,
                    created=created,
                    path=api_path(group, version, resource, namespace=meta.get("namespace", ""), name=meta["name"]),
                )
            )
    return found


def remove(session: Session, leftovers: list[Leftover], *, wait: float = 0.0) -> list[str]:
    """Delete leftovers (snapshots releasing their storage); returns problems."""
    return _remove_all(session, [(i.path, i.describe(), i.kind == "VolumeSnapshot") for i in leftovers], wait)


def _remove_all(session: Session, objects: list[tuple[str, str, bool]], wait: float) -> list[str]:
    """Delete ``(path, description, is a VolumeSnapshot)`` objects in order, a snapshot letting
    its storage go with it; then wait up to ``wait`` seconds for them to be gone. Problems are
    returned, not raised, so one failure does not leave the rest behind."""
    problems = []
    for path, description, snapshot in objects:
        try:
            if snapshot:
                vs = volumes.get(session, path)
                if vs is not None:
                    volumes.release_snapshot_content(session, vs)
            volumes.delete(session, path)
        except errors.KubekeepError as exc:
            problems.append(f"could not delete {description}: {exc}")
    if wait > 0:
        problems.extend(_wait_gone(session, [(path, description) for path, description, _ in objects], wait))
    return problems


class _StillThere(Exception):
    pass


def _gone(session: Session, path: str) -> bool | None:
    return True if volumes.get(session, path) is None else None


def _wait_gone(session: Session, objects: list[tuple[str, str]], wait: float) -> list[str]:
    """Wait up to ``wait`` seconds in all until the objects ``(path, description)`` are gone;
    the ones still there, as problems."""
    deadline = time.monotonic() + wait
    problems = []
    for path, description in objects:
        try:
            waiting.poll(
                functools.partial(_gone, session, path),
                timeout=deadline - time.monotonic(),
                timed_out=functools.partial(_StillThere, f"{description} is still being deleted"),
                interval=DELETE_POLL_S,
            )
        except _StillThere as exc:
            problems.append(str(exc))
    return problems
