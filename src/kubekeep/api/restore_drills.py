"""Restore drills: prove that a snapshot restores (docs/drills.md).

``drill`` restores a manifests snapshot's namespaces into scratch namespaces it creates (or into
namespaces of the same names in another cluster), through the same ``restore`` call as
``kubekeep restore``; waits until the restored workloads are ready (``kube.workloads``);
compares every restored object with the snapshot (``manifests.restorecheck``); times it; stores
its report in the repository (``engine.drills``) and a run record; and removes what it created,
also when it fails or is interrupted (Ctrl-C, SIGTERM), unless told to keep it.

The drill never writes into a namespace it did not create: each scratch namespace is created
first, labelled as a kubekeep run (``kube.cleanup``: ``kubekeep cleanup`` finds the namespaces
of a drill that was killed), and one that exists already fails the drill before anything is
restored.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from kubekeep import errors
from kubekeep.api.refs import split_ref
from kubekeep.api.selecting import read_object, select_objects
from kubekeep.api.snapshot_ops import restore
from kubekeep.connectors.k8s.options import ManifestsDestinationOptions
from kubekeep.connectors.k8s.uri import parse_uri
from kubekeep.engine import drills as records
from kubekeep.engine import runs
from kubekeep.engine.drills import (
    Difference,
    DrillCleanup,
    DrillNamespace,
    DrillObject,
    DrillRecord,
    DrillWorkload,
)
from kubekeep.engine.entries import SnapshotKind
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import selection
from kubekeep.engine.snapshot import Snapshot, now_rfc3339
from kubekeep.engine.tree import FILE
from kubekeep.manifests import cleaning, layout, planning, restorecheck
from kubekeep.manifests.selection import ObjectSelector
from kubekeep.units import human_duration

if TYPE_CHECKING:
    from kubekeep.kube.cleanup import Run
    from kubekeep.kube.requesting import Session
    from kubekeep.kube.workloads import Outcome

#: namespaces a drill leaves out unless named: they belong to the cluster, not to an application
CLUSTER_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
#: the purpose label of what a drill creates (``kube.cleanup``)
PURPOSE = "drill"
#: the longest a namespace name may be
NAME_MAX = 63
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")

#: how a drill reports its steps: one line each
Status = Callable[[str], None]


@dataclass(frozen=True)
class DrillOptions:
    """What ``drill`` is told (the CLI builds it from its flags)."""

    context: str | None = None
    kubeconfig: str | None = None
    #: the snapshot's namespaces to drill (empty: every namespace in it but the cluster's own)
    namespaces: tuple[str, ...] = ()
    #: OLD=NEW: where a namespace goes (others: ``<ns>-drill-<token>``, or their own name with
    #: ``same_names``)
    namespace_map: Mapping[str, str] = field(default_factory=dict)
    #: restore into namespaces of the snapshot's own names (another cluster: they must not exist)
    same_names: bool = False
    #: seconds the workloads have to become ready
    timeout: float = 600.0
    #: leave the scratch namespaces (and whatever else the drill created) in place
    keep: bool = False
    #: with ``latest``: the newest manifests snapshot with all these tags
    tags: tuple[str, ...] = ()
    #: the restore's requests in flight (default: the restore's)
    concurrency: int | None = None
    #: store the report and a run record in the repository
    record: bool = True
    #: seconds the removal of the scratch namespaces may take before it is reported
    cleanup_timeout: float = 300.0
    #: the restore's own options beyond these (volumes, helper pods: what ``kubekeep restore``
    #: takes); the drill sets the cluster, the namespace map and the concurrency over them
    restore: ManifestsDestinationOptions | None = None

    def __post_init__(self) -> None:
        if self.restore is not None and (self.restore.dry_run or self.restore.existing != "skip"):
            raise errors.UsageError("a drill restores for real into new namespaces: no dry run, no --existing update")


def drill(
    repo: Repository,
    ref: str,
    destination: str,
    options: DrillOptions | None = None,
    *,
    status: Status | None = None,
) -> DrillRecord:
    """Drill the restore of snapshot ``ref`` into the cluster ``destination`` (``k8s://[CONTEXT]``)
    and return the report, stored in the repository unless ``options.record`` is off. The report
    says whether the restore worked (``ok``) and why not (``reason``). What is wrong with the
    request itself (no such namespace, not a cluster, not a manifests snapshot) raises before
    anything happens; an error that stops the drill itself (the cluster unreachable, a request
    refused, a scratch namespace that exists, Ctrl-C) is raised after the clean-up, with the
    report stored as failed."""
    options = options or DrillOptions()
    say = status or (lambda line: None)
    if split_ref(ref)[1]:
        raise errors.UsageError(f"{ref!r}: a drill restores whole namespaces; name a snapshot, not a path in it")
    try:
        uri_context = parse_uri(destination)
    except errors.UsageError:
        raise errors.UsageError(f"a drill restores into a cluster: --to k8s://[CONTEXT], not {destination!r}") from None
    context = options.context or uri_context
    snap = _snapshot(repo, ref, options.tags)
    namespaces = _namespaces(repo, snap, options.namespaces)
    token = secrets.token_hex(4)
    mapping = _mapping(namespaces, options, token)
    expected = _expected(repo, snap, namespaces, mapping)

    from kubekeep.connectors.pvc.interrupts import terminate_as_interrupt
    from kubekeep.kube import config
    from kubekeep.kube.cleanup import Run
    from kubekeep.kube.requesting import Session

    report = DrillRecord(
        token=token,
        snapshot=snap.id,
        snapshot_time=snap.time,
        source=snap.uri,
        target=f"k8s://{context or ''}",
        timeout_s=options.timeout,
        started=now_rfc3339(),
    )
    run_record = runs.RunRecord("drill", source=snap.uri, kind=SnapshotKind.MANIFESTS, snapshot=snap.id)
    started = time.monotonic()
    session = Session(config.connect(context, options.kubeconfig))
    report.server = session.server
    if context is None:
        report.target = f"k8s://{session.context}"
    run = Run(session, run_id=f"drill-{token}")
    interrupted = False
    stopped: errors.KubekeepError | None = None
    try:
        with terminate_as_interrupt():
            try:
                _run(repo, snap, destination, options, session, run, report, expected, mapping, say)
            except errors.KubekeepError as exc:
                stopped = exc
                report.outcome, report.reason = records.FAILURE, str(exc)
            except KeyboardInterrupt:
                interrupted = True
                report.outcome, report.reason = records.FAILURE, "interrupted"
            finally:
                _clean_up(run, report, options, say)
    finally:
        session.close()
        report.total_s = round(time.monotonic() - started, 3)
        report.finished = now_rfc3339()
        if options.record:
            _save(repo, report, run_record)
    if interrupted:
        raise KeyboardInterrupt
    if stopped is not None:
        raise stopped
    return report


def drills(repo: Repository) -> tuple[list[DrillRecord], list[str]]:
    """The drill reports stored in the repository, oldest first, and a line for each damaged one."""
    return records.load_all(repo)


def drill_report(repo: Repository, ref: str) -> DrillRecord:
    """The stored drill report with id (or unique id prefix) ``ref``."""
    return records.find(repo, ref)


# -- what to drill ----------------------------------------------------------------------------


def _snapshot(repo: Repository, ref: str, tags: Iterable[str]) -> Snapshot:
    wanted = set(tags)
    if ref == "latest":
        snaps = [
            s for s in repo.snapshots(skip_damaged=True) if s.kind == SnapshotKind.MANIFESTS and wanted <= set(s.tags)
        ]
        if not snaps:
            with_tags = f" tagged {', '.join(sorted(wanted))}" if wanted else ""
            raise errors.SnapshotNotFound(f"no manifests snapshot{with_tags} found for 'latest'")
        return snaps[-1]
    if wanted:
        raise errors.UsageError("--tag chooses among snapshots for 'latest'; a snapshot id names one already")
    snap = repo.find_snapshot(ref)
    if snap.kind != SnapshotKind.MANIFESTS:
        raise errors.UsageError(
            f"snapshot {snap.short_id} is a {snap.kind} snapshot: a drill restores manifests snapshots (from k8s://)"
        )
    return snap


def _namespaces(repo: Repository, snap: Snapshot, given: Iterable[str]) -> list[str]:
    try:
        node = repo.resolve(snap, layout.NAMESPACES_DIR)
        present = {n.name for n in repo.load_tree(node.subtree)} if node.subtree is not None else set()
    except errors.PathNotFound:
        present = set()
    names = list(dict.fromkeys(given))
    if names:
        missing = [n for n in names if n not in present]
        if missing:
            raise errors.UsageError(
                f"namespace {missing[0]} holds no objects in snapshot {snap.short_id}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        return names
    names = sorted(n for n in present if n not in CLUSTER_NAMESPACES)
    if not names:
        raise errors.UsageError(f"snapshot {snap.short_id} holds no namespaced objects to drill")
    return names


def scratch_name(namespace: str, token: str) -> str:
    """``<namespace>-drill-<token>``, the namespace shortened to fit 63 characters."""
    suffix = f"-drill-{token}"
    return namespace[: NAME_MAX - len(suffix)].rstrip("-") + suffix


def _mapping(namespaces: list[str], options: DrillOptions, token: str) -> dict[str, str]:
    unknown = sorted(set(options.namespace_map) - set(namespaces))
    if unknown:
        raise errors.UsageError(f"--namespace-map names {unknown[0]}, which this drill does not restore")
    mapping = {}
    for ns in namespaces:
        target = options.namespace_map.get(ns) or (ns if options.same_names else scratch_name(ns, token))
        if not _DNS_LABEL.match(target) or len(target) > NAME_MAX:
            raise errors.UsageError(f"{target!r} is not a valid namespace name")
        mapping[ns] = target
    if len(set(mapping.values())) != len(mapping):
        raise errors.UsageError("two namespaces would be restored into the same namespace")
    return mapping


def _expected(
    repo: Repository, snap: Snapshot, namespaces: list[str], mapping: dict[str, str]
) -> list[planning.PlannedObject]:
    """The objects the restore will send, as it sends them (cleaned, mapped): what must come back."""
    include = select_objects(repo, snap, "", ObjectSelector.build(namespaces=namespaces))
    stored = []
    for rel, node in selection(repo, snap, ""):
        if node.type != FILE or layout.ref_of_attrs(node.attrs) is None or (include and not include(rel, node)):
            continue
        try:
            obj = read_object(repo, node)
        except Exception:  # noqa: BLE001 - unreadable: the restore reports it as failed
            continue
        if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
            stored.append(planning.StoredObject(rel, node.attrs, obj))
    return planning.plan(stored, cleaning.CleanOptions(namespace_map=mapping))


# -- the drill ---------------------------------------------------------------------------------


def _run(
    repo: Repository,
    snap: Snapshot,
    destination: str,
    options: DrillOptions,
    session: Session,
    run: Run,
    report: DrillRecord,
    expected: list[planning.PlannedObject],
    mapping: dict[str, str],
    say: Status,
) -> None:
    from kubekeep.kube import workloads

    restorable = [p for p in expected if p.skip is None]
    by_target = {target: DrillNamespace(source, target) for source, target in mapping.items()}
    report.namespaces = list(by_target.values())
    namespace_objects = {p.name: p for p in restorable if (p.group, p.resource) == ("", "namespaces")}
    for target in mapping.values():
        _create_namespace(run, namespace_objects.get(target), target, options.keep)
    say(f"created {len(mapping)} scratch namespace(s): {', '.join(mapping.values())}")

    say(f"restoring snapshot {snap.short_id} ({len(restorable)} objects)")
    began = time.monotonic()
    base = options.restore or ManifestsDestinationOptions()
    stats = restore(
        repo,
        snap.id,
        destination,
        options=dataclasses.replace(
            base,
            context=options.context,
            kubeconfig=options.kubeconfig,
            namespace_map=mapping,
            concurrency=options.concurrency or base.concurrency,
        ),
        select=ObjectSelector.build(namespaces=list(mapping)),
    )
    report.restore_s = round(time.monotonic() - began, 3)
    report.warnings = list(stats.warnings)
    results = {str(r.get("path", "")): r for r in stats.results}
    for p in restorable:
        line = results.get(p.path, {})
        action, reason = str(line.get("action", "")), str(line.get("reason", ""))
        if p.namespace == "" and (p.group, p.resource) != ("", "namespaces") and action == "created":
            _track(run, p)
        if p.name in by_target and (p.group, p.resource) == ("", "namespaces"):
            action, reason = "created", "by the drill, before the restore"
        report.objects.append(
            DrillObject(
                p.api_version,
                p.kind,
                _source_namespace(p, mapping),
                p.name,
                p.namespace,
                action or "not restored",
                reason,
            )
        )
    failed = sum(1 for o in report.objects if o.action not in ("created", "skipped"))
    say(f"restored in {report.restore_s:.1f} s: {len(report.objects) - failed} objects, {failed} failed")

    targets = [
        workloads.Target(p.group, p.version, p.resource, p.namespace, p.name)
        for p, o in zip(restorable, report.objects, strict=True)
        if (p.group, p.resource) in workloads.WORKLOADS and p.namespace in by_target and o.action == "created"
    ]
    say(f"waiting up to {human_duration(options.timeout)} for {len(targets)} workload(s)")

    def progress(ready: int, total: int, elapsed: float) -> None:
        say(f"{ready}/{total} workload(s) ready after {elapsed:.0f} s")

    outcomes = workloads.wait_ready(session, targets, timeout=options.timeout, progress=progress)
    report.workloads = [_workload(o) for o in outcomes]
    waited = [o.ready_s for o in report.workloads if o.ready_s is not None]
    all_ready = all(o.state == workloads.READY for o in report.workloads)
    report.ready_s = round(max(waited, default=0.0), 3) if all_ready else None
    report.rto_s = round(report.restore_s + report.ready_s, 3) if report.ready_s is not None else None

    say("comparing the restored objects with the snapshot")
    gone = {(w.kind, w.namespace, w.name) for w in report.workloads if w.detail == workloads.REMOVED_BY_TTL}
    # autoscalers the restore skips (their controller, e.g. a KEDA ScaledObject, makes them again) scale too
    scaled = restorecheck.autoscaled(p.obj for p in expected)
    _compare(session, restorable, report, set(by_target), scaled, gone)
    _summarise(report, by_target)


def _source_namespace(p: planning.PlannedObject, mapping: dict[str, str]) -> str:
    back = {v: k for k, v in mapping.items()}
    if (p.group, p.resource) == ("", "namespaces"):
        return back.get(p.name, p.name)
    return back.get(p.namespace, p.namespace)


def _create_namespace(run: Run, planned: planning.PlannedObject | None, name: str, keep: bool) -> None:
    from kubekeep.kube.cleanup import OWNER_ANNOTATION
    from kubekeep.kube.requesting import api_path

    body: dict[str, Any] = (
        {**planned.obj, "metadata": dict(planned.obj["metadata"])}
        if planned is not None
        else {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    meta = body["metadata"]
    ours = run.metadata(PURPOSE)
    meta["labels"] = {**(meta.get("labels") or {}), **ours["labels"]}
    annotations = {**(meta.get("annotations") or {}), **ours["annotations"]}
    if keep:  # kept on purpose: not a leftover for `kubekeep cleanup` to remove
        annotations.pop(OWNER_ANNOTATION, None)
    if annotations:
        meta["annotations"] = annotations
    path = api_path("", "v1", "namespaces")
    try:
        run.create(path, body, f"Namespace {name}")
    except errors.ApiError as exc:
        run.forget(f"{path}/{name}")  # not ours: never delete it
        if exc.status == 409:
            raise errors.UsageError(
                f"namespace {name} exists already: a drill restores only into namespaces it creates "
                "(choose other names with --namespace-map)"
            ) from None
        raise


def _track(run: Run, p: planning.PlannedObject) -> None:
    from kubekeep.kube.requesting import api_path

    run.track(api_path(p.group, p.version, p.resource, name=p.name), p.describe())


def _workload(o: Outcome) -> DrillWorkload:
    return DrillWorkload(
        o.target.kind, o.target.namespace, o.target.name, o.state.state, o.state.detail, o.ready_after_s
    )


def _compare(
    session: Session,
    restorable: list[planning.PlannedObject],
    report: DrillRecord,
    scratch: set[str],
    scaled: set[tuple[str, str, str]],
    gone: set[tuple[str, str, str]],
) -> None:
    """Each restored object against the live one: namespaced objects in the scratch namespaces
    (one list per resource and namespace), and cluster-scoped objects the drill created; the
    replicas of workloads an autoscaler scales are the autoscaler's; Jobs that finished and were
    deleted by their TTL are not there to compare."""
    from kubekeep.kube.requesting import api_path

    lists: dict[tuple[str, str, str, str], dict[str, Any] | None] = {}
    for p, line in zip(restorable, report.objects, strict=True):
        is_namespace = (p.group, p.resource) == ("", "namespaces")
        if p.namespace:
            if p.namespace not in scratch:
                continue
            key = (p.group, p.version, p.resource, p.namespace)
            if key not in lists:
                listing = session.get_or_none(api_path(*key[:3], namespace=p.namespace))
                listing = listing if isinstance(listing, dict) else {}
                found = listing.get("items")
                items: list[Any] = found if isinstance(found, list) else []
                # list items leave out apiVersion and kind: the list's own say them
                kind = str(listing.get("kind") or "").removesuffix("List")
                lists[key] = {
                    str((i.get("metadata") or {}).get("name")): {
                        "apiVersion": listing.get("apiVersion"),
                        **({"kind": kind} if kind else {}),
                        **i,
                    }
                    for i in items
                    if isinstance(i, dict) and isinstance(i.get("metadata"), dict)
                }
            live = (lists[key] or {}).get(p.name)
        elif (is_namespace and p.name in scratch) or line.action == "created":
            live = session.get_or_none(api_path(p.group, p.version, p.resource, name=p.name))
            live = live if isinstance(live, dict) else None
        else:
            continue  # a cluster-scoped object that existed already: not the drill's
        if live is None and (p.kind, p.namespace, p.name) in gone:
            line.reason = "finished and deleted by its ttlSecondsAfterFinished before the comparison"
            continue
        line.compared = True
        if live is None:
            line.differences = [Difference("", "removed", old="(the object)", new=None)]
            continue
        ignore = restorecheck.AUTOSCALED if (p.kind, p.namespace, p.name) in scaled else ()
        changes = restorecheck.hide_values(restorecheck.differences(p.obj, live, ignore=ignore), p.kind)
        line.differences = [Difference(c.path, c.op, _plain(c.old), _plain(c.new)) for c in changes]


def _plain(value: Any) -> Any:
    """``value`` as JSON-shaped data (a hand-written snapshot file may hold YAML timestamps or
    binary values, which neither the stored report nor ``--json`` can carry)."""
    return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def _summarise(report: DrillRecord, by_target: dict[str, DrillNamespace]) -> None:
    from kubekeep.kube import workloads

    for o in report.objects:
        ns = by_target.get(o.target_namespace) or by_target.get(o.name if o.kind == "Namespace" else "")
        if ns is None:
            continue
        ns.objects += 1
        ns.created += o.action == "created"
        ns.failed += o.action not in ("created", "skipped")
        ns.differences += len(o.differences)
    for w in report.workloads:
        by_target[w.namespace].workloads += 1
    for ns in by_target.values():
        mine = [w for w in report.workloads if w.namespace == ns.target]
        ns.ready = all(w.state == workloads.READY for w in mine)
        if ns.ready:
            ns.ready_s = round(max((w.ready_s or 0.0 for w in mine), default=0.0), 3)
            ns.rto_s = round(report.restore_s + ns.ready_s, 3)
    problems = []
    failed = sum(1 for o in report.objects if o.action not in ("created", "skipped"))
    if failed:
        problems.append(f"{failed} object(s) not restored")
    failed_workloads = [w for w in report.workloads if w.state == workloads.FAILED]
    late = [w for w in report.workloads if w.state == workloads.WAITING]
    if failed_workloads:
        w = failed_workloads[0]
        problems.append(f"{len(failed_workloads)} workload(s) failed ({w.kind} {w.namespace}/{w.name}: {w.detail})")
    if late:
        w = late[0]
        problems.append(
            f"{len(late)} workload(s) not ready within {human_duration(report.timeout_s)} "
            f"({w.kind} {w.namespace}/{w.name}: {w.detail})"
        )
    differing = [o for o in report.objects if o.differences]
    if differing:
        o = differing[0]
        where = f"{o.target_namespace}/{o.name}" if o.target_namespace else o.name
        first = o.differences[0].path or "the object is missing"
        problems.append(
            f"{sum(len(o.differences) for o in differing)} difference(s) in {len(differing)} object(s) "
            f"({o.kind} {where}: {first})"
        )
    if problems:
        report.outcome, report.reason = records.FAILURE, "; ".join(problems)


def _clean_up(run: Run, report: DrillRecord, options: DrillOptions, say: Status) -> None:
    began = time.monotonic()
    if options.keep:
        report.cleanup = DrillCleanup(kept=True)
        say(f"kept the scratch namespaces (remove them with: kubectl delete namespace -l kubekeep.io/run={run.id})")
        return
    made = run.created()
    say(f"removing {len(made)} object(s) the drill created")
    try:
        problems = run.remove(wait=options.cleanup_timeout)
    except errors.KubekeepError as exc:
        problems = [str(exc)]
    report.cleanup = DrillCleanup(False, made, problems, round(time.monotonic() - began, 3))


def _save(repo: Repository, report: DrillRecord, run_record: runs.RunRecord) -> None:
    try:
        records.save(repo, report)
    except errors.KubekeepError as exc:
        repo.warn(f"drill record {report.token}", f"the report of this drill could not be stored: {exc}")
    run_record.started, run_record.finished = report.started, report.finished
    run_record.duration_s = report.total_s
    run_record.outcome, run_record.error = report.outcome, report.reason
    run_record.stats = {
        "namespaces": len(report.namespaces),
        "objects": len(report.objects),
        "differences": report.differences,
        "restore_s": report.restore_s,
        **({"rto_s": report.rto_s} if report.rto_s is not None else {}),
    }
    try:
        runs.save(repo, run_record)
    except errors.KubekeepError as exc:
        repo.warn(f"run record drill {report.token}", f"the run record of this drill could not be written: {exc}")
