"""``pvc://[CONTEXT/]NAMESPACE/NAME``: the files in a PersistentVolumeClaim, as a source and a
destination (docs/volumes.md).

Backup (``PvcImporter``, :mod:`.claim_backup`): find the claim's CSI driver and a
VolumeSnapshotClass for it, run the pre-snapshot hooks, snapshot the claim, run the
post-snapshot hooks once the point in time is cut (:mod:`.consistency`), wait until the
snapshot is ready, provision a temporary claim from it, start a helper pod running the agent
with that claim mounted read-only (:mod:`.helper`), connect to it (port-forward through the
API server from outside the cluster, the pod's address from inside), and ingest its files:
the agent chunks and hashes them where they are and sends only chunks the repository lacks.
Snapshot, claim, Secret and pod are deleted at the end whatever happens; all carry labels so
``kubekeep cleanup`` finds what a killed run left. A claim without a CSI driver or without a
snapshot class is copied live (the claim itself, mounted read-only) only when asked
(``live=True``), with a warning that the copy is crash-consistent at best. A raw block claim
(``volumeMode: Block``) becomes one file, ``volume.img``.

Restore (``PvcExporter``, :mod:`.claim_restore`): into an existing claim, or a new one sized
and classed as given or as the snapshot recorded, through a helper pod mounting it
read-write. ``pvc://NAMESPACE`` restores a directory of claims (``volumes/<namespace>`` of a
cluster snapshot), one claim per subdirectory.

``ClusterVolumes`` (:mod:`.cluster`) is the volume part of a cluster backup: the files of each
selected claim under ``volumes/<namespace>/<claim>/``, volumes prepared in parallel with a
bound. URI, options and the shared cluster connection are in :mod:`.options`.
"""

from __future__ import annotations

from .claim_backup import PvcImporter, VolumeBackup, clean_claim
from .claim_restore import PvcExporter, VolumeRestore
from .cluster import VOLUMES_DIR, ClusterVolumes, cluster_volumes
from .options import SCHEME, KubeContext, VolumeOptions, parse_uri

__all__ = [
    "DESTINATION_OPTIONS",
    "SCHEME",
    "SOURCE_OPTIONS",
    "VOLUMES_DIR",
    "ClusterVolumes",
    "KubeContext",
    "PvcExporter",
    "PvcImporter",
    "VolumeBackup",
    "VolumeOptions",
    "VolumeRestore",
    "clean_claim",
    "cluster_volumes",
    "open_exporter",
    "open_importer",
    "parse_uri",
]


SOURCE_OPTIONS = VolumeOptions
DESTINATION_OPTIONS = VolumeOptions


def open_importer(uri: str, options: VolumeOptions) -> PvcImporter:
    return PvcImporter(uri, options)


def open_exporter(uri: str, options: VolumeOptions) -> PvcExporter:
    return PvcExporter(uri, options)
