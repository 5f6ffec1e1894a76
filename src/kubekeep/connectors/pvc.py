"""``pvc://[CONTEXT/]NAMESPACE/NAME``: the files in a PersistentVolumeClaim, as a source and a
destination (docs/volumes.md).

Backup (``PvcImporter``): find the claim's CSI driver and a VolumeSnapshotClass for it, run
the pre-snapshot hooks, snapshot the claim, run the post-snapshot hooks once the point in time
is cut, wait until the snapshot is ready, provision a temporary claim from it, start a helper
pod running the agent with that claim mounted read-only, connect to it (port-forward through
the API server from outside the cluster, the pod's address from inside), and ingest its files:
the agent chunks and hashes them where they are and sends only chunks the repository lacks.
Snapshot, claim, Secret and pod are deleted at the end whatever happens; all carry labels so
``kubekeep cleanup`` finds what a killed run left. A claim without a CSI driver or without a
snapshot class is copied live (the claim itself, mounted read-only) only when asked
(``live=True``), with a warning that the copy is crash-consistent at best. A raw block claim
(``volumeMode: Block``) becomes one file, ``volume.img``.

Restore (``PvcExporter``): into an existing claim, or a new one sized and classed as given or
as the snapshot recorded, through a helper pod mounting it read-write. ``pvc://NAMESPACE``
restores a directory of claims (``volumes/<namespace>`` of a cluster snapshot), one claim per
subdirectory.

``ClusterVolumes`` is the volume part of a cluster backup: the files of each selected claim
under ``volumes/<namespace>/<claim>/``, volumes prepared in parallel with a bound.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubekeep import errors
from kubekeep.agent import protocol
from kubekeep.agent.client import (
    Connect,
    RemoteBackup,
    RemoteRestore,
    open_session,
    tcp,
)
from kubekeep.connectors.k8s.options import ClusterVolumeOptions
from kubekeep.engine.entries import (
    ChunkSpec,
    Entry,
    EntryType,
    Exporter,
    Importer,
    SnapshotKind,
    SourceInfo,
)
from kubekeep.kube import cleanup, config, hooks, pods, portforward, volumes
from kubekeep.kube.config import ClusterAccess
from kubekeep.kube.requesting import Session
from kubekeep.manifests import cleaning

SCHEME = "pvc"
VOLUMES_DIR = "volumes"
CONNECT_MODES = ("auto", "port-forward", "pod-ip")
Status = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def parse_uri(uri: str, *, need_name: bool = True) -> tuple[str | None, str, str]:
    """``pvc://[CONTEXT/]NAMESPACE/NAME`` -> ``(context, namespace, name)``; the context may
    itself contain slashes (EKS ARNs). Without ``need_name``, ``pvc://[CONTEXT/]NAMESPACE``
    and ``pvc://`` are accepted too (name, and namespace, empty)."""
    if not uri.lower().startswith("pvc://"):
        raise errors.UsageError(f"bad PVC URI {uri!r}: expected pvc://[CONTEXT/]NAMESPACE/NAME")
    parts = [p for p in uri[6:].strip("/").split("/") if p] if uri[6:].strip("/") else []
    if need_name:
        if len(parts) < 2:
            raise errors.UsageError(f"bad PVC URI {uri!r}: expected pvc://[CONTEXT/]NAMESPACE/NAME")
        return ("/".join(parts[:-2]) or None), parts[-2], parts[-1]
    if len(parts) >= 2:
        return ("/".join(parts[:-2]) or None), parts[-2], parts[-1]
    return None, (parts[0] if parts else ""), ""


