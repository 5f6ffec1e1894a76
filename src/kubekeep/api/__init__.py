"""kubekeep's Python API: the one surface the CLI and the web UI are shells over.

Every function takes plain values or the typed options below, raises ``kubekeep.errors``
exceptions with one-line messages, and takes the repository lock its work needs. The types the
shells show (snapshots, tree nodes, diff entries, retention policies, reports, progress) are
re-exported here; the shells import nothing else of kubekeep but ``kubekeep.errors``
(``.importlinter``, contract "shells-through-api"). Connector option types whose modules load
the Kubernetes or gRPC client are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kubekeep.api.cluster import AGENT_HANDSHAKE_TIMEOUT, AGENT_LISTEN, CleanupReport, cleanup, serve_agent
from kubekeep.api.cluster_restore import ClaimResult, ClusterRestoreProgress, ClusterRestoreStats
from kubekeep.api.drills import DrillOptions, drill, drill_report, drills
from kubekeep.api.etcd import ETCD_SNAPSHOT_PATH, etcd_restore_dir, etcd_status
from kubekeep.api.manifests import ObjectChange, diff_manifests, is_manifests, summary
from kubekeep.api.metrics import RepositoryMetrics, RunMetrics, SourceMetrics, repository_metrics
from kubekeep.api.object_lock import (
    ObjectLockOptions,
    ObjectLockSettings,
    extend_locks,
    object_lock_settings,
)
from kubekeep.api.refs import split_ref
from kubekeep.api.repositories import (
    RepositoryOptions,
    add_key,
    init_repository,
    list_keys,
    open_repository,
    read_password,
    refresh,
    remove_key,
    unlock,
)
from kubekeep.api.snapshots import (
    ForgetReport,
    backup,
    cat,
    check,
    copy,
    diff,
    find_snapshot,
    forget,
    ls,
    prune,
    repair_index,
    repair_snapshots,
    restore,
    snapshots,
    stat,
)
from kubekeep.api.transforms import load_transforms
from kubekeep.connectors import DestinationOptions, SourceOptions, scheme_of
from kubekeep.engine.backup import Progress as BackupProgress
from kubekeep.engine.backup import ProgressCallback
from kubekeep.engine.check import CheckReport, DataSubset
from kubekeep.engine.diff import ADDED, METADATA, MODIFIED, REMOVED, TYPE_CHANGED, Change
from kubekeep.engine.drills import DrillCleanup, DrillNamespace, DrillObject, DrillRecord, DrillWorkload
from kubekeep.engine.entries import SnapshotKind
from kubekeep.engine.objectlock import ExtendReport
from kubekeep.engine.prune import PruneReport
from kubekeep.engine.repair import IndexRepairReport, SnapshotsRepairReport
from kubekeep.engine.repository import KeyListing, Repository
from kubekeep.engine.restore import NodeFilter, RestoreStats
from kubekeep.engine.retention import Decision, Policy
from kubekeep.engine.snapshot import DamagedSnapshot, Snapshot
from kubekeep.engine.tree import DIR, FILE, SYMLINK, Node
from kubekeep.manifests.api_versions import parse_api_version_map
from kubekeep.manifests.fielddiff import FieldChange
from kubekeep.manifests.layout import NAMESPACES_DIR
from kubekeep.manifests.layout import parse_path as parse_object_path
from kubekeep.manifests.selection import ObjectSelector, parse_namespace_map
from kubekeep.manifests.serialization import dump as dump_object
from kubekeep.manifests.serialization import load as load_object
from kubekeep.manifests.summary import ClusterSummary, pod_phase_totals
from kubekeep.units import human_duration, human_size, parse_period, parse_timeout

if TYPE_CHECKING:
    from kubekeep.connectors.etcd import EtcdSourceOptions
    from kubekeep.connectors.fs import FsDestinationOptions, FsSourceOptions
    from kubekeep.connectors.k8s.options import (
        ClusterVolumeOptions,
        ManifestsDestinationOptions,
        ManifestsSourceOptions,
        RestoreVolumeOptions,
    )
    from kubekeep.connectors.pvc import VolumeOptions
    from kubekeep.connectors.s3 import S3DestinationOptions
    from kubekeep.kube.pods import HelperOptions
    from kubekeep.manifests.transforms import Transforms

#: option types imported on first use: name -> module
_LAZY = {
    "FsSourceOptions": "kubekeep.connectors.fs",
    "FsDestinationOptions": "kubekeep.connectors.fs",
    "EtcdSourceOptions": "kubekeep.connectors.etcd",
    "S3DestinationOptions": "kubekeep.connectors.s3",
    "ManifestsSourceOptions": "kubekeep.connectors.k8s.options",
    "ManifestsDestinationOptions": "kubekeep.connectors.k8s.options",
    "ClusterVolumeOptions": "kubekeep.connectors.k8s.options",
    "RestoreVolumeOptions": "kubekeep.connectors.k8s.options",
    "VolumeOptions": "kubekeep.connectors.pvc",
    "HelperOptions": "kubekeep.kube.pods",
    "Transforms": "kubekeep.manifests.transforms",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kubekeep.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ExtendReport",
    "ObjectLockOptions",
    "ObjectLockSettings",
    "extend_locks",
    "object_lock_settings",
    "ADDED",
    "AGENT_HANDSHAKE_TIMEOUT",
    "AGENT_LISTEN",
    "DIR",
    "ETCD_SNAPSHOT_PATH",
    "FILE",
    "METADATA",
    "MODIFIED",
    "NAMESPACES_DIR",
    "REMOVED",
    "SYMLINK",
    "TYPE_CHANGED",
    "BackupProgress",
    "Change",
    "CheckReport",
    "CleanupReport",
    "ClaimResult",
    "ClusterRestoreProgress",
    "ClusterRestoreStats",
    "ClusterSummary",
    "ClusterVolumeOptions",
    "DamagedSnapshot",
    "DataSubset",
    "DrillCleanup",
    "DrillNamespace",
    "DrillObject",
    "DrillOptions",
    "DrillRecord",
    "DrillWorkload",
    "DestinationOptions",
    "Decision",
    "EtcdSourceOptions",
    "FieldChange",
    "ForgetReport",
    "FsDestinationOptions",
    "FsSourceOptions",
    "HelperOptions",
    "IndexRepairReport",
    "KeyListing",
    "ManifestsDestinationOptions",
    "ManifestsSourceOptions",
    "Node",
    "NodeFilter",
    "ObjectChange",
    "ObjectSelector",
    "Policy",
    "ProgressCallback",
    "PruneReport",
    "Repository",
    "RepositoryMetrics",
    "RepositoryOptions",
    "RestoreStats",
    "RestoreVolumeOptions",
    "RunMetrics",
    "S3DestinationOptions",
    "Snapshot",
    "SnapshotKind",
    "SourceOptions",
    "SnapshotsRepairReport",
    "SourceMetrics",
    "Transforms",
    "VolumeOptions",
    "add_key",
    "backup",
    "cat",
    "check",
    "cleanup",
    "copy",
    "diff",
    "diff_manifests",
    "drill",
    "drill_report",
    "drills",
    "dump_object",
    "etcd_restore_dir",
    "etcd_status",
    "find_snapshot",
    "forget",
    "human_duration",
    "human_size",
    "init_repository",
    "is_manifests",
    "list_keys",
    "load_object",
    "load_transforms",
    "ls",
    "open_repository",
    "parse_api_version_map",
    "parse_namespace_map",
    "parse_object_path",
    "parse_period",
    "parse_timeout",
    "pod_phase_totals",
    "prune",
    "read_password",
    "refresh",
    "remove_key",
    "repair_index",
    "repair_snapshots",
    "repository_metrics",
    "restore",
    "scheme_of",
    "serve_agent",
    "snapshots",
    "split_ref",
    "stat",
    "summary",
    "unlock",
]
