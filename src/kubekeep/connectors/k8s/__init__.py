"""``k8s://[CONTEXT]``: a cluster's API objects as a source and a destination (docs/manifests.md).

URI: ``k8s://`` (the kubeconfig's current context), ``k8s://CONTEXT``, or ``k8s://in-cluster``
(the pod's service account). The kubeconfig is found as kubectl finds it (``--kubeconfig``,
``KUBECONFIG``, ``~/.kube/config``), and in a pod without one the service account is used.

One module per job: ``options`` (what a backup and a restore can be told), ``importer`` (backup: discovery, listing, one entry per object),
``exporter`` (restore into a cluster), ``tiers`` (the restore's order: tiers, owners first,
waiting for new CRDs and terminating namespaces), ``clean_files`` (restore to a directory as
clean YAML), ``buffer`` (what the two exporters share) and ``uri``. Importing the package
itself loads no Kubernetes client: the option types are light, the connector is loaded when opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubekeep import errors
from kubekeep.connectors.fs import FsDestinationOptions
from kubekeep.connectors.k8s.options import (
    CLEANING,
    CLUSTER_ONLY,
    TRANSFORMING,
    ClusterVolumeOptions,
    ManifestsDestinationOptions,
    ManifestsSourceOptions,
)
from kubekeep.connectors.k8s.uri import SCHEME, parse_uri

if TYPE_CHECKING:
    from kubekeep.connectors.k8s.exporter import K8sExporter
    from kubekeep.connectors.k8s.importer import K8sImporter
    from kubekeep.engine.entries import Exporter

__all__ = [
    "DESTINATION_OPTIONS",
    "SCHEME",
    "SOURCE_OPTIONS",
    "ClusterVolumeOptions",
    "ManifestsDestinationOptions",
    "ManifestsSourceOptions",
    "open_exporter",
    "open_importer",
    "open_manifests_exporter",
    "parse_uri",
]


SOURCE_OPTIONS = ManifestsSourceOptions
DESTINATION_OPTIONS = ManifestsDestinationOptions


def open_importer(uri: str, options: ManifestsSourceOptions) -> K8sImporter:
    from kubekeep.connectors.k8s.importer import K8sImporter
    from kubekeep.kube import listing

    return K8sImporter(
        options.context or parse_uri(uri),
        options.kubeconfig,
        include_namespaces=options.include_namespaces,
        exclude_namespaces=options.exclude_namespaces,
        include_resources=options.include_resources,
        exclude_resources=options.exclude_resources,
        selector=options.selector,
        include_noisy=options.include_noisy,
        concurrency=options.concurrency,
        page_size=options.page_size or listing.PAGE_SIZE,
        volumes=options.volumes,
    )


def open_exporter(uri: str, options: ManifestsDestinationOptions) -> K8sExporter:
    if options.raw:
        raise errors.UsageError("--raw applies to restores to files, not into a cluster (k8s://)")
    from kubekeep.connectors.k8s.exporter import K8sExporter

    return K8sExporter(
        options.context or parse_uri(uri),
        options.kubeconfig,
        existing=options.existing,
        dry_run=options.dry_run,
        restore_status=options.restore_status,
        keep_managed_fields=options.keep_managed_fields,
        namespace_map=options.namespace_map,
        concurrency=options.concurrency or 64,
        api_version_map=options.api_version_map,
        transforms=options.transforms,
    )


def open_manifests_exporter(destination: str, options: ManifestsDestinationOptions) -> Exporter:
    """Where a manifests snapshot goes: into a cluster (``k8s://``), as clean YAML files (``fs:``,
    private: the objects include Secrets), or as the stored files (``raw``, or another connector
    given ``options.destination``)."""
    from kubekeep import connectors  # the registry (this package is one of its entries)

    scheme = connectors.scheme_of(destination)
    if scheme == "k8s":
        return open_exporter(destination, options)
    transforming = [n for n in options.given() if n in TRANSFORMING]
    if transforming and (options.raw or scheme != "fs"):
        names = ", ".join("--" + n.replace("_", "-") for n in transforming)
        raise errors.UsageError(
            f"{names} apply(ies) to restores into a cluster (k8s://) or to clean YAML files (fs:), "
            + ("not to --raw file restores" if options.raw else f"not to {scheme}: destinations")
        )
    wrong = [n for n in options.given() if n in CLUSTER_ONLY or (options.raw and n in CLEANING)]
    if wrong:
        names = ", ".join("--" + n.replace("_", "-") for n in wrong)
        raise errors.UsageError(
            f"{names} apply(ies) to restores into a cluster (k8s://)"
            + (", not to --raw file restores" if options.raw else "")
        )
    inner_options = FsDestinationOptions(private=True) if scheme == "fs" else options.destination
    inner = connectors.open_exporter(destination, inner_options)
    if options.raw or scheme != "fs":
        return inner
    from kubekeep.connectors.k8s.clean_files import CleanFilesExporter

    return CleanFilesExporter(
        inner,
        namespace_map=options.namespace_map,
        restore_status=options.restore_status,
        keep_managed_fields=options.keep_managed_fields,
        transforms=options.transforms,
    )
