"""The volume part of a cluster backup (``k8s:// --volumes``): the files of each selected claim
under ``volumes/<namespace>/<claim>/``, claims prepared in parallel with a bound."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kubekeep import errors
from kubekeep.connectors.k8s.options import ClusterVolumeOptions
from kubekeep.engine.entries import ChunkSpec, Entry, EntryType, ParentFiles
from kubekeep.kube import cleanup, volumes
from kubekeep.kube.requesting import Session

from .claim_backup import VolumeBackup
from .interrupts import terminate_as_interrupt
from .options import KubeContext, VolumeOptions

VOLUMES_DIR = "volumes"


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
        self._parent: ParentFiles | None = None

    def use_chunking(self, spec: ChunkSpec) -> None:
        self._spec = spec

    def use_parent(self, parent: ParentFiles) -> None:
        self._parent = parent

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
            vb.parent = self._parent
            reason = vb.plan()
            if reason is None:
                self.volumes.append(vb)
            else:
                self.skipped.append({"claim": vb.label, "reason": reason})
                self._warnings.append(f"volume {vb.label} skipped: {reason}")
        if not self.volumes:
            return
        yield Entry(VOLUMES_DIR, EntryType.DIR, mode=0o755)
        with terminate_as_interrupt(), ThreadPoolExecutor(self.parallel, thread_name_prefix="kubekeep-volume") as pool:
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
