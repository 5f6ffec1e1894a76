"""``kubekeep restore SNAP[:PATH] --to DEST``: write a snapshot (or part of it) out."""

from __future__ import annotations

import fnmatch
from collections import Counter
from typing import Any

import click

from kubekeep import api, errors
from kubekeep.cli._cluster_restore import DataFlags, data_options, print_claims
from kubekeep.cli._common import (
    emit_json,
    global_options,
    human_size,
    info,
    settings,
    show_progress,
    warn,
    with_repository,
)
from kubekeep.cli._manifests import print_report
from kubekeep.cli._volumes import VolumeFlags, volume_options
from kubekeep.cli.progress import RestoreProgress


@click.command(short_help="Restore a snapshot to a destination.")
@click.argument("ref", metavar="SNAPSHOT[:PATH]")
@click.option(
    "--to",
    "--target",
    "-t",
    "destination",
    required=True,
    help="Destination: a directory (or fs:PATH), or a connector URI.",
)
@click.option("--include", "includes", multiple=True, help="Restore only paths matching this glob (repeatable).")
@click.option("--exclude", "excludes", multiple=True, help="Skip paths matching this glob (repeatable).")
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Manifests: objects in this namespace and the Namespace itself (repeatable).",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    metavar="KIND",
    help="Manifests: objects of this kind or resource (Deployment, deployments.apps, deploy; repeatable).",
)
@click.option(
    "--name", "names", multiple=True, metavar="NAME", help="Manifests: objects with this name or glob (repeatable)."
)
@click.option("--selector", "-l", help="Manifests: objects matching this label selector.")
@click.option(
    "--namespace-map",
    "namespace_map",
    multiple=True,
    metavar="OLD=NEW",
    help="Manifests: restore namespace OLD as NEW (repeatable).",
)
@click.option(
    "--api-version-map",
    "api_version_map",
    multiple=True,
    metavar="OLD=NEW",
    help="k8s://: send objects stored at group version OLD as NEW, e.g. "
    "flowcontrol.apiserver.k8s.io/v1beta3=flowcontrol.apiserver.k8s.io/v1 (repeatable; without it, "
    "a version the target does not serve is sent at the one it prefers for the kind).",
)
@click.option(
    "--storage-class-map",
    "storage_class_map",
    multiple=True,
    metavar="OLD=NEW",
    help="Manifests: claims (and claim templates) of storage class OLD get NEW (repeatable).",
)
@click.option(
    "--image-map",
    "image_map",
    multiple=True,
    metavar="OLD_PREFIX=NEW_PREFIX",
    help="Manifests: container images starting with OLD_PREFIX start with NEW_PREFIX instead (repeatable).",
)
@click.option(
    "--transform",
    "transform_files",
    multiple=True,
    metavar="FILE",
    help="Manifests: change the objects that rules of FILE select (JSON Patch, merge patch; repeatable).",
)
@click.option(
    "--existing",
    type=click.Choice(["skip", "update"]),
    default=None,
    help="k8s://: leave objects that exist alone (skip, the default) or apply the snapshot over them (update).",
)
@click.option("--dry-run", is_flag=True, help="k8s://: show what would happen (server-side dry run); change nothing.")
@click.option(
    "--restore-status", is_flag=True, help="Manifests: restore status fields too (controllers recompute them)."
)
@click.option(
    "--keep-managed-fields",
    is_flag=True,
    help="Manifests: restore managedFields (field ownership) as in the snapshot; one more request per object.",
)
@click.option("--raw", is_flag=True, help="Manifests to fs:: write the snapshot's files as stored, not clean YAML.")
@click.option("--concurrency", type=click.IntRange(1, 256), help="k8s://: requests in flight (default 64).")
@click.option("--context", help="k8s://: kubeconfig context (instead of k8s://CONTEXT).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="k8s://: kubeconfig file (default: KUBECONFIG).")
@volume_options(restore=True)
@data_options()
@global_options
@with_repository
def command(
    repo: api.Repository,
    ref: str,
    destination: str,
    includes: tuple[str, ...],
    excludes: tuple[str, ...],
    namespaces: tuple[str, ...],
    kinds: tuple[str, ...],
    names: tuple[str, ...],
    selector: str | None,
    namespace_map: tuple[str, ...],
    api_version_map: tuple[str, ...],
    storage_class_map: tuple[str, ...],
    image_map: tuple[str, ...],
    transform_files: tuple[str, ...],
    existing: str | None,
    dry_run: bool,
    restore_status: bool,
    keep_managed_fields: bool,
    raw: bool,
    concurrency: int | None,
    context: str | None,
    kubeconfig: str | None,
    volume: VolumeFlags,
    data: DataFlags,
) -> None:
    """Restore SNAPSHOT (an id prefix or 'latest'), or only PATH within it, to DEST. The
    contents of a directory PATH land directly in DEST.

    A manifests snapshot (taken from k8s://) restores into a cluster (--to k8s://[CONTEXT]) in
    dependency order, or to a directory as clean YAML for kubectl apply; --namespace, --kind,
    --name and --selector pick objects; --storage-class-map, --image-map and --transform change
    them on the way (docs/manifests.md). A snapshot with volumes (backup k8s:// --volumes)
    restored into a cluster brings the claims' data too, written before the workloads that
    mount them are created (docs/volumes.md)."""
    scheme = api.scheme_of(destination)
    if data.given() and scheme != "k8s":
        raise errors.UsageError("--no-volumes, --volumes-from and --volume-parallel apply to restores into k8s://")
    destination_options = volume.options(context=context, kubeconfig=kubeconfig) if scheme == "pvc" else None
    # a manifests snapshot, or a restore into a cluster, takes the manifests options; any other
    # restore its destination's own. Without one of their flags they are all defaults and are not
    # built (nor is an empty selector): they import YAML and JSON Patch, 35 ms of every restore
    options: api.DestinationOptions | None = destination_options
    flagged = (namespace_map, api_version_map, storage_class_map, image_map, transform_files, existing)
    if (
        scheme == "k8s"
        or raw
        or any(flagged)
        or dry_run
        or restore_status
        or keep_managed_fields
        or concurrency is not None
        or (scheme != "pvc" and (context or kubeconfig))
    ):
        manifests_options = api.ManifestsDestinationOptions(
            context=context if scheme != "pvc" else None,
            kubeconfig=kubeconfig if scheme != "pvc" else None,
            existing=existing or "skip",
            dry_run=dry_run,
            restore_status=restore_status,
            keep_managed_fields=keep_managed_fields,
            namespace_map=api.parse_namespace_map(namespace_map),
            api_version_map=api.parse_api_version_map(api_version_map),
            concurrency=concurrency,
            raw=raw,
            destination=destination_options,
            volumes=data.options(volume, context=context, kubeconfig=kubeconfig) if scheme == "k8s" else None,
            transforms=api.load_transforms(
                storage_class_map=storage_class_map, image_map=image_map, files=transform_files
            ),
        )
        if scheme == "k8s" or manifests_options.given() or raw:
            options = manifests_options
    select = None
    if namespaces or kinds or names or selector:
        select = api.ObjectSelector.build(namespaces=namespaces, kinds=kinds, names=names, selector=selector)
    with RestoreProgress(enabled=scheme == "k8s" and show_progress()) as progress:
        stats = api.restore(
            repo,
            ref,
            destination,
            include=_filter(includes, excludes),
            options=options,
            select=None if select is None or select.empty() else select,
            progress=progress.update,
        )
    claims = stats.claims if isinstance(stats, api.ClusterRestoreStats) else []
    failed = [r for r in stats.results if r["action"] in ("failed", "would fail")]
    if settings().json:
        emit_json(stats.to_dict())
    else:
        for w in stats.warnings:
            warn(w)
        if stats.results:
            counts = print_report(stats.results, quiet=settings().quiet)
            print_claims(claims, quiet=settings().quiet)
            data_counts = [f"{n} {action}" for action, n in sorted(Counter(c.action for c in claims).items())]
            info(
                ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
                + (f"; claims' data: {', '.join(data_counts)}" if data_counts else "")
                + f" in {stats.duration_s:.2f} s"
                + (" (dry run: nothing was changed)" if dry_run else "")
            )
    problem = stats.problem() if isinstance(stats, api.ClusterRestoreStats) else None
    if problem:
        raise errors.ConnectorError(problem)
    if failed:
        raise errors.ConnectorError(f"{len(failed)} of {len(stats.results)} objects could not be restored")
    if settings().json or stats.results:
        return
    info(
        f"restored {stats.files} files, {stats.dirs} dirs, {stats.symlinks} symlinks, "
        f"{human_size(stats.bytes)} in {stats.duration_s:.2f} s to {destination}"
    )


def _filter(includes: tuple[str, ...], excludes: tuple[str, ...]) -> Any:
    if not includes and not excludes:
        return None

    def keep(rel: str, node: api.Node) -> bool:
        if any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(node.name, p) for p in excludes):
            return False
        if includes and node.type != "dir":
            return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(node.name, p) for p in includes)
        return True

    return keep
