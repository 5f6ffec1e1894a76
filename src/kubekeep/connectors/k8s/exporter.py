"""Restore into ``k8s://``: a manifests snapshot's objects written to a cluster.

``K8sExporter`` buffers the selected objects, plans them (``manifests.planning``: cleaned,
namespaces mapped, cluster-owned objects skipped, transforms applied), picks the version each
object is sent at from the target's discovery (``manifests.api_versions``: a group version the
target does not serve), creates them tier by tier with the objects of one tier in parallel
(``tiers``), and reports every object.

A data-first cluster restore (``kubekeep.api.cluster_restore``) sets ``phased``: ``finish``
then creates only what comes before the workloads, and ``release`` the workloads and the rest
once the claims' data is in, holding back those it is told to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubekeep import errors
from kubekeep.connectors.k8s.buffer import BufferingExporter, ObjectBuffer, require_manifests
from kubekeep.connectors.k8s.tiers import TierRunner, split_phases
from kubekeep.connectors.k8s.uri import SCHEME
from kubekeep.engine.entries import SourceInfo
from kubekeep.kube import config, discovery
from kubekeep.kube.requesting import Session
from kubekeep.manifests import api_versions, cleaning, planning
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
        api_version_map: Mapping[str, str] | None = None,
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
        self.api_version_map = dict(api_version_map or {})
        self.session = Session(config.connect(context, kubeconfig, pool_size=self.concurrency + 2))
        self.buffer = ObjectBuffer()
        self._results: list[dict[str, Any]] = []
        #: two phases (data first): ``finish`` stops before the workloads, ``release`` does the rest
        self.phased = False
        #: called with each object's result line as it is known (progress)
        self.on_result: Callable[[dict[str, Any]], None] | None = None
        self.plan: list[planning.PlannedObject] = []
        self._runner: TierRunner | None = None
        self._later: list[planning.PlannedObject] = []

    def close(self) -> None:
        self.session.close()

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:
        require_manifests(source)
        self.label = (planning.RESTORED_FROM_LABEL, snapshot_id) if snapshot_id else None
        self.session.get("/version")  # fail early, before reading the snapshot, if the cluster is unreachable

    def finish(self) -> list[str]:
        plan = planning.plan(self.buffer.objects(), self.opts, label=self.label, transform=self.transforms)
        self.buffer = ObjectBuffer()
        api_versions.resolve(plan, self._served(plan), self.api_version_map)
        runner = TierRunner(
            self.session,
            existing=self.existing,
            dry_run=self.dry_run,
            restore_status=self.opts.restore_status,
            keep_managed_fields=self.opts.keep_managed_fields,
            concurrency=self.concurrency,
        )
        runner.on_result = self.on_result
        if not self.phased:
            self._results = runner.run(plan)
            return []
        self.plan, self._runner = plan, runner
        runner.owners = {ref.get("uid", "") for p in plan if p.skip is None for ref in p.owner_references}
        first, self._later = split_phases(plan)
        self._results = runner.run(first)
        return []

    def later(self) -> list[planning.PlannedObject]:
        """``phased``: the objects ``release`` creates (the workloads and everything after them)."""
        return list(self._later)

    def release(self, hold: Callable[[planning.PlannedObject], str | None]) -> list[dict[str, Any]]:
        """``phased``, after ``finish``: create the workloads and everything after them, but not
        the objects ``hold`` gives a reason for (reported as not created, with that reason).
        Returns the results of this phase; ``results()`` has both phases'."""
        if self._runner is None:
            raise errors.ConnectorError("release() comes after a phased finish()")
        ready: list[planning.PlannedObject] = []
        held: list[dict[str, Any]] = []
        for p in self._later:
            reason = hold(p) if p.skip is None else None
            if reason is None:
                ready.append(p)
            else:
                held.append({**p.report(), "action": "would hold" if self.dry_run else "not created", "reason": reason})
                if self.on_result is not None:
                    self.on_result(held[-1])
        done = self._runner.run(ready) + held
        self._later, self._runner = [], None
        self._results += done
        return done

    def _served(self, plan: list[planning.PlannedObject]) -> api_versions.ServedApis:
        """What the target serves, and what this restore adds to it (its CRDs and APIServices)."""
        found = discovery.discover(self.session)
        kinds = {(r.group, r.resource): r.kind for r in found.resources}
        served = api_versions.ServedApis.build(
            ((g, r, kinds.get((g, r), ""), v) for (g, r), v in found.served.items()),
            found.groups,
            found.errors,
        )
        served.add_from_plan(plan, existing=self.existing)
        return served

    def results(self) -> list[dict[str, Any]]:
        return self._results
