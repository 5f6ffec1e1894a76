"""Restoring an object or a namespace from the UI into a cluster: always a server-side dry run
first; the restore itself only when the server was started with ``--allow-restore``, only for
a dry run shown shortly before, and only once.

A confirmed restore runs exactly the request of its dry run (kept on the server under a random
plan id), so what the user reviewed is what is sent.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from kubekeep import api, errors

#: A confirmed restore must follow its dry run within this many seconds.
PLAN_TTL = 15 * 60
_KEEP_PLANS = 64
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_CONTEXT = re.compile(r"[^\x00-\x20\x7f]{1,253}\Z")
EXISTING = ("skip", "update")


class RestoreDisabled(errors.UsageError):
    """A restore was asked for, but the server was not started with --allow-restore."""


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore (one object by path, or one namespace) and where to."""

    snapshot: str  # full snapshot id
    path: str = ""  # an object's path in the snapshot
    namespace: str = ""  # or a namespace
    context: str = ""  # kubeconfig context of the target cluster ("" = current)
    existing: str = "skip"  # skip or update objects that exist
    target_namespace: str = ""  # restore the namespace under this name

    def check(self) -> RestoreRequest:
        """This request, if well-formed; UsageError naming the bad part otherwise."""
        if bool(self.path) == bool(self.namespace):
            raise errors.UsageError("name either an object path or a namespace to restore")
        if self.path and not (self.path.endswith(".yaml") and self.path.startswith(("namespaces/", "cluster/"))):
            raise errors.UsageError(f"/{self.path} is not an object of a manifests snapshot")
        for what, value in (("namespace", self.namespace), ("target namespace", self.target_namespace)):
            if value and not _DNS_LABEL.match(value):
                raise errors.UsageError(f"{what} {value!r} is not a valid namespace name")
        if self.target_namespace and not self.namespace:
            raise errors.UsageError("a target namespace applies to namespace restores")
        if self.context and not _CONTEXT.match(self.context):
            raise errors.UsageError("the context name must be printable, without spaces")
        if self.existing not in EXISTING:
            raise errors.UsageError(f"existing objects: expected skip or update, not {self.existing!r}")
        return self

    def describe(self) -> str:
        what = f"namespace {self.namespace}" if self.namespace else f"/{self.path}"
        into = f" as namespace {self.target_namespace}" if self.target_namespace else ""
        return f"{what} of snapshot {self.snapshot[:8]}{into} into k8s://{self.context}"


@dataclass
class RestoreRun:
    """The outcome of a dry run (``plan`` set, to confirm) or of a restore."""

    request: RestoreRequest
    dry_run: bool
    results: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    plan: str = ""
    created: float = field(default_factory=time.monotonic)
    applied: bool = False

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r.get("action", "") for r in self.results).items()))

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.get("action") in ("failed", "would fail"))

    @property
    def changes(self) -> int:
        """Objects the restore would create or update."""
        return sum(1 for r in self.results if r.get("action") in ("would create", "would update"))


class Restores:
    """Runs dry runs and confirmed restores for one repository."""

    def __init__(
        self, repo: api.Repository, *, allowed: bool, kubeconfig: str | None = None, context: str | None = None
    ) -> None:
        self.repo = repo
        self.allowed = allowed
        self.kubeconfig = kubeconfig
        self.default_context = context or ""
        self._plans: OrderedDict[str, RestoreRun] = OrderedDict()
        self._lock = threading.Lock()

    def dry_run(self, request: RestoreRequest) -> RestoreRun:
        run = self._run(request.check(), dry_run=True)
        run.plan = secrets.token_urlsafe(16)
        with self._lock:
            self._plans[run.plan] = run
            while len(self._plans) > _KEEP_PLANS:
                self._plans.popitem(last=False)
        return run

    def plan(self, plan_id: str) -> RestoreRun:
        with self._lock:
            run = self._plans.get(plan_id)
        if run is None or time.monotonic() - run.created > PLAN_TTL:
            raise errors.UsageError("this dry run has expired: run the dry run again")
        return run

    def apply(self, plan_id: str) -> RestoreRun:
        """Carry out the restore a dry run showed."""
        if not self.allowed:
            raise RestoreDisabled("restoring is disabled: start kubekeep ui with --allow-restore")
        run = self.plan(plan_id)
        with self._lock:
            if run.applied:
                raise errors.UsageError("this restore was already carried out: run a new dry run to restore again")
            run.applied = True
        return self._run(run.request, dry_run=False)

    def _run(self, request: RestoreRequest, *, dry_run: bool) -> RestoreRun:
        mapped = bool(request.target_namespace) and request.target_namespace != request.namespace
        options = api.ManifestsDestinationOptions(
            context=request.context or None,
            kubeconfig=self.kubeconfig or None,
            existing=request.existing,
            dry_run=dry_run,
            namespace_map={request.namespace: request.target_namespace} if mapped else {},
            volumes=api.RestoreVolumeOptions(enabled=False),  # the UI restores objects, not volumes' data
        )
        select = api.ObjectSelector.build(namespaces=[request.namespace]) if request.namespace else None
        ref = f"{request.snapshot}:{request.path}"
        stats = api.restore(self.repo, ref, "k8s://", options=options, select=select)
        return RestoreRun(request, dry_run, stats.results, list(stats.warnings), stats.duration_s)
