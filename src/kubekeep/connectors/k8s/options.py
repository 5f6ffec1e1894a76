"""What a ``k8s://`` backup and a manifests restore can be told (docs/manifests.md): built once
by the caller (the CLI from its flags) and handed to the connector unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubekeep import errors

if TYPE_CHECKING:  # the pvc connector imports the Kubernetes client: only when volumes are asked for
    from kubekeep.connectors import DestinationOptions
    from kubekeep.connectors.pvc.options import VolumeOptions
    from kubekeep.manifests.transforms import Transforms


def _no_transforms() -> Transforms:
    from kubekeep.manifests.transforms import Transforms  # jsonpatch: only when a restore is made

    return Transforms()


@dataclass(frozen=True)
class ClusterVolumeOptions:
    """``k8s:// --volumes``: the files of the claims, under ``volumes/<namespace>/<claim>/``."""

    #: only claims with these labels
    selector: str = ""
    #: claims prepared (snapshot, helper pod) at once
    parallel: int = 2
    #: how each volume is backed up (defaults if None)
    volume: VolumeOptions | None = None


@dataclass(frozen=True)
class RestoreVolumeOptions:
    """A restore into ``k8s://`` of a snapshot with volumes (``backup k8s:// --volumes``): the
    claims' data is written before the workloads that mount them are created
    (``kubekeep.api.cluster_restore``, docs/volumes.md)."""

    #: False: the manifests only, claims created empty (``--no-volumes``)
    enabled: bool = True
    #: ``pvc://`` snapshots (refs) whose data goes into the claims they were taken from, instead of
    #: the manifests snapshot's ``volumes/``
    volumes_from: tuple[str, ...] = ()
    #: claims written at once
    parallel: int = 2
    #: how each claim is written (helper pods, connection; defaults if None)
    volume: VolumeOptions | None = None


@dataclass(frozen=True)
class ManifestsSourceOptions:
    """A ``k8s://`` source: which cluster, and which of its objects."""

    context: str | None = None
    kubeconfig: str | None = None
    include_namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    include_resources: tuple[str, ...] = ()
    exclude_resources: tuple[str, ...] = ()
    selector: str | None = None
    include_noisy: bool = False
    #: list requests in flight
    concurrency: int = 8
    #: objects per list page (default: kube.listing's)
    page_size: int | None = None
    volumes: ClusterVolumeOptions | None = None


#: the options that only a restore into a cluster takes
CLUSTER_ONLY = ("existing", "dry_run", "concurrency", "context", "kubeconfig", "api_version_map")
#: the options that only clean YAML (and cluster) restores take, not ``raw`` files
CLEANING = ("namespace_map", "restore_status", "keep_managed_fields")
#: the transforms' options (``Transforms.given``): restores into a cluster and to clean YAML
TRANSFORMING = ("storage_class_map", "image_map", "transform")


@dataclass(frozen=True)
class ManifestsDestinationOptions:
    """A manifests snapshot restored into a cluster (``k8s://``), or to files: clean YAML for
    ``kubectl apply`` (``fs:``), or the stored files as they are (``raw``, or another destination).
    """

    context: str | None = None
    kubeconfig: str | None = None
    #: objects that exist already: left alone ("skip") or the snapshot applied over them ("update")
    existing: str = "skip"
    dry_run: bool = False
    restore_status: bool = False
    keep_managed_fields: bool = False
    namespace_map: Mapping[str, str] = field(default_factory=dict)
    #: requests in flight (default 64)
    concurrency: int | None = None
    #: to files: the snapshot's files as stored, not clean YAML
    raw: bool = False
    #: objects stored at group version OLD sent as NEW (``--api-version-map OLD=NEW``)
    api_version_map: Mapping[str, str] = field(default_factory=dict)
    #: the options of a destination other than k8s:// and fs: (e.g. VolumeOptions for pvc://)
    destination: DestinationOptions | None = None
    #: k8s://: the claims' data of a snapshot with volumes (default: from ``volumes/``, data first)
    volumes: RestoreVolumeOptions | None = None
    #: what the restore changes in the objects it creates (--storage-class-map, --image-map, --transform)
    transforms: Transforms = field(default_factory=_no_transforms)

    def __post_init__(self) -> None:
        if self.existing not in ("skip", "update"):
            raise errors.UsageError(f"--existing must be skip or update, not {self.existing!r}")

    def given(self) -> list[str]:
        """The names of the options set to something other than their defaults."""
        defaults = ManifestsDestinationOptions()
        given = [n for n in (*CLUSTER_ONLY, *CLEANING) if getattr(self, n) != getattr(defaults, n)]
        return given + self.transforms.given()
