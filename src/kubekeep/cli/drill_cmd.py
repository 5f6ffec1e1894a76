"""``kubekeep drill SNAP --to k8s://[CONTEXT]``: prove that a snapshot restores (docs/drills.md)."""

from __future__ import annotations

import click

from kubekeep import api, errors
from kubekeep.cli._common import emit_json, global_options, info, settings, warn, with_repository
from kubekeep.cli._manifests import value
from kubekeep.cli.terminal import safe

#: differences printed per object, and objects with differences printed, before "... and N more"
SHOWN = 10


@click.command(short_help="Restore a snapshot into scratch namespaces and prove it works.")
@click.argument("ref", metavar="SNAPSHOT")
@click.option("--to", "--target", "-t", "destination", required=True, help="The cluster: k8s://[CONTEXT].")
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Drill this namespace of the snapshot (repeatable; default: all but kube-system, kube-public, kube-node-lease).",
)
@click.option(
    "--namespace-map",
    "namespace_map",
    multiple=True,
    metavar="OLD=NEW",
    help="Restore namespace OLD into NEW (repeatable; default NEW: OLD-drill-<id>). NEW must not exist.",
)
@click.option(
    "--same-names",
    is_flag=True,
    help="Restore into namespaces of the snapshot's own names (another cluster, where they do not exist).",
)
@click.option(
    "--timeout",
    default="10m",
    show_default=True,
    metavar="DURATION",
    help="How long the workloads have to become ready (30s, 10m, 1h).",
)
@click.option("--keep", is_flag=True, help="Leave the scratch namespaces in place (to look at them).")
@click.option(
    "--tag", "tags", multiple=True, metavar="TAG", help="With SNAPSHOT 'latest': the newest with this tag (repeatable)."
)
@click.option("--concurrency", type=click.IntRange(1, 256), help="The restore's requests in flight (default 64).")
@click.option("--no-record", is_flag=True, help="Do not store the report in the repository.")
@click.option("--context", help="kubeconfig context (instead of k8s://CONTEXT).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="kubeconfig file (default: KUBECONFIG).")
@global_options
@with_repository
def command(
    repo: api.Repository,
    ref: str,
    destination: str,
    namespaces: tuple[str, ...],
    namespace_map: tuple[str, ...],
    same_names: bool,
    timeout: str,
    keep: bool,
    tags: tuple[str, ...],
    concurrency: int | None,
    no_record: bool,
    context: str | None,
    kubeconfig: str | None,
) -> None:
    """Restore SNAPSHOT's namespaces into scratch namespaces of the cluster --to names
    (k8s://[CONTEXT]) with the same restore as 'kubekeep restore', wait until the restored workloads are ready,
    compare every restored object with the snapshot, time it (the RTO), store the report in
    the repository (the web UI lists it), and remove the scratch namespaces again.

    Exits 18 with a one-line reason when the restore does not work: objects that could not be
    restored, workloads not ready within --timeout, restored objects that differ from the
    snapshot."""
    options = api.DrillOptions(
        context=context,
        kubeconfig=kubeconfig,
        namespaces=namespaces,
        namespace_map=api.parse_namespace_map(namespace_map),
        same_names=same_names,
        timeout=api.parse_timeout(timeout),
        keep=keep,
        tags=tags,
        concurrency=concurrency,
        record=not no_record,
    )
    report = api.drill(repo, ref, destination, options, status=info)
    if settings().json:
        emit_json(report.to_dict())
    else:
        print_report(report)
    for w in report.warnings:
        warn(w)
    for problem in report.cleanup.problems:
        warn(f"cleanup: {problem}")
    if not report.ok:
        raise errors.DrillFailed(f"drill failed: {report.reason}")


def _seconds(s: float | None) -> str:
    return "-" if s is None else f"{s:.1f} s"


def print_report(report: api.DrillRecord) -> None:
    verdict = click.style("passed", fg="green") if report.ok else click.style("FAILED", fg="red")
    click.echo(
        safe(f"drill {report.token} of snapshot {report.snapshot[:8]} into {report.target}: ")
        + verdict
        + (f": {safe(report.reason)}" if report.reason else "")
    )
    rows = [("namespace", "restored into", "objects", "failed", "differences", "workloads", "ready", "RTO")]
    for ns in report.namespaces:
        rows.append(
            (
                ns.source,
                ns.target,
                str(ns.objects),
                str(ns.failed),
                str(ns.differences),
                str(ns.workloads),
                _seconds(ns.ready_s) if ns.ready else "no",
                _seconds(ns.rto_s),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo(
            safe("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        )
    click.echo(
        f"restore {_seconds(report.restore_s)}, ready after {_seconds(report.ready_s)}, "
        f"RTO {_seconds(report.rto_s)}; total {_seconds(report.total_s)}"
        + ("" if report.cleanup.kept else f" (cleanup {_seconds(report.cleanup.seconds)})")
    )
    for o in report.objects:
        if o.action not in ("created", "skipped"):
            where = f"{o.target_namespace}/{o.name}" if o.target_namespace else o.name
            click.secho(safe(f"not restored: {o.kind} {where}: {o.action} {o.reason}".rstrip()), fg="red")
    for w in report.workloads:
        if w.state != "ready":
            click.secho(safe(f"not ready: {w.kind} {w.namespace}/{w.name}: {w.detail}"), fg="red")
    differing = [o for o in report.objects if o.differences]
    for o in differing[:SHOWN]:
        where = f"{o.target_namespace}/{o.name}" if o.target_namespace else o.name
        click.secho(safe(f"differs from the snapshot: {o.kind} {where}"), fg="red")
        for d in o.differences[:SHOWN]:
            if d.op == "removed":
                click.echo(safe(f"    - {d.path or '(the whole object)'}: {value(d.old)} (missing)"))
            else:
                click.echo(safe(f"    ~ {d.path}: {value(d.old)} -> {value(d.new)}"))
        if len(o.differences) > SHOWN:
            click.echo(f"    ... and {len(o.differences) - SHOWN} more")
    if len(differing) > SHOWN:
        click.echo(f"... and {len(differing) - SHOWN} more objects with differences")
    if report.cleanup.kept:
        info(f"kept: {', '.join(ns.target for ns in report.namespaces)}")
    if report.id:
        info(f"report {report.id[:8]} stored in the repository")
