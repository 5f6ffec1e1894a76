"""``kubekeep backup SOURCE``: take a snapshot of a source."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kubekeep import api, errors
from kubekeep.cli._common import (
    EXIT_INCOMPLETE,
    emit_json,
    global_options,
    human_size,
    info,
    settings,
    show_progress,
    warn,
    with_repository,
)
from kubekeep.cli._volumes import VolumeFlags, volume_options
from kubekeep.cli.progress import BackupProgress

#: sources that take no exclude patterns, and what to say
_NO_EXCLUDES = {
    "etcd": "exclude patterns apply to fs: sources; an etcd:// snapshot is one file",
    "etcds": "exclude patterns apply to fs: sources; an etcd:// snapshot is one file",
    "k8s": "exclude patterns apply to fs: sources; for k8s:// use --exclude-namespace or --exclude-resource",
}


@click.command(short_help="Back up a source into a new snapshot.")
@click.argument("source")
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("--exclude", "-e", "excludes", multiple=True, help="Exclude a glob pattern (fs:, repeatable).")
@click.option(
    "--exclude-file",
    type=click.Path(exists=True, dir_okay=False),
    multiple=True,
    help="Read exclude patterns from a file, one per line.",
)
@click.option("--parent", help="Compare against this snapshot instead of the latest of the same source.")
@click.option(
    "--force",
    "--force-read",
    "force",
    is_flag=True,
    help="Read every file even if unchanged since the parent snapshot (volumes too: the agent reads every file).",
)
@click.option("--cacert", help="etcd://: CA certificate that signed etcd's server certificate (as etcdctl).")
@click.option("--cert", help="etcd://: client certificate (as etcdctl).")
@click.option("--key", help="etcd://: client certificate's private key (as etcdctl).")
@click.option("--etcd-server-name", help="etcd://: name to check the server certificate against.")
@click.option("--context", help="k8s://: kubeconfig context (instead of k8s://CONTEXT).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="k8s://: kubeconfig file (default: KUBECONFIG).")
@click.option(
    "--include-namespace",
    "include_namespaces",
    multiple=True,
    metavar="NS",
    help="k8s://: only these namespaces (repeatable); cluster-scoped objects are still taken.",
)
@click.option(
    "--exclude-namespace",
    "exclude_namespaces",
    multiple=True,
    metavar="NS",
    help="k8s://: leave these namespaces out (repeatable).",
)
@click.option(
    "--include-resource",
    "include_resources",
    multiple=True,
    metavar="RESOURCE",
    help="k8s://: only these resources: deployments, deployments.apps, Deployment, deploy, *.example.com (repeatable).",
)
@click.option(
    "--exclude-resource",
    "exclude_resources",
    multiple=True,
    metavar="RESOURCE",
    help="k8s://: leave these resources out (repeatable).",
)
@click.option("--selector", "-l", help="k8s://: only objects matching this label selector.")
@click.option("--include-noisy", is_flag=True, help="k8s://: also take events and leases (left out by default).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="k8s://: list requests in flight (default 8).")
@volume_options()
@global_options
@with_repository
def command(
    repo: api.Repository,
    source: str,
    tags: tuple[str, ...],
    excludes: tuple[str, ...],
    exclude_file: tuple[str, ...],
    parent: str | None,
    force: bool,
    cacert: str | None,
    cert: str | None,
    key: str | None,
    etcd_server_name: str | None,
    context: str | None,
    kubeconfig: str | None,
    include_namespaces: tuple[str, ...],
    exclude_namespaces: tuple[str, ...],
    include_resources: tuple[str, ...],
    exclude_resources: tuple[str, ...],
    selector: str | None,
    include_noisy: bool,
    concurrency: int | None,
    volume: VolumeFlags,
) -> None:
    """Back up SOURCE: a directory (or fs:PATH), or a connector URI such as k8s://CONTEXT or
    etcd://HOST:PORT."""
    patterns = list(excludes)
    for f in exclude_file:
        patterns.extend(line.strip() for line in Path(f).read_text().splitlines())
    scheme = api.scheme_of(source)
    if patterns and scheme in _NO_EXCLUDES:
        raise errors.UsageError(_NO_EXCLUDES[scheme])
    if (cacert or cert or key or etcd_server_name) and scheme not in ("etcd", "etcds"):
        raise errors.UsageError("--cacert/--cert/--key/--etcd-server-name apply to etcd:// sources only")
    if volume.cluster() and scheme != "k8s":
        raise errors.UsageError("--volumes, --volume-selector and --volume-parallel apply to k8s:// sources only")
    selection = (include_namespaces, exclude_namespaces, include_resources, exclude_resources, selector, include_noisy)
    if (any(selection) or concurrency) and scheme != "k8s":
        raise errors.UsageError(
            "--include-*/--exclude-namespace/resource, --selector, --include-noisy and "
            "--concurrency apply to k8s:// sources only"
        )
    if (context or kubeconfig) and scheme not in ("k8s", "pvc"):
        raise errors.UsageError("--context and --kubeconfig apply to k8s:// and pvc:// sources only")
    options: api.SourceOptions | None = None
    if scheme == "fs":
        options = api.FsSourceOptions(excludes=tuple(patterns))
    elif scheme in ("etcd", "etcds"):
        options = api.EtcdSourceOptions(cacert=cacert, cert=cert, key=key, server_name=etcd_server_name)
    elif scheme == "k8s":
        options = api.ManifestsSourceOptions(
            context=context,
            kubeconfig=kubeconfig,
            include_namespaces=include_namespaces,
            exclude_namespaces=exclude_namespaces,
            include_resources=include_resources,
            exclude_resources=exclude_resources,
            selector=selector,
            include_noisy=include_noisy,
            concurrency=concurrency or 8,
            volumes=volume.cluster_options(excludes=patterns),
        )
    elif scheme == "pvc":
        options = volume.options(excludes=patterns, context=context, kubeconfig=kubeconfig)
    with BackupProgress(enabled=show_progress()) as progress:
        snap = api.backup(
            repo,
            source,
            tags=tags,
            parent=parent,
            force=force,
            progress=progress.update,
            options=options,
            record=True,
        )
    st = snap.stats
    if settings().json:
        emit_json(
            {
                "id": snap.id,
                "short_id": snap.short_id,
                "time": snap.time,
                "source": snap.source,
                "stats": st,
                "warnings": snap.warnings,
            }
        )
    else:
        for w in snap.warnings:
            warn(w)
        manifests = snap.metadata.get("manifests") if snap.kind == api.SnapshotKind.MANIFESTS else None
        if manifests:
            info(
                f"objects: {manifests['objects']} of {manifests['resources']} resources in "
                f"{manifests['namespaces']} namespaces"
            )
        info(
            f"files: {st['files']} ({st['files_unchanged']} unchanged), dirs: {st['dirs']}, symlinks: {st['symlinks']}"
        )
        info(
            f"processed {human_size(st['bytes_total'])}, read {human_size(st['bytes_read'])}, "
            f"added {human_size(st['bytes_stored'])} to the repository in {st['duration_s']:.2f} s"
        )
        click.echo(f"snapshot {snap.short_id} saved")
    if snap.warnings:
        sys.exit(EXIT_INCOMPLETE)
