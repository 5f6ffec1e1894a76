"""Restore of a manifests snapshot into a directory: clean YAML files, not a raw copy.

``CleanFilesExporter`` wraps the fs exporter so that the objects come out ready for
``kubectl apply`` or a GitOps repository (``--raw`` restores bypass it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubekeep.connectors.k8s.buffer import BufferingExporter, ObjectBuffer, require_manifests
from kubekeep.connectors.k8s.importer import DIR_MODE, FILE_MODE
from kubekeep.engine.entries import Entry, EntryType, Exporter, SourceInfo
from kubekeep.manifests import cleaning, layout, planning, serialization
from kubekeep.manifests.transforms import Transforms


class CleanFilesExporter(BufferingExporter):
    """Writes the objects of a manifests snapshot as clean YAML through another exporter (fs):
    cleaned as for a restore (``manifests.cleaning``), without cluster-owned objects and objects
    their controllers recreate, namespaces mapped in content and paths, transformed as a
    restore into a cluster would (``manifests.transforms``). Other files of the
    snapshot (discovery.json, version.json) are left out."""

    scheme = "fs"

    def __init__(
        self,
        inner: Exporter,
        *,
        namespace_map: Mapping[str, str] | None = None,
        restore_status: bool = False,
        keep_managed_fields: bool = False,
        transforms: Transforms | None = None,
    ) -> None:
        self.inner = inner
        self.transforms = transforms
        self.opts = cleaning.CleanOptions(
            restore_status=restore_status,
            keep_managed_fields=keep_managed_fields,
            namespace_map=dict(namespace_map or {}),
        )
        self.buffer = ObjectBuffer()
        self._results: list[dict[str, Any]] = []

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:
        require_manifests(source)
        self.inner.begin(source, metadata, snapshot_id=snapshot_id)

    def finish(self) -> list[str]:
        mtimes = self.buffer.mtimes
        made: set[str] = set()
        for p in planning.plan(self.buffer.objects(), self.opts, transform=self.transforms):
            line = p.report()
            if p.skip is not None:
                self._results.append({**line, "action": "skipped", "reason": p.skip})
                continue
            if p.failed is not None:  # a transform could not be applied: no file
                self._results.append({**line, "action": "failed", "reason": p.failed})
                continue
            path = layout.remap_path(p.path, self.opts.namespace_map)
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in made:
                    made.add(d)
                    self.inner.directory(Entry(d, EntryType.DIR, mode=DIR_MODE))
            data = serialization.dump(p.obj)
            self.inner.file(
                Entry(path, EntryType.FILE, mode=FILE_MODE, size=len(data), mtime_ns=mtimes[p.path]), [data]
            )
            self._results.append({**line, "path": path, "action": "written"})
        return self.inner.finish()

    def results(self) -> list[dict[str, Any]]:
        return self._results

    def close(self) -> None:
        self.inner.close()
