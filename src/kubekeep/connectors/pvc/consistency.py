"""The consistency hooks of one claim's backup: the pre-snapshot hooks run in the pods using
the claim before the point in time is taken, the post-snapshot hooks as soon as it is (or,
for a live copy, once the copy is done), and whatever happens, every post hook of a pod whose
pre hooks were attempted, so an application frozen by a hook is always thawed."""

from __future__ import annotations

from typing import Any

from kubekeep import errors
from kubekeep.kube import hooks
from kubekeep.kube.config import ClusterAccess

from .options import VolumeOptions

Obj = dict[str, Any]


class SnapshotHooks:
    """``freeze(users)`` runs the pre hooks, ``thaw()`` the post hooks still pending (raising
    the first failure after running them all), ``thaw_quietly()`` the same with failures as
    warnings. Hooks that fail with ``on_error=continue``, and hooks asked for with no pod to
    run them in, add to ``warnings``."""

    def __init__(self, access: ClusterAccess, options: VolumeOptions, label: str, warnings: list[str]) -> None:
        self.access = access
        self.options = options
        self.label = label
        self.warnings = warnings
        self.results: list[hooks.HookResult] = []
        self._pending: list[tuple[Obj, hooks.Hook]] = []

    def _select(self, users: list[Obj]) -> list[tuple[Obj, hooks.Hook]]:
        pairs: list[tuple[Obj, hooks.Hook]] = []
        cli = self.options.cli_hooks()
        for pod in users:
            pairs.extend((pod, h) for h in cli)
            if self.options.annotation_hooks:
                pairs.extend((pod, h) for h in hooks.from_annotations(pod))
        if cli and not users:
            self.warnings.append(f"{self.label}: no running pod uses the claim, so no hook ran")
        return pairs

    def freeze(self, users: list[Obj]) -> None:
        """Run the pre hooks; a pod's post hooks run later only if its pre hooks were attempted."""
        pairs = self._select(users)
        pre = [(p, h) for p, h in pairs if h.phase == "pre"]
        post = [(p, h) for p, h in pairs if h.phase == "post"]
        attempted = set()
        try:
            for pod, hook in pre:
                attempted.add(pod["metadata"]["uid"])
                self._run(pod, hook)
        finally:
            self._pending = [
                (p, h)
                for p, h in post
                if p["metadata"]["uid"] in attempted
                or not any(q["metadata"]["uid"] == p["metadata"]["uid"] for q, _ in pre)
            ]

    def _run(self, pod: Obj, hook: hooks.Hook) -> None:
        self.options.status(f"{self.label}: running {hook.phase}-snapshot hook in {pod['metadata']['name']}")
        result = hooks.run(self.access, pod, hook)
        self.results.append(result)
        if result.ok:
            return
        message = hooks.describe(result)
        if hook.on_error == "fail":
            raise errors.ConnectorError(f"{self.label}: {message} (on-error: fail)")
        self.warnings.append(f"{self.label}: {message} (on-error: continue)")

    def thaw(self) -> None:
        """Run the pending post hooks, every one even after a failure; then raise the first."""
        pending, self._pending = self._pending, []
        failure: errors.KubekeepError | None = None
        for pod, hook in pending:
            try:
                self._run(pod, hook)
            except errors.KubekeepError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def thaw_quietly(self) -> None:
        """Run the pending post hooks while failing: their problems become warnings."""
        try:
            self.thaw()
        except errors.KubekeepError as exc:
            self.warnings.append(str(exc))
