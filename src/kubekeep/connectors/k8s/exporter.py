"""Restore into ``k8s://``: a manifests snapshot's objects written to a cluster.

``K8sExporter`` buffers the selected objects, plans them (``manifests.planning``: cleaned,
namespaces mapped, cluster-owned objects skipped, transforms applied), creates them tier by tier with the objects
of one tier in parallel (``tiers``), and reports every object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubekeep import errors
from kubekeep.connectors.k8s.buffer import BufferingExporter, ObjectBuffer, require_manifests
from kubekeep.connectors.k8s.tiers import TierRunner
from kubekeep.connectors.k8s.uri import SCHEME
from kubekeep.engine.entries import SourceInfo
from kubekeep.kube import config
from kubekeep.kube.requesting import Session
from kubekeep.manifests import cleaning, planning
from kubekeep.manifests.transforms import Transforms


class K8sExporter(BufferingExporter):
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
        transforms: Transforms | None = None,
    ) -> None:
        if existing not in ("skip", "update"):
            raise errors.UsageError(f"--existing must be skip or update, not {existing!r}")
        self.opts = cleaning.CleanOptions(
            restore_status=restore_status,
            keep_managed_fields=keep_managed_fields,
            namespace_map=dict(namespace_map or {}),
        )
        self.transforms = transforms
        self.label: tuple[str, str] | None = None  # the restored-from label, set in begin
        self.existing = existing
        self.dry_run = dry_run
        self.concurrency = max(1, concurrency)
        self.session = Session(config.connect(context, kubeconfig, pool_size=self.concurrency + 2))
        self.buffer = ObjectBuffer()
        self._results: list[dict[str, Any]] = []

    def close(self) -> None:
        self.session.close()

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:
        require_manifests(source)
        self.label = (planning.RESTORED_FROM_LABEL, snapshot_id) if snapshot_id else None
        self.session.get("/version")  # fail early, before reading the snapshot, if the cluster is unreachable

    def finish(self) -> list[str]:
        plan = planning.plan(self.buffer.objects(), self.opts, label=self.label, transform=self.transforms)
        self.buffer = ObjectBuffer()
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
