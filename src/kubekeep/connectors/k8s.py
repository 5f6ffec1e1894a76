"""``k8s://[CONTEXT]``: a cluster's API objects as a source and a destination (docs/manifests.md).

URI: ``k8s://`` (the kubeconfig's current context), ``k8s://CONTEXT``, or ``k8s://in-cluster``
(the pod's service account). The kubeconfig is found as kubectl finds it (``--kubeconfig``,
``KUBECONFIG``, ``~/.kube/config``), and in a pod without one the service account is used.

Backup (``K8sImporter``): discovers every served resource, lists each listable one at its
preferred version (in parallel, ``concurrency`` requests in flight, paginated) and stores each
object as YAML at the path ``manifests.layout`` gives it, plus ``discovery.json`` and
``version.json``. A resource that cannot be listed is a warning, not a failure.

Restore (``K8sExporter``): buffers the selected objects, plans them (``manifests.planning``),
creates them tier by tier with the objects of one tier in parallel, and reports every object.
``CleanFilesExporter`` wraps the fs exporter so that a manifests snapshot restored to a
directory comes out as clean YAML for ``kubectl apply`` or a GitOps repository.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from kubekeep import errors
from kubekeep.connectors.fs import FsDestinationOptions
from kubekeep.connectors.k8s_options import (
    CLEANING,
    CLUSTER_ONLY,
    ClusterVolumeOptions,
    ManifestsDestinationOptions,
    ManifestsSourceOptions,
)
from kubekeep.connectors.k8s_restore import TierRunner
from kubekeep.engine.entries import (
    ChunkSpec,
    Entry,
    EntryType,
    Exporter,
    Importer,
    SnapshotKind,
    SourceInfo,
    with_directories,
)
from kubekeep.kube import config, discovery, listing
from kubekeep.kube.discovery import ApiResource, Discovery
from kubekeep.kube.requesting import Session
from kubekeep.manifests import cleaning, layout, planning, serialization
from kubekeep.manifests.selection import ResourceMatcher, parse_label_selector

if TYPE_CHECKING:
    from kubekeep.connectors.pvc import ClusterVolumes

SCHEME = "k8s"
#: Resources served twice under another group: the copy is left out when the original is taken.
ALIASES = {("events.k8s.io", "events"): ("", "events")}
#: Resources left out unless asked for: high churn, little value for a restore or an investigation.
NOISY = ResourceMatcher.of(["events", "events.events.k8s.io", "leases.coordination.k8s.io"])
DIR_MODE = 0o755
FILE_MODE = 0o644


def parse_uri(uri: str) -> str | None:
    """The context named by ``k8s://[CONTEXT]`` (None for the current context)."""
    if not uri.lower().startswith("k8s:"):
        raise errors.UsageError(f"bad Kubernetes URI {uri!r}: expected k8s://[CONTEXT]")
    return uri[4:].removeprefix("//").rstrip("/") or None


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
            items = listing.list_all(
                self.session, r, namespace=namespace, label_selector=self.selector, page_size=self.page_size
            )
        except errors.ApiError as exc:
            where = f" in namespace {namespace}" if namespace else ""
            self._warn(f"cannot list {r.full_name} ({r.api_version}){where}: {exc}; not in the snapshot")
            return None
        out = []
        for obj in items:
            entry = self._entry(r, obj)
            if entry is not None:
                out.append(entry)
        return out

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


# -- restore ------------------------------------------------------------------------------------