@dataclass
class VolumeOptions:
    """Everything a volume backup or restore can be told (see ``kubekeep backup --help``)."""

    kubeconfig: str | None = None
    context: str | None = None
    live: bool = False
    snapshot_class: str | None = None
    snapshot_timeout: float = 600.0
    bind_timeout: float = 300.0
    connect: str = "auto"
    compress: bool = True
    helper: pods.HelperOptions = field(default_factory=pods.HelperOptions)
    pre_hooks: list[str] = field(default_factory=list)
    post_hooks: list[str] = field(default_factory=list)
    hook_container: str = ""
    hook_timeout: float = hooks.DEFAULT_TIMEOUT_S
    hook_on_error: str = "fail"
    annotation_hooks: bool = True
    excludes: list[str] = field(default_factory=list)
    #: progress lines (called from any thread)
    status: Status = _quiet
    # restore
    size: str | None = None
    storage_class: str | None = None
    owners: bool | None = None

    def __post_init__(self) -> None:
        if self.connect not in CONNECT_MODES:
            raise errors.UsageError(f"agent connection {self.connect!r}: expected one of {', '.join(CONNECT_MODES)}")
        if self.hook_on_error not in hooks.ON_ERROR:
            raise errors.UsageError(f"hook on-error policy {self.hook_on_error!r}: expected fail or continue")
        if self.helper.run_as is not None and self.owners is None:
            self.owners = False  # a helper without root cannot give files their recorded owners

    def cli_hooks(self) -> list[hooks.Hook]:
        made = []
        for phase, commands in (("pre", self.pre_hooks), ("post", self.post_hooks)):
            for command in commands:
                made.append(
                    hooks.Hook(
                        phase=phase,
                        command=hooks.parse_command(command),
                        container=self.hook_container,
                        timeout=self.hook_timeout,
                        on_error=self.hook_on_error,
                    )
                )
        return made


class KubeContext:
    """One cluster connection shared by every volume of a run."""

    def __init__(self, options: VolumeOptions, context: str | None, *, session: Session | None = None) -> None:
        self.session = session or Session(config.connect(context or options.context, options.kubeconfig))
        self.access: ClusterAccess = self.session.access
        self.in_cluster = self.access.context == config.IN_CLUSTER
        self._owned = session is None

    def close(self) -> None:
        if self._owned:
            self.session.close()


def agent_connect(kube: KubeContext, mode: str, pod: dict[str, Any]) -> Connect:
    """How to reach a running helper pod's agent: the pod's address from inside the cluster,
    the API server's port-forward from outside (``auto``), or as told."""
    use_pod_ip = mode == "pod-ip" or (mode == "auto" and kube.in_cluster)
    meta = pod["metadata"]
    if use_pod_ip:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            raise errors.SourceUnreachable(f"helper pod {meta['namespace']}/{meta['name']} has no IP address")
        return tcp(ip, protocol.DEFAULT_PORT)
    return lambda: portforward.connect(kube.access, meta["namespace"], meta["name"], protocol.DEFAULT_PORT)


def check_helper_admitted(
    session: Session, namespace: str, claim: str, options: VolumeOptions, *, write: bool, block: bool, what: str
) -> None:
    """Before anything is created: would the namespace admit the helper pod this run needs?"""
    manifest = pods.helper_manifest(
        "kubekeep-admission-check",
        namespace,
        claim,
        secret_name="kubekeep-admission-check",
        options=options.helper,
        metadata={},
        write=write,
        block=block,
    )
    pods.check_admitted(session, manifest, what=what)


