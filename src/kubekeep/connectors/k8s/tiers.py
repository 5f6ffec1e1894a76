"""Carrying out a restore plan against a cluster: tier by tier, in parallel within a tier.

Per object, with the ``skip`` policy, a create (POST): 201 is *created*, 409 *skipped* (it
exists). With ``update``, a server-side apply as field manager ``kubekeep`` that takes over
conflicting fields: 201 *created*, 200 *updated*. A dry run asks the server (``dryRun=All``:
admission and validation run, nothing is stored) and reports what would happen; for objects
that exist it shows the field changes against the live object.

Details a plain loop over creates would get wrong:

* a Namespace that still exists but is terminating (just deleted) is waited for, then created;
* custom objects wait until the CRDs this restore created are Established, and a 404 right
  after that (the API server has not started serving the new resource yet) is retried;
* an object whose owner was created earlier in the run gets an ``ownerReference`` with the
  owner's new uid (owners go first within a tier); references that cannot be resolved are
  dropped, since the garbage collector deletes objects whose owner uid does not exist;
* an object sent at another version than stored (``manifests.api_versions``) goes with strict
  field validation, and its report line says so; one the target serves no version of fails
  without a request.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubekeep import errors
from kubekeep.kube import applying
from kubekeep.kube.requesting import Response, Session, status_message
from kubekeep.manifests import cleaning, fielddiff, ordering
from kubekeep.manifests.layout import split_api_version
from kubekeep.manifests.planning import RESTORED_FROM_LABEL, PlannedObject

CRD = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE = ("", "namespaces")


class TierRunner:
    def __init__(
        self,
        session: Session,
        *,
        existing: str = "skip",
        dry_run: bool = False,
        restore_status: bool = False,
        keep_managed_fields: bool = False,
        concurrency: int = 16,
        crd_timeout: float = 60.0,
        namespace_timeout: float = 300.0,
    ) -> None:
        self.session = session
        self.existing = existing
        self.dry_run = dry_run
        self.restore_status = restore_status
        self.keep_managed_fields = keep_managed_fields
        self.concurrency = concurrency
        self.crd_timeout = crd_timeout
        self.namespace_timeout = namespace_timeout
        self.new_uids: dict[str, str] = {}  # old uid -> uid in the target cluster
        self.new_crds: dict[str, tuple[str, str]] = {}  # CRD name -> (group, plural) created now
        self.pending_namespaces: set[str] = set()  # dry run: namespaces that would be created
        self.owners: set[str] = set()  # old uids that other objects refer to
        self.lock = threading.Lock()
        #: called with each object's result line as it is known (progress)
        self.on_result: Callable[[dict[str, Any]], None] | None = None

    def run(self, plan: list[PlannedObject]) -> list[dict[str, Any]]:
        results: dict[int, dict[str, Any]] = {}
        tiers: dict[int, list[PlannedObject]] = {}
        ranks = _ranks([p for p in plan if p.skip is None and p.failed is None])
        # a plan run in phases (``split_phases``) keeps the owners of every phase
        self.owners |= {ref.get("uid", "") for p in plan if p.skip is None for ref in p.owner_references}
        for i, p in enumerate(plan):
            if p.skip is not None:
                results[i] = {**p.report(), "action": "skipped", "reason": p.skip}
                self._tell(results[i])
            elif p.failed is not None:  # a transform could not be applied
                results[i] = {**p.report(), "action": "would fail" if self.dry_run else "failed", "reason": p.failed}
                self._tell(results[i])
            elif p.version_change is not None and not p.version_change.sent:
                action = "would fail" if self.dry_run else "failed"
                results[i] = {**p.report(), "action": action, "reason": p.version_change.reason}
                self._tell(results[i])
            else:
                tiers.setdefault(ranks[id(p)], []).append(p)
        index = {id(p): i for i, p in enumerate(plan)}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="kubekeep-apply") as pool:
            for rank in sorted(tiers):
                if rank == ordering.CUSTOM and self.new_crds and not self.dry_run:
                    self._wait_for_crds()
                for wave in _waves(tiers[rank]):
                    for p, result in zip(wave, pool.map(self._restore, wave), strict=True):
                        results[index[id(p)]] = result
                        self._tell(result)
        return [results[i] for i in range(len(plan))]

    def _tell(self, result: dict[str, Any]) -> None:
        if self.on_result is not None:
            self.on_result(result)

    # -- one object ---------------------------------------------------------------------------
    def _restore(self, p: PlannedObject) -> dict[str, Any]:
        line: dict[str, Any] = {**p.report()}
        try:
            result = {**line, **(self._dry_run(p) if self.dry_run else self._write(p))}
        except errors.KubekeepError as exc:
            result = {**line, "action": "would fail" if self.dry_run else "failed", "reason": str(exc)}
        change = p.version_change
        if change is not None:  # sent at another version: the report says from which, and why
            result["storedApiVersion"] = change.stored
            result["reason"] = change.reason + (f"; {result['reason']}" if result.get("reason") else "")
        return result

    def _validation(self, p: PlannedObject) -> str:
        """Strict for objects sent at another version: a field the new version lacks is refused."""
        return "Strict" if p.version_change is not None else ""

    def _coordinates(self, p: PlannedObject) -> tuple[str, str, str, str]:
        group, version = split_api_version(p.api_version)
        return group, version, p.resource, p.namespace

    def _body(self, p: PlannedObject) -> dict[str, Any]:
        refs = []
        with self.lock:
            for ref in p.owner_references:
                uid = self.new_uids.get(ref.get("uid", ""))
                if uid:
                    refs.append({**ref, "uid": uid})
        if not refs:
            return p.obj
        return {**p.obj, "metadata": {**p.obj["metadata"], "ownerReferences": refs}}

    def _write(self, p: PlannedObject) -> dict[str, Any]:
        group, version, resource, ns = self._coordinates(p)
        body = self._body(p)
        write = applying.apply if self.existing == "update" else applying.create

        def send() -> Response:
            return write(
                self.session, group, version, resource, body, namespace=ns, field_validation=self._validation(p)
            )

        r = self._send(p, send)
        if r.status == 409 and (group, resource) == NAMESPACE and self._wait_if_terminating(p.name):
            r = self._send(p, send)
        if r.status == 409:
            return {"action": "skipped", "reason": "already exists"}
        if not r.ok:
            return {"action": "failed", "reason": _message(r)}
        if p.old_uid in self.owners:  # only owners' new uids are needed: skip parsing the others
            uid = ((r.json() or {}).get("metadata") or {}).get("uid")
            if uid:
                with self.lock:
                    self.new_uids[p.old_uid] = uid
        with self.lock:
            if (group, resource) == CRD:
                spec = p.obj.get("spec") or {}
                self.new_crds[p.name] = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        result: dict[str, Any] = {"action": "created" if r.status == 201 else "updated"}
        notes = self._after_write(p, group, version, resource, ns)
        if notes:
            result["reason"] = "; ".join(notes)
        return result

    def _send(self, p: PlannedObject, send: Callable[[], Response]) -> Response:
        """``send()``, retried for a while on 404 when the object's CRD was just created."""
        group, _, resource, _ = self._coordinates(p)
        deadline = time.monotonic() + 15
        while True:
            r = send()
            if r.status != 404 or (group, resource) not in self.new_crds.values() or time.monotonic() > deadline:
                return r
            time.sleep(0.5)

    def _after_write(self, p: PlannedObject, group: str, version: str, resource: str, ns: str) -> list[str]:
        notes = []
        if self.restore_status and p.obj.get("status"):
            r = applying.patch(
                self.session,
                group,
                version,
                resource,
                p.name,
                {"status": p.obj["status"]},
                namespace=ns,
                subresource="status",
            )
            if not r.ok and r.status != 404:  # 404: no status subresource, the status went with the object
                notes.append(f"status not restored: {_message(r)}")
        managed = (p.obj.get("metadata") or {}).get("managedFields")
        if self.keep_managed_fields and managed:
            # a create makes kubekeep the manager of every field; a patch of managedFields alone
            # replaces the entries as sent
            r = applying.patch(
                self.session, group, version, resource, p.name, {"metadata": {"managedFields": managed}}, namespace=ns
            )
            if not r.ok:
                notes.append(f"managedFields not restored: {_message(r)}")
        return notes

    def _wait_if_terminating(self, name: str) -> bool:
        """Wait until a terminating namespace is gone; False if it is not terminating."""
        live = applying.get(self.session, "", "v1", "namespaces", name)
        if live is None:
            return True
        if not (live.get("metadata") or {}).get("deletionTimestamp"):
            return False
        deadline = time.monotonic() + self.namespace_timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if applying.get(self.session, "", "v1", "namespaces", name) is None:
                return True
        raise errors.ConnectorError(f"namespace {name} is still terminating after {self.namespace_timeout:.0f} s")

    def _wait_for_crds(self) -> None:
        deadline = time.monotonic() + self.crd_timeout
        waiting = set(self.new_crds)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                crd = applying.get(self.session, CRD[0], "v1", CRD[1], name) or {}
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                    waiting.discard(name)
            if waiting:
                time.sleep(0.25)

    # -- dry run ------------------------------------------------------------------------------
    def _dry_run(self, p: PlannedObject) -> dict[str, Any]:
        group, version, resource, ns = self._coordinates(p)
        live = applying.get(self.session, group, version, resource, p.name, namespace=ns)
        terminating = (
            live is not None
            and (group, resource) == NAMESPACE
            and bool((live.get("metadata") or {}).get("deletionTimestamp"))
        )
        if live is None or terminating:
            r = applying.create(
                self.session,
                group,
                version,
                resource,
                p.obj,
                namespace=ns,
                dry_run=True,
                field_validation=self._validation(p),
            )
            if r.ok or (r.status == 409 and terminating):
                self._note_pending(p, group, resource)
                return {
                    "action": "would create",
                    **({"reason": "after the terminating namespace is gone"} if terminating else {}),
                }
            if r.status == 404 and self._created_by_this_restore(p, group, resource):
                return {
                    "action": "would create",
                    "reason": "not validated by the server: its namespace or definition is created by this restore",
                }
            return {"action": "would fail", "reason": _message(r)}
        if self.existing == "skip":
            desired = copy.deepcopy(p.obj)
            (desired["metadata"].get("labels") or {}).pop(RESTORED_FROM_LABEL, None)
            if not desired["metadata"].get("labels"):
                desired["metadata"].pop("labels", None)
            current = self._comparable(live, group, resource)
            changes = fielddiff.diff_objects(current, desired)
            result: dict[str, Any] = {"action": "would skip", "reason": "already exists"}
            if changes:
                result["reason"] = "already exists and differs from the snapshot"
                result["diff"] = [c.to_dict() for c in changes]
            return result
        r = applying.apply(
            self.session,
            group,
            version,
            resource,
            p.obj,
            namespace=ns,
            dry_run=True,
            field_validation=self._validation(p),
        )
        if not r.ok:
            return {"action": "would fail", "reason": _message(r)}
        changes = fielddiff.diff_objects(live, r.json() or {})
        if not changes:
            return {"action": "would update", "reason": "no changes"}
        return {"action": "would update", "diff": [c.to_dict() for c in changes]}

    def _comparable(self, live: dict[str, Any], group: str, resource: str) -> dict[str, Any]:
        opts = cleaning.CleanOptions(restore_status=self.restore_status, keep_managed_fields=self.keep_managed_fields)
        return cleaning.clean(copy.deepcopy(live), group, resource, opts)

    def _note_pending(self, p: PlannedObject, group: str, resource: str) -> None:
        with self.lock:
            if (group, resource) == NAMESPACE:
                self.pending_namespaces.add(p.name)
            elif (group, resource) == CRD:
                spec = p.obj.get("spec") or {}
                self.new_crds[p.name] = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))

    def _created_by_this_restore(self, p: PlannedObject, group: str, resource: str) -> bool:
        with self.lock:
            return p.namespace in self.pending_namespaces or (group, resource) in self.new_crds.values()


