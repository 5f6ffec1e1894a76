"""Copying snapshots between repositories, deduplicated in the destination.

Blob ids are keyed per repository, so copied data is re-identified under the destination's key
and trees are rewritten bottom-up; chunk boundaries stay as the source cut them. A snapshot
already copied (the destination holds one whose ``original`` is its id) is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from kubekeep.engine.pack import DATA, TREE
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from kubekeep.engine.tree import DIR, FILE, encode_tree
from kubekeep.engine.writer import BlobWriter


class _Copier:
    def __init__(self, src: Repository, dst: Repository, writer: BlobWriter) -> None:
        self.src, self.dst, self.writer = src, dst, writer
        self.blob_map: dict[bytes, bytes] = {}
        self.tree_map: dict[bytes, bytes] = {}

    def blobs(self, blob_ids: list[bytes]) -> list[bytes]:
        """The destination ids of a file's blobs, copying the ones not copied yet (read in runs
        with ``read_blobs``: one request per run of neighbouring blobs, not one per blob)."""
        todo = list(dict.fromkeys(b for b in blob_ids if b not in self.blob_map))
        for blob_id, plain in zip(todo, self.src.read_blobs(todo), strict=True):
            self.blob_map[blob_id] = self.writer.save(DATA, plain)
        return [self.blob_map[b] for b in blob_ids]

    def tree(self, tree_id: bytes) -> bytes:
        new = self.tree_map.get(tree_id)
        if new is None:
            nodes = [replace(n) for n in self.src.load_tree(tree_id)]
            for node in nodes:
                if node.type == DIR and node.subtree is not None:
                    node.subtree = self.tree(node.subtree)
                elif node.type == FILE:
                    node.content = self.blobs(node.content)
            new = self.tree_map[tree_id] = self.writer.save(TREE, encode_tree(nodes))
        return new


def run_copy(
    src: Repository, dst: Repository, snaps: list[Snapshot], progress: Callable[[Snapshot, str], None] | None = None
) -> list[tuple[Snapshot, Snapshot | None]]:
    """Copy ``snaps``; returns ``(source snapshot, new snapshot or None if already there)``."""
    present = {s.original for s in dst.snapshots(skip_damaged=True) if s.original}
    results: list[tuple[Snapshot, Snapshot | None]] = []
    with BlobWriter(dst) as writer:
        copier = _Copier(src, dst, writer)
        for snap in snaps:
            if snap.id in present:
                results.append((snap, None))
                if progress:
                    progress(snap, "skipped (already copied)")
                continue
            root = copier.tree(bytes.fromhex(snap.tree))
            writer.flush()
            new = replace(snap, tree=root.hex(), original=snap.id, parent=None, id="")
            dst.save_snapshot(new)
            results.append((snap, new))
            if progress:
                progress(snap, f"copied as {new.short_id}")
    return results