class _Buffer:
    """Collects the selected objects (they are small) until ``finish``, parsing them as they
    arrive (on the engine's restore threads). Objects of resources that are never restored
    (``planning.CLUSTER_OWNED``) are not parsed: their attrs say all the plan needs."""

    def __init__(self) -> None:
        self.items: list[planning.StoredObject] = []
        self.mtimes: dict[str, int] = {}
        self.lock = threading.Lock()

    def add(self, entry: Entry, data: Iterable[bytes]) -> None:
        attrs = entry.attrs
        if (attrs.get("group", ""), attrs.get("resource", "")) in planning.CLUSTER_OWNED:
            meta = {
                "name": attrs.get("name", ""),
                **({"namespace": attrs["namespace"]} if attrs.get("namespace") else {}),
            }
            obj: Any = {"apiVersion": attrs.get("apiVersion", ""), "kind": attrs.get("kind", ""), "metadata": meta}
        else:
            content = b"".join(data)
            try:
                obj = serialization.load(content)
            except Exception as exc:  # noqa: BLE001 - a damaged or hand-edited file: say which
                raise errors.ConnectorError(f"{entry.path}: not a readable YAML object: {exc}") from None
            if not isinstance(obj, dict):
                raise errors.ConnectorError(f"{entry.path}: not a Kubernetes object")
        with self.lock:
            self.items.append(planning.StoredObject(entry.path, attrs, obj))
            self.mtimes[entry.path] = entry.mtime_ns

    def objects(self) -> list[planning.StoredObject]:
        return sorted(self.items, key=lambda o: o.path)


def _require_manifests(source: SourceInfo) -> None:
    if source.kind != SnapshotKind.MANIFESTS:
        raise errors.UsageError(
            f"a {source.kind or 'non-manifests'} snapshot cannot be restored to k8s://; "
            "only manifests snapshots (taken from k8s://) can"
        )


class _BufferingExporter(Exporter):
    """Collects a manifests snapshot's objects (directories and other files carry nothing to
    apply); subclasses act on them all at once in ``finish``, where ordering is known."""

    buffer: _Buffer

    def directory(self, entry: Entry) -> None:
        pass

    def symlink(self, entry: Entry) -> None:
        pass

    def file(self, entry: Entry, data: Iterable[bytes]) -> None:
        if layout.ref_of_attrs(entry.attrs) is not None:
            self.buffer.add(entry, data)


class K8sExporter(_BufferingExporter):
    scheme = SCHEME

    def __init__(
        self,
        context: str | None = None,
        kubeconfig: str | None = None,
        *,
        existing: str = "skip",
        dry_run: bool = False,
        restore_status: bool = False,
        keep_managed_fields: bool = False,
        namespace_map: Mapping[str, str] | None = None,
        concurrency: int = 64,
    ) -> None:
        if existing not in ("skip", "update"):
            raise errors.UsageError(f"--existing must be skip or update, not {existing!r}")
        self.opts = cleaning.CleanOptions(
            restore_status=restore_status,
            keep_managed_fields=keep_managed_fields,
            namespace_map=dict(namespace_map or {}),
        )
        self.label: tuple[str, str] | None = None  # the restored-from label, set in begin
        self.existing = existing
        self.dry_run = dry_run
        self.concurrency = max(1, concurrency)
        self.session = Session(config.connect(context, kubeconfig, pool_size=self.concurrency + 2))
        self.buffer = _Buffer()
        self._results: list[dict[str, Any]] = []

    def close(self) -> None:
        self.session.close()

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:
        _require_manifests(source)
        self.label = (planning.RESTORED_FROM_LABEL, snapshot_id) if snapshot_id else None
        self.session.get("/version")  # fail early, before reading the snapshot, if the cluster is unreachable

    def finish(self) -> list[str]:
        plan = planning.plan(self.buffer.objects(), self.opts, label=self.label)
        self.buffer = _Buffer()
        runner = TierRunner(
            self.session,
            existing=self.existing,
            dry_run=self.dry_run,
            restore_status=self.opts.restore_status,
            keep_managed_fields=self.opts.keep_managed_fields,
            concurrency=self.concurrency,
        )
        self._results = runner.run(plan)
        return []

    def results(self) -> list[dict[str, Any]]:
        return self._results


