"""Backing up one claim (``VolumeBackup``), and ``pvc://NAMESPACE/NAME`` as a source
(``PvcImporter``): hooks, a VolumeSnapshot, a temporary claim provisioned from it, a helper
pod mounting that claim read-only, the files read through its agent; or, when asked, the
claim itself copied live."""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from collections.abc import Iterator
from typing import Any

from kubekeep import errors
from kubekeep.agent.client import RemoteBackup
from kubekeep.agent.protocol import KNOWN_SIZE, MAX_KNOWN, VOLUME_KEY_TAG, known_digest, pack_known
from kubekeep.engine.entries import ChunkSpec, Entry, Importer, ParentFiles, SnapshotKind, SourceInfo
from kubekeep.kube import cleanup, pods, volumes
from kubekeep.manifests import cleaning

from .consistency import SnapshotHooks
from .helper import HelperPod, check_admitted
from .interrupts import terminate_as_interrupt
from .options import SCHEME, KubeContext, VolumeOptions, parse_uri

Obj = dict[str, Any]


def clean_claim(manifest: Obj) -> Obj:
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


def known_files(parent: ParentFiles, prefix: str) -> bytes:
    """The BACKUP's ``known`` field: the parent snapshot's files of the claim (below ``prefix``)
    that carry a volume reuse key, at most ``MAX_KNOWN`` of them (the others are read)."""
    digests = (known_digest(path, key) for path, key, _size in parent.files(prefix) if key.startswith(VOLUME_KEY_TAG))
    return pack_known(itertools.islice(digests, MAX_KNOWN))


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
        #: the parent snapshot's files, when the engine reuses unchanged ones (Importer.use_parent)
        self.parent: ParentFiles | None = None
        self.known_files = 0
        self.remote: RemoteBackup | None = None
        self.mode = ""
        self.snapshot_class = ""
        self.warnings: list[str] = []
        self.hooks = SnapshotHooks(kube.access, options, self.label, self.warnings)
        self.timings: dict[str, float] = {}
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
        check_admitted(
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
        mount, node = self.claim.name, ""
        ok = False
        try:
            self.hooks.freeze(users)
            if self.mode == "snapshot":
                mount = self._snapshot(t)  # post hooks run as soon as the snapshot is cut
            else:
                node = self._node_of(users)
            ok = True
        finally:
            if not ok:
                self.hooks.thaw_quietly()
        if self.mode == "snapshot":
            self.hooks.thaw()
        t = time.monotonic()
        helper = HelperPod(
            self.kube,
            self.run,
            self.options,
            namespace=self.claim.namespace,
            claim=mount,
            label=self.label,
            write=False,
            block=self.claim.block,
            node=node,
        )
        helper.start()
        t = self._lap("helper_start_s", t)
        known = None
        if self.parent is not None and not self.claim.block:
            self._status(f"{self.label}: listing the parent snapshot's files")
            known = known_files(self.parent, self.prefix)
            self.known_files = len(known) // KNOWN_SIZE
            t = self._lap("parent_s", t)
        self._status(f"{self.label}: connecting to the agent")
        channel, hello = helper.connect()
        self.remote = RemoteBackup(
            channel,
            spec,
            prefix=self.prefix,
            compress=self.options.compress,
            excludes=self.options.excludes,
            known=known,
            reuse_keys=hello["source"] == "dir",
        )
        self._lap("connect_s", t)

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
            on_cut=lambda _vs: self.hooks.thaw(),
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

    def _node_of(self, users: list[Obj]) -> str:
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

    def entries(self) -> Iterator[Entry]:
        assert self.remote is not None
        started = time.monotonic()
        self._status(f"{self.label}: reading files through the agent")
        yield from self.remote.entries()
        self.warnings.extend(f"{self.label}: {w}" for w in self.remote.warnings)
        if self.mode == "live":
            self.hooks.thaw()
        self._lap("transfer_s", started)

    def report(self) -> dict[str, Any]:
        transfer = self.remote.stats.to_dict() if self.remote is not None else {}
        transfer.pop("agent", None)
        if self.remote is not None:
            transfer["bytes_on_wire"] = self.remote.channel.bytes_received
            transfer["parent_files"] = self.known_files
        return {
            "claim": self.claim.summary(),
            "manifest": clean_claim(self.claim.manifest),
            "mode": self.mode,
            "snapshot_class": self.snapshot_class or None,
            "run": self.run.id,
            "hooks": [r.to_dict() for r in self.hooks.results],
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
            self.hooks.thaw_quietly()  # a live copy that did not finish
            problems = self.run.remove(status=self._status)
            self.warnings.extend(f"{self.label}: {p}" for p in problems)


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

    def use_parent(self, parent: ParentFiles) -> None:
        self.volume.parent = parent

    def entries(self) -> Iterator[Entry]:
        if self._spec is None:
            raise errors.ConnectorError("pvc:// needs the repository's chunking (use_chunking) before entries()")
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(terminate_as_interrupt())
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
