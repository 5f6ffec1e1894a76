"""Connectors: where snapshots come from (importers) and go to (exporters).

Each connector is one module (or package) exposing ``open_importer(uri, options)`` and/or
``open_exporter(uri, options)``, and the dataclasses those take as ``SOURCE_OPTIONS`` and
``DESTINATION_OPTIONS`` (``FsSourceOptions``, ``ManifestsDestinationOptions``, ``VolumeOptions``,
...). The caller builds one once (the CLI from its flags) and it reaches the connector unchanged.
This registry maps a URI's scheme to that module and imports it only when used (the Kubernetes and
gRPC clients are slow to import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, TypeAlias

from kubekeep import errors
from kubekeep.engine.entries import Exporter, Importer

if TYPE_CHECKING:  # the connectors' modules load their clients (gRPC, Kubernetes): only when used
    from kubekeep.connectors.etcd import EtcdSourceOptions
    from kubekeep.connectors.fs import FsDestinationOptions, FsSourceOptions
    from kubekeep.connectors.k8s.options import ManifestsDestinationOptions, ManifestsSourceOptions
    from kubekeep.connectors.pvc.options import VolumeOptions
    from kubekeep.connectors.s3 import S3DestinationOptions

#: what a source connector takes (its module's ``SOURCE_OPTIONS``)
SourceOptions: TypeAlias = "FsSourceOptions | EtcdSourceOptions | ManifestsSourceOptions | VolumeOptions"
#: what a destination connector takes (its module's ``DESTINATION_OPTIONS``)
DestinationOptions: TypeAlias = (
    "FsDestinationOptions | S3DestinationOptions | ManifestsDestinationOptions | VolumeOptions"
)

IMPORTERS: dict[str, str] = {
    "fs": "kubekeep.connectors.fs",
    "k8s": "kubekeep.connectors.k8s",
    "etcd": "kubekeep.connectors.etcd",
    "etcds": "kubekeep.connectors.etcd",
    "pvc": "kubekeep.connectors.pvc",
}
EXPORTERS: dict[str, str] = {
    "fs": "kubekeep.connectors.fs",
    "k8s": "kubekeep.connectors.k8s",
    "pvc": "kubekeep.connectors.pvc",
    "s3": "kubekeep.connectors.s3",
}


def scheme_of(uri: str) -> str:
    """``fs`` for paths and ``fs:PATH``; otherwise the part before ``:`` (``k8s://ctx`` -> ``k8s``)."""
    if not uri:
        raise errors.UsageError("empty source or destination")
    head, sep, _ = uri.partition(":")
    if not sep or "/" in head or head in ("", ".") or len(head) == 1:
        return "fs"  # a plain path (also "C:"-like single letters are not schemes)
    return head.lower()


def _module(uri: str, table: dict[str, str], what: str) -> Any:
    scheme = scheme_of(uri)
    name = table.get(scheme)
    if name is None:
        raise errors.UsageError(f"unknown {what} {uri!r}: expected one of {', '.join(s + ':' for s in sorted(table))}")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise errors.UsageError(f"the {scheme}: {what} is not available in this kubekeep build") from None
        raise


def _options(module: Any, attr: str, options: object | None, uri: str, what: str) -> object:
    """``options``, or the connector's defaults; refused if they are another connector's."""
    kind: type = getattr(module, attr)
    if options is None:
        return kind()
    if not isinstance(options, kind):
        raise errors.UsageError(
            f"{type(options).__name__} does not apply to {scheme_of(uri)}: {what}s (they take {kind.__name__})"
        )
    return options


def open_importer(uri: str, options: SourceOptions | None = None) -> Importer:
    """The importer for ``uri``, with its connector's ``SOURCE_OPTIONS`` (defaults if None)."""
    module = _module(uri, IMPORTERS, "source")
    importer: Importer = module.open_importer(uri, _options(module, "SOURCE_OPTIONS", options, uri, "source"))
    return importer


def open_exporter(uri: str, options: DestinationOptions | None = None) -> Exporter:
    """The exporter for ``uri``, with its connector's ``DESTINATION_OPTIONS`` (defaults if None)."""
    module = _module(uri, EXPORTERS, "destination")
    exporter: Exporter = module.open_exporter(uri, _options(module, "DESTINATION_OPTIONS", options, uri, "destination"))
    return exporter
