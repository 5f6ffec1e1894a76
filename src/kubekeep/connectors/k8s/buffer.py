"""What both manifests exporters share: the selected objects collected until ``finish``.

A restore can only be ordered once every object is known (namespaces and CRDs first, owners
before what they own), so the cluster and the clean-files exporters buffer the objects of a
manifests snapshot and act on them all at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from kubekeep import errors
from kubekeep.engine.entries import Entry, Exporter, SnapshotKind, SourceInfo
from kubekeep.manifests import layout, planning, serialization


class ObjectBuffer:
    """Collects the selected objects (they are small) until ``finish``, parsing them as they
    arrive (on the engine's restore threads). Objects of resources that are never restored
    (``planning.CLUSTER_OWNED``) are not parsed: their attrs say all the plan needs."""

    def __init__(self) -> None:
        self.items: list[planning.StoredObject] = []
        self.mtimes: dict[str, int] = {}
        self.lock = threading.Lock()

    def add(self, entry: Entry, data: Iterable[bytes]) -> None:
        attrs = entry.attrs
        if (attrs.get("group", ""), attrs.get("resource", "")) in planning.CLUSTER_OWNED:
            meta = {
                "name": attrs.get("name", ""),
                **({"namespace": attrs["namespace"]} if attrs.get("namespace") else {}),
            }
            obj: Any = {"apiVersion": attrs.get("apiVersion", ""), "kind": attrs.get("kind", ""), "metadata": meta}
        else:
            content = b"".join(data)
            try:
                obj = serialization.load(content)
            except Exception as exc:  # noqa: BLE001 - a damaged or hand-edited file: say which
                raise errors.ConnectorError(f"{entry.path}: not a readable YAML object: {exc}") from None
            if not isinstance(obj, dict):
                raise errors.ConnectorError(f"{entry.path}: not a Kubernetes object")
        with self.lock:
            self.items.append(planning.StoredObject(entry.path, attrs, obj))
            self.mtimes[entry.path] = entry.mtime_ns

    def objects(self) -> list[planning.StoredObject]:
        return sorted(self.items, key=lambda o: o.path)


def require_manifests(source: SourceInfo) -> None:
    if source.kind != SnapshotKind.MANIFESTS:
        raise errors.UsageError(
            f"a {source.kind or 'non-manifests'} snapshot cannot be restored to k8s://; "
            "only manifests snapshots (taken from k8s://) can"
        )


class BufferingExporter(Exporter):
    """Collects a manifests snapshot's objects (directories and other files carry nothing to
    apply); subclasses act on them all at once in ``finish``, where ordering is known."""

    buffer: ObjectBuffer

    def directory(self, entry: Entry) -> None:
        pass

    def symlink(self, entry: Entry) -> None:
        pass

    def file(self, entry: Entry, data: Iterable[bytes]) -> None:
        if layout.ref_of_attrs(entry.attrs) is not None:
            self.buffer.add(entry, data)
