"""Backups: a source into a new snapshot. Kept apart from ``api.snapshots`` so that a backup
loads only the engine's write path (no restore planning, checks or cluster code): an unchanged
re-backup is mostly start-up."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext

from kubekeep import connectors
from kubekeep.connectors import SourceOptions
from kubekeep.engine import runs
from kubekeep.engine.backup import ProgressCallback, run_backup
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot


def backup(
    repo: Repository,
    source: str,
    *,
    tags: Iterable[str] = (),
    parent: str | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    options: SourceOptions | None = None,
    record: bool = False,
) -> Snapshot:
    """Back up ``source`` (a connector URI or a path) into a new snapshot. ``options`` are the
    source connector's (``FsSourceOptions``, ``EtcdSourceOptions``, ``ManifestsSourceOptions``,
    ``VolumeOptions``); its defaults if None. ``record`` leaves a run record (success or
    failure) in the repository, for ``kubekeep metrics``."""
    run = runs.RunRecord("backup", source=_source_key(source), tags=sorted(set(tags)))
    with _recording(repo, run, record):
        importer = connectors.open_importer(source, options)
        with repo.lock(), importer:
            parent_snap = repo.find_snapshot(parent) if parent else None
            snap = run_backup(
                repo, importer, tags=list(tags), parent=parent_snap, use_parent=not force, progress=progress
            )
        run.source, run.kind, run.snapshot = snap.uri, snap.kind, snap.id
        run.stats = {k: v for k, v in snap.stats.items() if k in _BACKUP_FIGURES and isinstance(v, int | float)}
        objects = (snap.metadata.get("manifests") or {}).get("objects")
        if isinstance(objects, int):
            run.stats["objects"] = objects
        if snap.warnings:
            run.outcome, run.error = "warning", f"{len(snap.warnings)} warning(s), the first: {snap.warnings[0]}"
        return snap


#: the figures of a backup its run record keeps
_BACKUP_FIGURES = ("files", "dirs", "bytes_total", "bytes_read", "bytes_stored", "duration_s")


def _source_key(source: str) -> str:
    """A source as its snapshots name it, when that is known without opening it (fs: paths made
    absolute), so that failed and successful runs of one source group together."""
    if connectors.scheme_of(source) == "fs":
        from kubekeep.connectors.fs import fs_path

        return f"fs:{fs_path(source)}"
    return source


def _recording(repo: Repository, run: runs.RunRecord, enabled: bool) -> AbstractContextManager[runs.RunRecord]:
    return runs.recorded(repo, run) if enabled else nullcontext(run)
