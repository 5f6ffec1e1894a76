"""Backup from ``k8s://``: a cluster's API objects as snapshot entries.

``K8sImporter`` discovers every served resource, lists each listable one at its preferred
version (in parallel, ``concurrency`` requests in flight, paginated) and stores each object as
YAML at the path ``manifests.layout`` gives it, plus ``discovery.json`` and ``version.json``.
A resource that cannot be listed is a warning, not a failure. With ``volumes``, the selected
claims' files follow under ``volumes/`` (``connectors.pvc``, docs/volumes.md).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from kubekeep import errors
from kubekeep.connectors.k8s.options import ClusterVolumeOptions
from kubekeep.connectors.k8s.uri import SCHEME
from kubekeep.engine.entries import (
    ChunkSpec,
    Entry,
    EntryType,
    Importer,
    SnapshotKind,
    SourceInfo,
    with_directories,
)
from kubekeep.kube import config, discovery, listing
from kubekeep.kube.discovery import ApiResource, Discovery
from kubekeep.kube.requesting import Session
from kubekeep.manifests import layout, serialization
from kubekeep.manifests.selection import ResourceMatcher, parse_label_selector

if TYPE_CHECKING:
    from kubekeep.connectors.pvc import ClusterVolumes

#: Resources served twice under another group: the copy is left out when the original is taken.
ALIASES = {("events.k8s.io", "events"): ("", "events")}
#: Resources left out unless asked for: high churn, little value for a restore or an investigation.
NOISY = ResourceMatcher.of(["events", "events.events.k8s.io", "leases.coordination.k8s.io"])
#: modes of the directories and object files of a manifests snapshot (clean files get them too)
DIR_MODE = 0o755
FILE_MODE = 0o644


def _mtime_ns(timestamp: str | None, default: int) -> int:
    if not timestamp:
        return default
    try:
        return int(dt.datetime.fromisoformat(timestamp).timestamp()) * 1_000_000_000
    except ValueError:
        return default


class K8sImporter(Importer):
    scheme = SCHEME

    def __init__(
        self,
        context: str | None = None,
        kubeconfig: str | None = None,
        *,
        include_namespaces: Iterable[str] = (),
        exclude_namespaces: Iterable[str] = (),
        include_resources: Iterable[str] = (),
        exclude_resources: Iterable[str] = (),
        selector: str | None = None,
        include_noisy: bool = False,
        concurrency: int = 8,
        page_size: int = listing.PAGE_SIZE,
        volumes: ClusterVolumeOptions | None = None,
    ) -> None:
        self.include_namespaces = sorted(set(include_namespaces))
        self.exclude_namespaces = frozenset(exclude_namespaces)
        self.include_resources = ResourceMatcher.of(include_resources)
        self.exclude_resources = ResourceMatcher.of(exclude_resources)
        self.selector = str(parse_label_selector(selector)) if selector else ""
        self.include_noisy = include_noisy
        self.concurrency = max(1, concurrency)
        self.page_size = page_size
        self.session = Session(config.connect(context, kubeconfig, pool_size=self.concurrency + 2))
        self._version: dict[str, Any] | None = None
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        self._stats: dict[str, Any] = {}
        self._started_ns = time.time_ns()
        # --volumes: each selected claim's files under volumes/<namespace>/<claim>/ (docs/volumes.md)
        self._volumes: ClusterVolumes | None = None
        if volumes is not None:
            from kubekeep.connectors.pvc import cluster_volumes  # the agent's client: only when asked for

            self._volumes = cluster_volumes(
                self.session, volumes, namespaces=self.include_namespaces, exclude_namespaces=self.exclude_namespaces
            )

    def close(self) -> None:
        if self._volumes is not None:
            self._volumes.close()
        self.session.close()

    def use_chunking(self, spec: ChunkSpec) -> None:
        if self._volumes is not None:
            self._volumes.use_chunking(spec)

    def version(self) -> dict[str, Any]:
        if self._version is None:
            self._version = self.session.get("/version")
        return self._version

    def source(self) -> SourceInfo:
        return SourceInfo(
            uri=f"k8s://{self.session.context}",
            kind=SnapshotKind.MANIFESTS.value,
            host=self.session.context,
            extra={"server": self.session.server, "version": self.version().get("gitVersion", "")},
        )

    def warnings(self) -> list[str]:
        return sorted(self._warnings) + (self._volumes.warnings() if self._volumes is not None else [])

    def metadata(self) -> dict[str, Any]:
        if self._volumes is not None:
            return {"manifests": self._stats, "volumes": self._volumes.report()}
        return {"manifests": self._stats}

    def _warn(self, message: str) -> None:
        with self._lock:
            self._warnings.append(message)

    def selected_resources(self, disc: Discovery) -> list[ApiResource]:
        """The listable resources this backup takes, after the include/exclude filters."""
        chosen = []
        for r in disc.resources:
            if not r.listable:
                continue
            names: dict[str, Any] = {
                "group": r.group,
                "resource": r.resource,
                "kind": r.kind,
                "short_names": r.short_names,
                "singular": r.singular,
            }
            if self.include_resources and not self.include_resources.matches(**names):
                continue
            if self.exclude_resources.matches(**names):
                continue
            if NOISY.matches(**names) and not self.include_noisy and not self.include_resources.matches(**names):
                continue
            chosen.append(r)
        taken = {(r.group, r.resource) for r in chosen}
        return [r for r in chosen if ALIASES.get((r.group, r.resource)) not in taken]

    def entries(self) -> Iterator[Entry]:
        started = time.monotonic()
        disc = discovery.discover(self.session)
        for gv, message in sorted(disc.errors.items()):
            self._warn(
                f"API group version {gv} could not be discovered ({message}); its resources are not in the snapshot"
            )
        resources = self.selected_resources(disc)
        jobs: list[tuple[ApiResource, str]] = []
        for r in resources:
            if r.namespaced and self.include_namespaces:
                jobs.extend((r, ns) for ns in self.include_namespaces)
            else:
                jobs.append((r, ""))
        files: list[Entry] = []
        counts: dict[str, int] = {}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="kubekeep-list") as pool:
            for r, _, result in pool.map(lambda job: (*job, self._list(*job)), jobs):
                if result is None:
                    continue
                files.extend(result)
                counts[r.full_name] = counts.get(r.full_name, 0) + len(result)
        files.sort(key=lambda e: e.path)
        yield from with_directories(files, mode=DIR_MODE)
        disc_json = disc.to_json()
        yield Entry(layout.DISCOVERY_FILE, EntryType.FILE, mode=FILE_MODE, data=disc_json, size=len(disc_json))
        version = orjson.dumps(self.version(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        yield Entry(layout.VERSION_FILE, EntryType.FILE, mode=FILE_MODE, data=version, size=len(version))
        namespaces = {e.attrs.get("namespace") for e in files} - {None}
        self._stats = {
            "objects": len(files),
            "resources": len(resources),
            "namespaces": len(namespaces),
            "by_resource": dict(sorted(counts.items())),
            "list_seconds": round(time.monotonic() - started, 3),
            "discovery": disc.method,
        }
        if self._volumes is not None:
            yield from self._volumes.entries()

    def _list(self, r: ApiResource, namespace: str) -> list[Entry] | None:
        try:
            # page by page: a page's parsed objects become entries (YAML bytes) before the next
            return listing.list_mapped(
                self.session,
                r,
                lambda obj: self._entry(r, obj),
                namespace=namespace,
                label_selector=self.selector,
                page_size=self.page_size,
            )
        except errors.ApiError as exc:
            where = f" in namespace {namespace}" if namespace else ""
            self._warn(f"cannot list {r.full_name} ({r.api_version}){where}: {exc}; not in the snapshot")
            return None

    def _entry(self, r: ApiResource, obj: dict[str, Any]) -> Entry | None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace", "") if r.namespaced else ""
        name = meta.get("name", "")
        if ns and ns in self.exclude_namespaces:
            return None
        if (r.group, r.resource) == ("", "namespaces") and (
            name in self.exclude_namespaces or (self.include_namespaces and name not in self.include_namespaces)
        ):
            return None
        try:
            path = layout.object_path(r.group, r.resource, ns, name)
        except ValueError as exc:
            self._warn(f"{r.full_name} {ns + '/' if ns else ''}{name}: {exc}; skipped")
            return None
        if "apiVersion" in obj and next(iter(obj)) != "apiVersion":
            obj = {"apiVersion": obj["apiVersion"], "kind": obj.get("kind", r.kind), **obj}
        data = serialization.dump(obj)
        key = (
            f"{meta.get('uid', '')}/{meta.get('resourceVersion', '')}".encode() if meta.get("resourceVersion") else None
        )
        return Entry(
            path,
            EntryType.FILE,
            mode=FILE_MODE,
            size=len(data),
            data=data,
            reuse_key=key,
            mtime_ns=_mtime_ns(meta.get("creationTimestamp"), self._started_ns),
            attrs=layout.object_attrs(obj, r.group, r.resource),
        )
