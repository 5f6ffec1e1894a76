"""``kubekeep summary SNAP``: the cluster at the time of a manifests snapshot."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, settings, with_repository
from kubekeep.cli.terminal import safe_lines


@click.command(short_help="Show the cluster as a manifests snapshot saw it.")
@click.argument("snapshot")
@click.option("--namespace", "-n", "namespaces", multiple=True, metavar="NS", help="Only this namespace (repeatable).")
@click.option(
    "--problems",
    is_flag=True,
    help="Only what is not healthy: NotReady nodes, workloads short of "
    "replicas, pods not running or not ready, unbound claims.",
)
@global_options
@with_repository
def command(repo: api.Repository, snapshot: str, namespaces: tuple[str, ...], problems: bool) -> None:
    """Nodes and their conditions, and per namespace the workloads with desired/ready replicas,
    pods by phase and persistent volume claims with their binding, as in SNAPSHOT."""
    s = api.summary(repo, snapshot, namespaces=namespaces)
    if settings().json:
        emit_json(s.to_dict())
        return
    _render(s, problems)


def _render(s: api.ClusterSummary, problems: bool) -> None:
    i = s.info
    _say(
        f"snapshot {i['short_id']} of {i['cluster'] or i['source']} at {i['time']}"
        f" ({i['server']}, {i['version'] or 'version unknown'}, {i['objects']} objects)"
    )
    nodes = [n for n in s.nodes if not problems or n.ready != "True" or n.problems or n.unschedulable]
    ready = sum(1 for n in s.nodes if n.ready == "True")
    _say(f"\nnodes: {ready}/{len(s.nodes)} ready")
    for n in nodes:
        flags = [*n.problems, *(["SchedulingDisabled"] if n.unschedulable else [])]
        color = None if n.ready == "True" and not flags else "red"
        _say(
            f"  {n.name:<30} {'Ready' if n.ready == 'True' else 'NotReady':<9} {n.version:<10} "
            f"cpu {n.cpu or '?'} mem {n.memory or '?'}" + (f"  {', '.join(flags)}" if flags else ""),
            fg=color,
        )
    totals = api.pod_phase_totals(s)
    if totals:
        _say("pods: " + ", ".join(f"{n} {phase}" for phase, n in totals.items()))
    for ns in s.namespaces.values():
        workloads = ns.unhealthy_workloads if problems else ns.workloads
        not_running = {p: n for p, n in ns.pods.items() if p not in ("Running", "Succeeded")}
        claims = [c for c in ns.claims if not problems or c.phase != "Bound"]
        if problems and not (workloads or not_running or ns.pods_not_ready or claims):
            continue
        phase = f", {ns.phase}" if ns.phase and ns.phase != "Active" else ""
        _say(f"\nnamespace {ns.name} ({ns.objects} objects{phase})")
        for w in workloads:
            _say(
                f"  {w.kind:<12} {w.name:<40} {w.ready}/{w.desired} ready, {w.available} available, "
                f"{w.updated} up to date",
                fg=None if w.healthy else "yellow",
            )
        if ns.pods:
            _say("  pods: " + ", ".join(f"{n} {phase}" for phase, n in ns.pods.items()))
        if ns.pods_not_ready:
            shown = ", ".join(ns.pods_not_ready[:10]) + (" ..." if len(ns.pods_not_ready) > 10 else "")
            _say(f"  not ready: {shown}", fg="yellow")
        for c in claims:
            bound = f"-> {c.volume}" if c.volume else "(no volume)"
            _say(
                f"  claim {c.name:<34} {c.phase or '?':<8} {bound} {c.capacity} {c.storage_class}",
                fg=None if c.phase == "Bound" else "yellow",
            )


def _say(text: str, fg: str | None = None) -> None:
    """One line (or a blank line and one) of the summary, its names made safe for the terminal."""
    click.secho(safe_lines(text), fg=fg)