def _message(r: Response) -> str:
    message, reason = status_message(r.data)
    return f"{message or 'HTTP ' + str(r.status)}" + (f" ({reason})" if reason else "")


def _ranks(items: list[PlannedObject]) -> dict[int, int]:
    """Each object's tier rank, moved to its owner's tier when that comes later (a ConfigMap
    owned by a custom object waits for it, so that its reference can be resolved)."""
    by_uid = {p.old_uid: p for p in items if p.old_uid}
    ranks: dict[int, int] = {}

    def rank(p: PlannedObject, depth: int = 0) -> int:
        if id(p) not in ranks:
            r = p.tier.rank
            for ref in p.owner_references:
                owner = by_uid.get(ref.get("uid", ""))
                if owner is not None and owner is not p and depth < 16:
                    r = max(r, rank(owner, depth + 1))
            ranks[id(p)] = r
        return ranks[id(p)]

    for p in items:
        rank(p)
    return ranks


#: the rank of the tier that starts pods: a data-first restore writes the claims' data before it
WORKLOADS = ordering.TIERS.index("workloads")


def split_phases(plan: list[PlannedObject]) -> tuple[list[PlannedObject], list[PlannedObject]]:
    """``plan`` in two phases, for a restore that writes the claims' data between them: what
    comes before the workloads (namespaces, classes, claims, config, RBAC, services), then the
    workloads and everything after them. An object that waits for an owner of a later tier
    (``_ranks``) goes with its owner. Run both on one ``TierRunner`` (owners' new uids carry over)."""
    ranks = _ranks([p for p in plan if p.skip is None])
    before = [p for p in plan if ranks.get(id(p), p.tier.rank) < WORKLOADS]
    after = [p for p in plan if ranks.get(id(p), p.tier.rank) >= WORKLOADS]
    return before, after


def _waves(items: list[PlannedObject]) -> list[list[PlannedObject]]:
    """``items`` in waves such that an owner is written before the objects that refer to it."""
    pending = list(items)
    waves = []
    while pending:
        uids = {p.old_uid for p in pending if p.old_uid}
        ready = [p for p in pending if not any(r.get("uid") in uids for r in p.owner_references)]
        if not ready:  # an ownership cycle: nothing to gain by waiting
            ready = pending
        waves.append(ready)
        chosen = {id(p) for p in ready}
        pending = [p for p in pending if id(p) not in chosen]
    return waves
