"""Pinned upstream versions of everything the test environment builds or fetches.

This is the only place versions are recorded; the binary cache directory is keyed
on :func:`cache_key`, so bumping any version here triggers a fresh build. Helm is the
exception: it is not part of the control plane and builds into ``helm-<version>/`` of its
own (``testenv.build.helm_dir``), so bumping it rebuilds Helm only. So is the newer
Kubernetes of the second cluster (:data:`NEWER_KUBERNETES_VERSION`, ``kubernetes-<version>/``),
and the S3 server of the storage tests (:data:`MINIO_VERSION`, ``minio-<version>/``).
"""

from __future__ import annotations

#: ``k8s.io/kubernetes`` release: kube-apiserver, kube-controller-manager,
#: kube-scheduler and kubectl are built from it.
KUBERNETES_VERSION = "v1.34.4"

#: A newer ``k8s.io/kubernetes`` release for the second cluster of the migration tests
#: (``testenv.cluster.Cluster(kubernetes="newer")``): its kube-apiserver,
#: kube-controller-manager and kube-scheduler, with the pinned etcd, kwok and kubectl. The
#: newest release the Go module proxy serves here whose module builds with the local Go
#: (its go.mod says ``go 1.26.0``). Not in :func:`cache_key`: it builds into
#: ``kubernetes-<version>/`` of its own (``testenv.build.newer_kubernetes_dir``).
NEWER_KUBERNETES_VERSION = "v1.37.2"

#: ``go.etcd.io/etcd/{server,etcdctl,etcdutl}/v3`` release.
ETCD_VERSION = "v3.6.16"

#: ``sigs.k8s.io/kwok`` release (simulated nodes and pod lifecycle).
KWOK_VERSION = "v0.8.0"

#: ``github.com/kubernetes-csi/external-snapshotter/client/v8`` release whose
#: ``config/crd/`` holds the VolumeSnapshot CRDs.
SNAPSHOTTER_CLIENT_VERSION = "v8.7.0"

#: ``helm.sh/helm/v4`` release (``cmd/helm``): the chart tests' ``helm``. Not in :func:`cache_key`.
HELM_VERSION = "v4.3.2"

#: ``github.com/minio/minio``: the S3-compatible server the storage, S3 and end-to-end tests run
#: against (versioning, Object Lock retention, IAM users and policies; docs in testenv/README.md).
#: MinIO tags its releases ``RELEASE.<date>``, not semver, so the Go module proxy serves it by
#: pseudo-version: this is the newest it serves (commit 7aac2a2c5b7c of 2026-02-12). Its go.mod
#: has no replace directives. Not in :func:`cache_key`: it builds into ``minio-<version>/``.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

#: ``github.com/distribution/distribution/v3``: the CNCF distribution registry the OCI storage
#: backend's tests run against (tests/support/registry.py), built with a main of ours that links
#: only the filesystem storage driver and the htpasswd and token access controllers. The newest
#: release the Go module proxy serves here (its go.mod says ``go 1.26.0``, no replace
#: directives). Not in :func:`cache_key`: it builds into ``registry-<version>/``.
REGISTRY_VERSION = "v3.1.2"

#: ``github.com/restic/restic`` release: the benchmark's main peer (bench/bench_engine.py), built
#: on first use by ``testenv.build.ensure_restic`` into ``restic-<version>/``. Not in
#: :func:`cache_key` and not part of ``python -m testenv build``: CI does not need it.
RESTIC_VERSION = "v0.19.0"

#: Go directive written into the generated build modules (must be <= local Go).
GO_DIRECTIVE = "1.26.0"


def staging_version(kubernetes_version: str = KUBERNETES_VERSION) -> str:
    """Return the ``k8s.io/*`` staging module version matching a Kubernetes release.

    ``v1.34.4`` maps to ``v0.34.4``.
    """
    major, minor, patch = kubernetes_version.lstrip("v").split(".", 2)
    if major != "1":
        raise ValueError(f"unexpected Kubernetes version {kubernetes_version!r}")
    return f"v0.{minor}.{patch}"


def cache_key() -> str:
    """Directory name (``<version>``) for this combination of pinned versions."""
    return f"k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}_snap-{SNAPSHOTTER_CLIENT_VERSION}"


def as_dict() -> dict[str, str]:
    """The control plane's pinned versions, e.g. for state files and ``python -m testenv env``."""
    return {
        "kubernetes": KUBERNETES_VERSION,
        "etcd": ETCD_VERSION,
        "kwok": KWOK_VERSION,
        "external-snapshotter-client": SNAPSHOTTER_CLIENT_VERSION,
    }
