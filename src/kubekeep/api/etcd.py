"""Stored etcd snapshot files: read in place, restored to a data directory (docs/etcd.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from kubekeep import errors
from kubekeep.api.refs import split_ref
from kubekeep.engine.entries import SnapshotKind
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from kubekeep.engine.tree import Node

if TYPE_CHECKING:
    from kubekeep.etcd.restore import RestoreTool

#: Where the etcd:// importer stores the snapshot file inside a snapshot.
ETCD_SNAPSHOT_PATH = "etcd/snapshot.db"


def _etcd_file(repo: Repository, ref: str) -> tuple[Snapshot, str, Node]:
    """The snapshot and file node an etcd command works on: ``SNAP:PATH``, or ``SNAP`` for the
    etcd:// importer's ``etcd/snapshot.db``."""
    snap_ref, given = split_ref(ref)
    snap = repo.find_snapshot(snap_ref)
    path = given.strip("/") or ETCD_SNAPSHOT_PATH
    try:
        node = repo.resolve(snap, path)
    except errors.PathNotFound:
        if given.strip("/"):
            raise
        raise errors.PathNotFound(
            f"snapshot {snap.short_id} ({snap.kind or 'unknown'} snapshot of {snap.uri}) has no "
            f"/{ETCD_SNAPSHOT_PATH}: name the snapshot file as SNAPSHOT:PATH"
        ) from None
    if node.type != "file":
        raise errors.UsageError(f"/{path} in snapshot {snap.short_id} is a {node.type}, not an etcd snapshot file")
    return snap, "/" + path, node


def etcd_status(repo: Repository, ref: str) -> dict[str, Any]:
    """Read a stored etcd snapshot file (``SNAP[:PATH]``) in place, through a seekable view of
    its blobs (no copy on disk): SHA-256 check, revision, key counts, sizes, members, versions,
    plus what the etcd:// importer recorded at backup time (``recorded``; None for a file
    backed up by another importer). A trailer or recorded hash that does not match the data
    raises IntegrityError."""
    from kubekeep.engine.fileview import FileView
    from kubekeep.etcd.boltmeta import read_snapshot_info

    snap, path, node = _etcd_file(repo, ref)
    with FileView(repo, node) as view:
        info = read_snapshot_info(cast(IO[bytes], view), check_hash=True)
    recorded = (
        snap.metadata.get("etcd") if snap.kind == SnapshotKind.ETCD and path == "/" + ETCD_SNAPSHOT_PATH else None
    )
    recorded_sha = (recorded or {}).get("sha256")
    if recorded_sha and recorded_sha != info.sha256:
        raise errors.IntegrityError(
            f"{path} in snapshot {snap.short_id} hashes to {info.sha256}, but the backup recorded {recorded_sha}"
        )
    return {
        "snapshot": snap.id,
        "short_id": snap.short_id,
        "path": path,
        "file": info.to_dict(),
        "recorded": recorded,
        "matches_recorded": (recorded_sha == info.sha256) if recorded_sha else None,
    }


def checked_member(
    data_dir: str | os.PathLike[str],
    name: str,
    initial_cluster: str | None,
    initial_advertise_peer_urls: str | None,
    initial_cluster_token: str | None,
    bump_revision: int | None,
    mark_compacted: bool,
    etcdutl: str | os.PathLike[str] | None,
) -> tuple[Path, str, str, str, RestoreTool]:
    """The new member's data directory, initial cluster, peer URLs and token with etcd's
    defaults (peer URL ``http://localhost:2380``, cluster ``NAME=PEER_URLS``, token
    ``etcd-cluster``), and the restore tool: all checked before anything is written."""
    from kubekeep.etcd.restore import check_request, find_restore_tool

    peer_urls = initial_advertise_peer_urls or "http://localhost:2380"
    cluster = initial_cluster or ",".join(f"{name}={u.strip()}" for u in peer_urls.split(",") if u.strip())
    token = initial_cluster_token or "etcd-cluster"
    target = Path(data_dir).absolute()
    check_request(target, name, cluster, peer_urls, token, bump_revision, mark_compacted)
    return target, cluster, peer_urls, token, find_restore_tool(etcdutl)


def etcd_restore_dir(
    repo: Repository,
    ref: str,
    data_dir: str | os.PathLike[str],
    *,
    name: str,
    initial_cluster: str | None = None,
    initial_advertise_peer_urls: str | None = None,
    initial_cluster_token: str | None = None,
    bump_revision: int | None = None,
    mark_compacted: bool = False,
    etcdutl: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Turn a stored etcd snapshot file (``SNAP[:PATH]``) into a fresh data directory for member
    ``name`` with ``etcdutl snapshot restore`` (kubekeep.etcd.restore). Defaults as etcd's:
    peer URL ``http://localhost:2380``, initial cluster ``NAME=PEER_URLS``, token
    ``etcd-cluster``. The arguments and the tool are checked before the file is written to a
    temporary directory beside ``data_dir`` (removed afterwards)."""
    import tempfile

    from kubekeep.etcd.restore import restore_data_dir

    target, cluster, peer_urls, token, tool = checked_member(
        data_dir, name, initial_cluster, initial_advertise_peer_urls, initial_cluster_token,
        bump_revision, mark_compacted, etcdutl,
    )  # fmt: skip
    with repo.lock():
        snap, path, node = _etcd_file(repo, ref)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.UsageError(f"cannot create {target.parent}: {exc.strerror}") from None
        with tempfile.TemporaryDirectory(prefix=".kubekeep-etcd-restore-", dir=target.parent) as tmp:
            snapshot_file = Path(tmp) / "snapshot.db"
            with open(snapshot_file, "wb") as out:
                for piece in repo.read_file(node):
                    out.write(piece)
            result = restore_data_dir(
                snapshot_file, target, name, cluster, peer_urls, token, bump_revision, mark_compacted, tool.path
            )
    report = result.to_dict()
    report.pop("output", None)
    # the temporary file is gone: name the stored file instead
    report["command"] = [f"{snap.short_id}:{path}" if a == str(snapshot_file) else a for a in result.command]
    return {"snapshot": snap.id, "short_id": snap.short_id, "path": path, **report}