class CleanFilesExporter(_BufferingExporter):
    """Writes the objects of a manifests snapshot as clean YAML through another exporter (fs):
    cleaned as for a restore (``manifests.cleaning``), without cluster-owned objects and objects
    their controllers recreate, namespaces mapped in content and paths. Other files of the
    snapshot (discovery.json, version.json) are left out."""

    scheme = "fs"

    def __init__(
        self,
        inner: Exporter,
        *,
        namespace_map: Mapping[str, str] | None = None,
        restore_status: bool = False,
        keep_managed_fields: bool = False,
    ) -> None:
        self.inner = inner
        self.opts = cleaning.CleanOptions(
            restore_status=restore_status,
            keep_managed_fields=keep_managed_fields,
            namespace_map=dict(namespace_map or {}),
        )
        self.buffer = _Buffer()
        self._results: list[dict[str, Any]] = []

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:
        _require_manifests(source)
        self.inner.begin(source, metadata, snapshot_id=snapshot_id)

    def finish(self) -> list[str]:
        mtimes = self.buffer.mtimes
        made: set[str] = set()
        for p in planning.plan(self.buffer.objects(), self.opts):
            line = p.report()
            if p.skip is not None:
                self._results.append({**line, "action": "skipped", "reason": p.skip})
                continue
            path = layout.remap_path(p.path, self.opts.namespace_map)
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in made:
                    made.add(d)
                    self.inner.directory(Entry(d, EntryType.DIR, mode=DIR_MODE))
            data = serialization.dump(p.obj)
            self.inner.file(
                Entry(path, EntryType.FILE, mode=FILE_MODE, size=len(data), mtime_ns=mtimes[p.path]), [data]
            )
            self._results.append({**line, "path": path, "action": "written"})
        return self.inner.finish()

    def results(self) -> list[dict[str, Any]]:
        return self._results

    def close(self) -> None:
        self.inner.close()


SOURCE_OPTIONS = ManifestsSourceOptions
DESTINATION_OPTIONS = ManifestsDestinationOptions


def open_importer(uri: str, options: ManifestsSourceOptions) -> K8sImporter:
    return K8sImporter(
        options.context or parse_uri(uri),
        options.kubeconfig,
        include_namespaces=options.include_namespaces,
        exclude_namespaces=options.exclude_namespaces,
        include_resources=options.include_resources,
        exclude_resources=options.exclude_resources,
        selector=options.selector,
        include_noisy=options.include_noisy,
        concurrency=options.concurrency,
        page_size=options.page_size or listing.PAGE_SIZE,
        volumes=options.volumes,
    )


def open_exporter(uri: str, options: ManifestsDestinationOptions) -> K8sExporter:
    if options.raw:
        raise errors.UsageError("--raw applies to restores to files, not into a cluster (k8s://)")
    return K8sExporter(
        options.context or parse_uri(uri),
        options.kubeconfig,
        existing=options.existing,
        dry_run=options.dry_run,
        restore_status=options.restore_status,
        keep_managed_fields=options.keep_managed_fields,
        namespace_map=options.namespace_map,
        concurrency=options.concurrency or 64,
    )


def open_manifests_exporter(destination: str, options: ManifestsDestinationOptions) -> Exporter:
    """Where a manifests snapshot goes: into a cluster (``k8s://``), as clean YAML files (``fs:``,
    private: the objects include Secrets), or as the stored files (``raw``, or another connector
    given ``options.destination``)."""
    from kubekeep import connectors  # the registry (this module is one of its entries)

    scheme = connectors.scheme_of(destination)
    if scheme == "k8s":
        return open_exporter(destination, options)
    wrong = [n for n in options.given() if n in CLUSTER_ONLY or (options.raw and n in CLEANING)]
    if wrong:
        names = ", ".join("--" + n.replace("_", "-") for n in wrong)
        raise errors.UsageError(
            f"{names} apply(ies) to restores into a cluster (k8s://)"
            + (", not to --raw file restores" if options.raw else "")
        )
    inner_options = FsDestinationOptions(private=True) if scheme == "fs" else options.destination
    inner = connectors.open_exporter(destination, inner_options)
    if options.raw or scheme != "fs":
        return inner
    return CleanFilesExporter(
        inner,
        namespace_map=options.namespace_map,
        restore_status=options.restore_status,
        keep_managed_fields=options.keep_managed_fields,
    )
