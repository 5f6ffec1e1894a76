"""``k8s://[CONTEXT]``: a cluster's API objects as a source and a destination (docs/manifests.md).

URI: ``k8s://`` (the kubeconfig's current context), ``k8s://CONTEXT``, or ``k8s://in-cluster``
(the pod's service account). The kubeconfig is found as kubectl finds it (``--kubeconfig``,
``KUBECONFIG``, ``~/.kube/config``), and in a pod without one the service account is used.

One module per job: ``importer`` (backup: discovery, listing, one entry per object),
``exporter`` (restore into a cluster), ``tiers`` (the restore's order: tiers, owners first,
waiting for new CRDs and terminating namespaces), ``clean_files`` (restore to a directory as
clean YAML), ``buffer`` (what the two exporters share) and ``uri``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubekeep import errors
from kubekeep.connectors.k8s.clean_files import CleanFilesExporter
from kubekeep.connectors.k8s.exporter import K8sExporter
from kubekeep.connectors.k8s.importer import K8sImporter
from kubekeep.connectors.k8s.uri import SCHEME, parse_uri

__all__ = [
    "SCHEME",
    "CleanFilesExporter",
    "K8sExporter",
    "K8sImporter",
    "open_exporter",
    "open_importer",
    "parse_uri",
]


def open_importer(
    uri: str, *, context: str | None = None, kubeconfig: str | None = None, excludes: Iterable[str] = (), **options: Any
) -> K8sImporter:
    if list(excludes):
        raise errors.UsageError(
            "exclude patterns apply to fs: sources; for k8s:// use --exclude-namespace or --exclude-resource"
        )
    known = {
        "include_namespaces",
        "exclude_namespaces",
        "include_resources",
        "exclude_resources",
        "selector",
        "include_noisy",
        "concurrency",
        "page_size",
        "volumes",
    }
    unknown = sorted(set(options) - known)
    if unknown:
        raise errors.UsageError(f"option(s) {', '.join(unknown)} do not apply to k8s:// sources")
    return K8sImporter(context or parse_uri(uri), kubeconfig, **options)


def open_exporter(
    uri: str, *, context: str | None = None, kubeconfig: str | None = None, **options: Any
) -> K8sExporter:
    known = {
        "existing",
        "dry_run",
        "restore_status",
        "keep_managed_fields",
        "namespace_map",
        "snapshot_id",
        "concurrency",
    }
    unknown = sorted(set(options) - known)
    if unknown:
        raise errors.UsageError(f"option(s) {', '.join(unknown)} do not apply to k8s:// destinations")
    return K8sExporter(context or parse_uri(uri), kubeconfig, **options)