def clean_claim(manifest: dict[str, Any]) -> dict[str, Any]:
    """The claim's manifest as a restore would create it (server fields and binding removed)."""
    obj = copy.deepcopy(manifest)
    obj.setdefault("apiVersion", "v1")
    obj.setdefault("kind", "PersistentVolumeClaim")
    meta = obj.setdefault("metadata", {})
    meta.pop("finalizers", None)
    (meta.get("annotations") or {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if not meta.get("annotations"):
        meta.pop("annotations", None)
    return cleaning.clean(obj, "", "persistentvolumeclaims")


# -- backing up one claim ---------------------------------------------------------------------


class VolumeBackup:
    """One claim: ``prepare()`` (hooks, snapshot, temporary claim, helper pod, connection), then
    ``entries()``, then ``close()`` (always), which removes everything ``prepare`` created."""

    def __init__(
        self, kube: KubeContext, claim: volumes.Claim, options: VolumeOptions, run_id: str, *, prefix: str = ""
    ) -> None:
        self.kube = kube
        self.session = kube.session
        self.claim = claim
        self.options = options
        self.run = cleanup.Run(kube.session, run_id=run_id)
        self.prefix = prefix
        self.spec: ChunkSpec | None = None
        self.remote: RemoteBackup | None = None
        self.mode = ""
        self.snapshot_class = ""
        self.warnings: list[str] = []
        self.hook_results: list[hooks.HookResult] = []
        self.timings: dict[str, float] = {}
        self._secret = b""
        self._post_pending: list[tuple[dict[str, Any], hooks.Hook]] = []
        self._status = options.status
        self._closed = False

    @property
    def label(self) -> str:
        return f"{self.claim.namespace}/{self.claim.name}"

    def _lap(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.timings[name] = round(now - since, 3)
        return now

    def plan(self) -> str | None:
        """Decide snapshot or live; None if possible, else why not (for skip reports)."""
        claim = self.claim
        if claim.phase != "Bound":
            return f"PersistentVolumeClaim {self.label} is {claim.phase or 'not bound'}, not Bound"
        reason = None
        if claim.driver is None:
            reason = f"it is not CSI-backed (its volume is {claim.volume_kind or 'of an unknown kind'})"
        else:
            found = volumes.snapshot_class_for(self.session, claim.driver, self.options.snapshot_class)
            if found is None:
                reason = f"its CSI driver {claim.driver} has no VolumeSnapshotClass"
            else:
                self.snapshot_class = found
        if reason is None:
            self.mode = "snapshot"
            return None
        if not self.options.live:
            return f"cannot snapshot {self.label}: {reason}; back it up live (crash-consistent at best) with --live"
        self.mode = "live"
        self.warnings.append(
            f"{self.label}: {reason}, so it was copied live while in use: the copy is crash-consistent at best"
        )
        return None

    def prepare(self, spec: ChunkSpec) -> None:
        self.spec = spec
        if not self.mode:
            reason = self.plan()
            if reason is not None:
                raise errors.ConnectorError(reason)
        check_helper_admitted(
            self.session,
            self.claim.namespace,
            self.claim.name,
            self.options,
            write=False,
            block=self.claim.block,
            what=self.label,
        )
        t = time.monotonic()
        users = pods.pods_using_claim(self.session, self.claim.namespace, self.claim.name)
        pairs = self._hooks(users)
        pre = [(p, h) for p, h in pairs if h.phase == "pre"]
        post = [(p, h) for p, h in pairs if h.phase == "post"]
        mount, node = self.claim.name, ""
        ok = False
        try:
            self._run_hooks(pre, post)
            if self.mode == "snapshot":
                mount = self._snapshot(t)  # post hooks run as soon as the snapshot is cut
            else:
                node = self._node_of(users)
            ok = True
        finally:
            if not ok:
                self._unfreeze()
        if self.mode == "snapshot":
            self._finish_post_hooks()
        t = time.monotonic()
        pod = self._helper(mount, node)
        t = self._lap("helper_start_s", t)
        self._status(f"{self.label}: connecting to the agent")
        meta = pod["metadata"]
        channel, _hello = open_session(
            agent_connect(self.kube, self.options.connect, pod),
            self._secret,
            "backup",
            timeout=60.0,
            peer=f"agent of {self.label}",
            alive=lambda: pods.check_running(self.session, meta["namespace"], meta["name"]),
        )
        self.remote = RemoteBackup(
            channel, spec, prefix=self.prefix, compress=self.options.compress, excludes=self.options.excludes
        )
        self._lap("connect_s", t)

    def _hooks(self, users: list[dict[str, Any]]) -> list[tuple[dict[str, Any], hooks.Hook]]:
        pairs: list[tuple[dict[str, Any], hooks.Hook]] = []
        cli = self.options.cli_hooks()
        for pod in users:
            pairs.extend((pod, h) for h in cli)
            if self.options.annotation_hooks:
                pairs.extend((pod, h) for h in hooks.from_annotations(pod))
        if cli and not users:
            self.warnings.append(f"{self.label}: no running pod uses the claim, so no hook ran")
        return pairs

    def _run_hooks(
        self, pre: list[tuple[dict[str, Any], hooks.Hook]], post: list[tuple[dict[str, Any], hooks.Hook]]
    ) -> None:
        """Run pre hooks; a pod's post hooks run later only if its pre hooks were attempted."""
        attempted = set()
        try:
            for pod, hook in pre:
                attempted.add(pod["metadata"]["uid"])
                self._hook(pod, hook)
        finally:
            self._post_pending = [
                (p, h)
                for p, h in post
                if p["metadata"]["uid"] in attempted
                or not any(q["metadata"]["uid"] == p["metadata"]["uid"] for q, _ in pre)
            ]

    def _hook(self, pod: dict[str, Any], hook: hooks.Hook) -> None:
        self._status(f"{self.label}: running {hook.phase}-snapshot hook in {pod['metadata']['name']}")
        result = hooks.run(self.kube.access, pod, hook)
        self.hook_results.append(result)
        if result.ok:
            return
        message = hooks.describe(result)
        if hook.on_error == "fail":
            raise errors.ConnectorError(f"{self.label}: {message} (on-error: fail)")
        self.warnings.append(f"{self.label}: {message} (on-error: continue)")

    def _unfreeze(self) -> None:
        """Run the pending post hooks while failing: their problems become warnings."""
        try:
            self._finish_post_hooks()
        except errors.KubekeepError as exc:
            self.warnings.append(str(exc))

    def _finish_post_hooks(self) -> None:
        pending, self._post_pending = self._post_pending, []
        failure: errors.KubekeepError | None = None
        for pod, hook in pending:  # every one runs, even after a failure: unfreeze everything
            try:
                self._hook(pod, hook)
            except errors.KubekeepError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _snapshot(self, started: float) -> str:
        claim = self.claim
        name = self.run.name("snap")
        self._status(f"{self.label}: creating VolumeSnapshot {claim.namespace}/{name} (class {self.snapshot_class})")
        self.run.create(
            volumes.snapshot_path(claim.namespace),
            volumes.snapshot_manifest(name, claim, self.snapshot_class, self.run.metadata("snapshot")),
            f"VolumeSnapshot {claim.namespace}/{name}",
        )
        vs = volumes.wait_snapshot(
            self.session,
            claim.namespace,
            name,
            timeout=self.options.snapshot_timeout,
            status=self._status,
            on_cut=lambda _vs: self._finish_post_hooks(),
        )
        t = self._lap("snapshot_s", started)
        restore_size = str((vs.get("status") or {}).get("restoreSize") or claim.size)
        size = max(claim.size, restore_size, key=lambda q: volumes.quantity_bytes(q) if q else 0)
        temp = self.run.name("pvc")
        self._status(f"{self.label}: provisioning PersistentVolumeClaim {claim.namespace}/{temp} from the snapshot")
        self.run.create(
            volumes.claim_path(claim.namespace),
            volumes.claim_manifest(
                temp,
                claim.namespace,
                size=size,
                storage_class=claim.storage_class,
                access_modes=claim.access_modes,
                block=claim.block,
                metadata=self.run.metadata("snapshot-volume"),
                snapshot=name,
            ),
            f"PersistentVolumeClaim {claim.namespace}/{temp}",
        )
        sc = volumes.storage_class(self.session, claim.storage_class)
        if (sc or {}).get("volumeBindingMode") != "WaitForFirstConsumer":
            pvc = volumes.wait_bound(
                self.session, claim.namespace, temp, timeout=self.options.bind_timeout, status=self._status
            )
            volumes.ensure_deleted_with_claim(self.session, pvc, self.run.metadata("snapshot-volume"))
        self._lap("provision_s", t)
        return temp

    def _node_of(self, users: list[dict[str, Any]]) -> str:
        """A live copy of a single-node claim must run where the claim is attached."""
        if "ReadWriteOnce" in self.claim.access_modes or "ReadWriteOncePod" in self.claim.access_modes:
            if "ReadWriteOncePod" in self.claim.access_modes and users:
                raise errors.ConnectorError(
                    f"{self.label} is ReadWriteOncePod and in use by "
                    f"{users[0]['metadata']['name']}: a live copy cannot mount it"
                )
            nodes = {p["spec"].get("nodeName") for p in users if p["spec"].get("nodeName")}
            if len(nodes) == 1:
                return str(nodes.pop())
        return ""

    def _helper(self, claim_name: str, node: str) -> dict[str, Any]:
        ns = self.claim.namespace
        self._secret = protocol.new_secret()
        secret_name = self.run.name("secret")
        self.run.create(
            pods.secret_path(ns),
            pods.secret_manifest(secret_name, ns, self._secret, self.run.metadata("agent-secret")),
            f"Secret {ns}/{secret_name}",
        )
        name = self.run.name("agent")
        self._status(f"{self.label}: starting helper pod {ns}/{name} ({self.options.helper.image})")
        self.run.create(
            pods.pod_path(ns),
            pods.helper_manifest(
                name,
                ns,
                claim_name,
                secret_name=secret_name,
                options=self.options.helper,
                metadata=self.run.metadata("agent"),
                write=False,
                block=self.claim.block,
                node_name=node,
            ),
            f"helper pod {ns}/{name}",
        )
        return pods.wait_running(self.session, ns, name, timeout=self.options.helper.start_timeout, status=self._status)

    def entries(self) -> Iterator[Entry]:
        assert self.remote is not None
        started = time.monotonic()
        self._status(f"{self.label}: reading files through the agent")
        yield from self.remote.entries()
        self.warnings.extend(f"{self.label}: {w}" for w in self.remote.warnings)
        if self.mode == "live":
            self._finish_post_hooks()
        self._lap("transfer_s", started)

    def report(self) -> dict[str, Any]:
        transfer = self.remote.stats.to_dict() if self.remote is not None else {}
        transfer.pop("agent", None)
        if self.remote is not None:
            transfer["bytes_on_wire"] = self.remote.channel.bytes_received
        return {
            "claim": self.claim.summary(),
            "manifest": clean_claim(self.claim.manifest),
            "mode": self.mode,
            "snapshot_class": self.snapshot_class or None,
            "run": self.run.id,
            "hooks": [r.to_dict() for r in self.hook_results],
            "transfer": transfer,
            "timings": self.timings,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.remote is not None:
                self.remote.close()
        finally:
            self._unfreeze()  # a live copy that did not finish
            problems = self.run.remove(status=self._status)
            self.warnings.extend(f"{self.label}: {p}" for p in problems)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (so temporary objects are removed) while a volume run lasts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class PvcImporter(Importer):
    scheme = SCHEME

    def __init__(self, uri: str, options: VolumeOptions) -> None:
        context, self.namespace, self.name = parse_uri(uri)
        self.options = options
        self.kube = KubeContext(options, context)
        self.claim = volumes.describe_claim(self.kube.session, self.namespace, self.name)
        run = cleanup.Run(self.kube.session)
        self.volume = VolumeBackup(self.kube, self.claim, options, run.id)
        self._spec: ChunkSpec | None = None
        self._signals: contextlib.ExitStack | None = None

    def source(self) -> SourceInfo:
        return SourceInfo(
            uri=f"pvc://{self.kube.access.context}/{self.namespace}/{self.name}",
            kind=SnapshotKind.VOLUME.value,
            host=self.kube.access.context,
            extra={"namespace": self.namespace, "name": self.name, "server": self.kube.access.server},
        )

    def use_chunking(self, spec: ChunkSpec) -> None:
        self._spec = spec

    def entries(self) -> Iterator[Entry]:
        if self._spec is None:
            raise errors.ConnectorError("pvc:// needs the repository's chunking (use_chunking) before entries()")
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(_terminate_as_interrupt())
        self.volume.prepare(self._spec)
        yield from self.volume.entries()

    def metadata(self) -> dict[str, Any]:
        return {"volume": self.volume.report()}

    def warnings(self) -> list[str]:
        return list(self.volume.warnings)

    def close(self) -> None:
        try:
            self.volume.close()
        finally:
            if self._signals is not None:
                self._signals.close()
            self.kube.close()


# -- cluster backups ----------------------------------------------------------------------------


class ClusterVolumes:
    """The files of many claims under ``volumes/<namespace>/<claim>/``, for a cluster backup.

    Claims are prepared (hooks, snapshot, helper pod) ``parallel`` at a time ahead of the one
    being read; reading is one claim after another (a snapshot tree is written in order).
    Claims that cannot be snapshotted (not CSI, no snapshot class) are skipped with the reason,
    unless ``live`` is set.
    """

    def __init__(
        self,
        kube: KubeContext,
        options: VolumeOptions,
        *,
        namespaces: Iterable[str] = (),
        exclude_namespaces: Iterable[str] = (),
        selector: str = "",
        parallel: int = 2,
    ) -> None:
        self.kube = kube
        self.options = options
        self.namespaces = sorted(set(namespaces))
        self.exclude_namespaces = frozenset(exclude_namespaces)
        self.selector = selector
        self.parallel = max(1, parallel)
        self.run_id = cleanup.Run(kube.session).id
        self.volumes: list[VolumeBackup] = []
        self.skipped: list[dict[str, str]] = []
        self._warnings: list[str] = []
        self._spec: ChunkSpec | None = None

    def use_chunking(self, spec: ChunkSpec) -> None:
        self._spec = spec

    def claims(self) -> list[volumes.Claim]:
        found = []
        for ns in self.namespaces or [""]:
            for pvc in volumes.list_claims(self.kube.session, namespace=ns, label_selector=self.selector):
                if (pvc["metadata"].get("labels") or {}).get(cleanup.MANAGED_BY) == "kubekeep":
                    continue  # our own temporary claims
                if pvc["metadata"]["namespace"] in self.exclude_namespaces:
                    continue
                found.append(volumes.claim_info(self.kube.session, pvc))
        return sorted(found, key=lambda c: (c.namespace, c.name))

    def entries(self) -> Iterator[Entry]:
        if self._spec is None:
            raise errors.ConnectorError("volumes need the repository's chunking (use_chunking) before entries()")
        spec = self._spec
        for claim in self.claims():
            vb = VolumeBackup(
                self.kube, claim, self.options, self.run_id, prefix=f"{VOLUMES_DIR}/{claim.namespace}/{claim.name}"
            )
            reason = vb.plan()
            if reason is None:
                self.volumes.append(vb)
            else:
                self.skipped.append({"claim": vb.label, "reason": reason})
                self._warnings.append(f"volume {vb.label} skipped: {reason}")
        if not self.volumes:
            return
        yield Entry(VOLUMES_DIR, EntryType.DIR, mode=0o755)
        with _terminate_as_interrupt(), ThreadPoolExecutor(self.parallel, thread_name_prefix="kubekeep-volume") as pool:
            futures: dict[int, Future[None]] = {}

            def submit(i: int) -> None:
                if i < len(self.volumes):
                    futures[i] = pool.submit(self.volumes[i].prepare, spec)

            for i in range(self.parallel):
                submit(i)
            namespace = ""
            try:
                for i, vb in enumerate(self.volumes):
                    try:
                        futures.pop(i).result()
                    except errors.KubekeepError as exc:
                        self._warnings.append(f"volume {vb.label} not backed up: {exc}")
                        self.skipped.append({"claim": vb.label, "reason": str(exc)})
                        vb.close()
                        submit(i + self.parallel)
                        continue
                    if vb.claim.namespace != namespace:
                        namespace = vb.claim.namespace
                        yield Entry(f"{VOLUMES_DIR}/{namespace}", EntryType.DIR, mode=0o755)
                    yield Entry(vb.prefix, EntryType.DIR, mode=0o755, attrs={"claim": vb.claim.summary()})
                    yield from vb.entries()
                    vb.close()
                    submit(i + self.parallel)
            finally:
                for fut in futures.values():
                    fut.cancel()
                for vb in self.volumes:
                    with contextlib.suppress(Exception):
                        vb.close()

    def report(self) -> dict[str, Any]:
        return {
            "volumes": {
                vb.label: vb.report() for vb in self.volumes if vb.label not in {s["claim"] for s in self.skipped}
            },
            "skipped": self.skipped,
        }

    def warnings(self) -> list[str]:
        return self._warnings + [w for vb in self.volumes for w in vb.warnings]

    def close(self) -> None:
        for vb in self.volumes:
            with contextlib.suppress(Exception):
                vb.close()


# -- restoring ----------------------------------------------------------------------------------


class VolumeRestore:
    """One claim being written: target claim (existing or new), helper pod, agent session."""

    def __init__(
        self,
        kube: KubeContext,
        namespace: str,
        name: str,
        options: VolumeOptions,
        recorded: dict[str, Any] | None,
        run_id: str,
    ) -> None:
        self.kube = kube
        self.session = kube.session
        self.namespace = namespace
        self.name = name
        self.options = options
        self.recorded = recorded or {}
        self.run = cleanup.Run(kube.session, run_id=run_id)
        self.remote: RemoteRestore | None = None
        self.created_claim = False
        self.block = False
        self.warnings: list[str] = []
        self.stats: dict[str, Any] = {}

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    def open(self) -> None:
        status = self.options.status
        existing = volumes.get(self.session, volumes.claim_path(self.namespace, self.name))
        block = (
            (existing or {}).get("spec", {}).get("volumeMode") == "Block"
            if existing
            else self.recorded.get("volumeMode") == "Block"
        )
        check_helper_admitted(
            self.session, self.namespace, self.name, self.options, write=True, block=block, what=self.label
        )
        if existing is None:
            self._create_claim()
        else:
            self.block = (existing.get("spec") or {}).get("volumeMode") == "Block"
            recorded_block = self.recorded.get("volumeMode") == "Block"
            if self.recorded and recorded_block != self.block:
                raise errors.ConnectorError(
                    f"PersistentVolumeClaim {self.label} is a {'block' if self.block else 'filesystem'} volume, the "
                    f"snapshot holds a {'block' if recorded_block else 'filesystem'} volume"
                )
        users = pods.pods_using_claim(self.session, self.namespace, self.name)
        node = ""
        if users:
            self.warnings.append(
                f"{self.label} is in use by {', '.join(p['metadata']['name'] for p in users)}: "
                "files were replaced under a running application"
            )
            nodes = {p["spec"].get("nodeName") for p in users}
            node = str(nodes.pop()) if len(nodes) == 1 else ""
        secret = protocol.new_secret()
        secret_name = self.run.name("secret")
        self.run.create(
            pods.secret_path(self.namespace),
            pods.secret_manifest(secret_name, self.namespace, secret, self.run.metadata("agent-secret")),
            f"Secret {self.label}",
        )
        pod_name = self.run.name("agent")
        status(f"{self.label}: starting helper pod {self.namespace}/{pod_name} (read-write)")
        self.run.create(
            pods.pod_path(self.namespace),
            pods.helper_manifest(
                pod_name,
                self.namespace,
                self.name,
                secret_name=secret_name,
                options=self.options.helper,
                metadata=self.run.metadata("agent"),
                write=True,
                block=self.block,
                node_name=node,
            ),
            f"helper pod {self.namespace}/{pod_name}",
        )
        pod = pods.wait_running(
            self.session, self.namespace, pod_name, timeout=self.options.helper.start_timeout, status=status
        )
        channel, hello = open_session(
            agent_connect(self.kube, self.options.connect, pod),
            secret,
            "restore",
            timeout=60.0,
            peer=f"agent of {self.label}",
            alive=lambda: pods.check_running(self.session, self.namespace, pod_name),
        )
        self.remote = RemoteRestore(
            channel, writers=int(hello.get("writers", 4)), compress=self.options.compress, owners=self.options.owners
        )
        status(f"{self.label}: writing files")

    def _create_claim(self) -> None:
        size = self.options.size or self.recorded.get("size")
        storage_class = (
            self.options.storage_class
            if self.options.storage_class is not None
            else self.recorded.get("storageClassName", "")
        )
        if not size:
            raise errors.UsageError(
                f"PersistentVolumeClaim {self.label} does not exist and the snapshot records no "
                "size for it: give --size (and --storage-class)"
            )
        volumes.quantity_bytes(str(size))
        self.block = self.recorded.get("volumeMode") == "Block"
        manifest = volumes.claim_manifest(
            self.name,
            self.namespace,
            size=str(size),
            storage_class=storage_class or "",
            access_modes=list(self.recorded.get("accessModes") or ["ReadWriteOnce"]),
            block=self.block,
            metadata={"labels": {cleanup.MANAGED_BY: "kubekeep"}},
        )
        self.options.status(f"creating PersistentVolumeClaim {self.label} ({size}, class {storage_class or 'default'})")
        volumes.create(self.session, volumes.claim_path(self.namespace), manifest)
        self.created_claim = True
        sc = volumes.storage_class(self.session, storage_class or "")
        if (sc or {}).get("volumeBindingMode") != "WaitForFirstConsumer":
            volumes.wait_bound(
                self.session, self.namespace, self.name, timeout=self.options.bind_timeout, status=self.options.status
            )

    def finish(self) -> list[str]:
        if self.remote is None:
            return []
        warnings, self.stats = self.remote.finish()
        return [f"{self.label}: {w}" for w in warnings]

    def close(self) -> None:
        try:
            if self.remote is not None:
                self.remote.close()
        finally:
            self.warnings.extend(f"{self.label}: {p}" for p in self.run.remove(status=self.options.status))


class PvcExporter(Exporter):
    """Writes a snapshot's files into one claim (``pvc://NS/NAME``), or into the claims named
    by the first path components (``pvc://NS``: ``<claim>/...``; ``pvc://``: ``<ns>/<claim>/...``)."""

    scheme = SCHEME

    def __init__(self, uri: str, options: VolumeOptions) -> None:
        context, self.namespace, self.name = parse_uri(uri, need_name=False)
        self.options = options
        self.kube = KubeContext(options, context)
        self.run_id = cleanup.Run(self.kube.session).id
        self.targets: dict[tuple[str, str], VolumeRestore] = {}
        self._recorded: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._warnings: list[str] = []
        self._signals = contextlib.ExitStack()

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:
        self._signals.enter_context(_terminate_as_interrupt())
        single = (metadata.get("volume") or {}).get("claim")
        if single:
            self._recorded[f"{single['namespace']}/{single['name']}"] = single
            self._recorded["*"] = single  # a pvc:// snapshot restored under another name
        for key, report in ((metadata.get("volumes") or {}).get("volumes") or {}).items():
            self._recorded[key] = report.get("claim") or {}
        if self.name:
            self._target(self.namespace, self.name)  # fail before any entry if the claim cannot be had

    def _split(self, path: str) -> tuple[tuple[str, str], str]:
        """``(namespace, claim)`` and the path inside the claim."""
        if self.name:
            return (self.namespace, self.name), path
        parts = path.split("/")
        if self.namespace:
            if len(parts) < 2:
                raise errors.ConnectorError(
                    f"{path}: restoring to pvc://{self.namespace} takes a directory of claims (<claim>/<files>)"
                )
            return (self.namespace, parts[0]), "/".join(parts[1:])
        if len(parts) < 3:
            raise errors.ConnectorError(f"{path}: restoring to pvc:// takes a directory of namespaces of claims")
        return (parts[0], parts[1]), "/".join(parts[2:])

    def _target(self, namespace: str, name: str) -> VolumeRestore:
        with self._lock:
            target = self.targets.get((namespace, name))
            if target is None:
                recorded = self._recorded.get(f"{namespace}/{name}") or (self._recorded.get("*") if self.name else None)
                target = VolumeRestore(self.kube, namespace, name, self.options, recorded, self.run_id)
                self.targets[(namespace, name)] = target
                target.open()
            return target

    def _route(self, entry: Entry) -> tuple[RemoteRestore, Entry] | None:
        if not self.name and entry.type == EntryType.DIR and len(entry.path.split("/")) <= (1 if self.namespace else 2):
            return None  # a claim's (or namespace's) own directory
        key, inner = self._split(entry.path)
        target = self._target(*key)
        assert target.remote is not None
        routed = copy.copy(entry)
        routed.path = inner
        if target.block and (entry.type != EntryType.FILE or inner != protocol.BLOCK_IMAGE):
            raise errors.ConnectorError(
                f"{target.label} is a block volume: it takes the one file {protocol.BLOCK_IMAGE}, not {entry.type.value} {inner}"
            )
        return target.remote, routed

    def directory(self, entry: Entry) -> None:
        routed = self._route(entry)
        if routed is not None:
            routed[0].directory(routed[1])

    def symlink(self, entry: Entry) -> None:
        routed = self._route(entry)
        if routed is not None:
            routed[0].symlink(routed[1])

    def file(self, entry: Entry, data: Iterable[bytes]) -> None:
        routed = self._route(entry)
        if routed is not None:
            routed[0].file(routed[1], data)

    def finish(self) -> list[str]:
        warnings = list(self._warnings)
        for target in self.targets.values():
            warnings.extend(target.finish())
            warnings.extend(target.warnings)
        return warnings

    def results(self) -> list[dict[str, Any]]:
        out = []
        for t in self.targets.values():
            st = t.stats
            what = (
                "image"
                if t.block
                else f"{st.get('files', 0)} files, {st.get('dirs', 0)} dirs, {st.get('symlinks', 0)} symlinks"
            )
            out.append(
                {
                    "action": "written",
                    "kind": "PersistentVolumeClaim",
                    "namespace": t.namespace,
                    "name": t.name,
                    "reason": ("new claim; " if t.created_claim else "") + what,
                    "created": t.created_claim,
                    "block": t.block,
                    "stats": st,
                }
            )
        return out

    def close(self) -> None:
        try:
            for target in self.targets.values():
                with contextlib.suppress(Exception):
                    target.close()
        finally:
            self._signals.close()
            self.kube.close()


SOURCE_OPTIONS = VolumeOptions
DESTINATION_OPTIONS = VolumeOptions


def open_importer(uri: str, options: VolumeOptions) -> PvcImporter:
    return PvcImporter(uri, options)


def open_exporter(uri: str, options: VolumeOptions) -> PvcExporter:
    return PvcExporter(uri, options)


def cluster_volumes(
    session: Session,
    options: ClusterVolumeOptions,
    *,
    namespaces: Iterable[str] = (),
    exclude_namespaces: Iterable[str] = (),
) -> ClusterVolumes:
    """The volume part of a ``k8s://`` backup (``--volumes``), on the importer's connection."""
    volume_options = options.volume or VolumeOptions()
    return ClusterVolumes(
        KubeContext(volume_options, None, session=session),
        volume_options,
        namespaces=namespaces,
        exclude_namespaces=exclude_namespaces,
        selector=options.selector,
        parallel=options.parallel,
    )
