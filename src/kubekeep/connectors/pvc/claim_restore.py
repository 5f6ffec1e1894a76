"""Restoring into claims (``VolumeRestore``), and ``pvc://`` as a destination (``PvcExporter``):
into an existing claim, or a new one sized and classed as given or as the snapshot recorded,
through a helper pod mounting it read-write. ``pvc://NAMESPACE`` restores a directory of
claims (``volumes/<namespace>`` of a cluster snapshot), one claim per subdirectory; ``pvc://``
a directory of namespaces of claims."""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterable
from typing import Any

from kubekeep import errors
from kubekeep.agent import protocol
from kubekeep.agent.client import RemoteRestore
from kubekeep.engine.entries import Entry, EntryType, Exporter, SourceInfo
from kubekeep.kube import cleanup, pods, volumes

from .helper import HelperPod, check_admitted
from .interrupts import terminate_as_interrupt
from .options import SCHEME, KubeContext, VolumeOptions, parse_uri


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
        check_admitted(self.session, self.namespace, self.name, self.options, write=True, block=block, what=self.label)
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
        helper = HelperPod(
            self.kube,
            self.run,
            self.options,
            namespace=self.namespace,
            claim=self.name,
            label=self.label,
            write=True,
            block=self.block,
            node=node,
        )
        helper.start()
        channel, hello = helper.connect()
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
        self._signals.enter_context(terminate_as_interrupt())
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
