"""kubekeep's Python API: the one surface the CLI and the web UI are shells over.

Every function takes plain values or the typed options below, raises ``kubekeep.errors``
exceptions with one-line messages, and takes the repository lock its work needs. The types the
shells show (snapshots, tree nodes, diff entries, retention policies, reports, progress) are
re-exported here; the shells import nothing else of kubekeep but ``kubekeep.errors``
(``.importlinter``, contract "shells-through-api"). Every name is imported on first use
(PEP 562), so a command loads only the layers it calls: ``kubekeep backup`` of a directory
never imports the cluster, drill or restore-planning code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubekeep.api.backups import backup
    from kubekeep.api.cluster import AGENT_HANDSHAKE_TIMEOUT, AGENT_LISTEN, CleanupReport, cleanup, serve_agent
    from kubekeep.api.cluster_restore import ClaimResult, ClusterRestoreProgress, ClusterRestoreStats
    from kubekeep.api.etcd import ETCD_SNAPSHOT_PATH, etcd_restore_dir, etcd_status
    from kubekeep.api.etcd_following import FollowOptions, etcd_follow
    from kubekeep.api.etcd_replay import etcd_restore_point
    from kubekeep.api.etcd_timeline import RecoveryWindow, Timeline, recovery_windows, timelines
    from kubekeep.api.manifests import ObjectChange, diff_manifests, is_manifests, summary
    from kubekeep.api.metrics import RepositoryMetrics, RunMetrics, SourceMetrics, repository_metrics
    from kubekeep.api.object_lock import ObjectLockOptions, ObjectLockSettings, extend_locks, object_lock_settings
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
    from kubekeep.api.restore_drills import DrillOptions, drill, drill_report, drills
    from kubekeep.api.snapshot_ops import (
        ForgetReport,
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
    from kubekeep.kube.pods import HelperOptions
    from kubekeep.manifests.api_versions import parse_api_version_map
    from kubekeep.manifests.fielddiff import FieldChange
    from kubekeep.manifests.layout import NAMESPACES_DIR
    from kubekeep.manifests.layout import parse_path as parse_object_path
    from kubekeep.manifests.selection import ObjectSelector, parse_namespace_map
    from kubekeep.manifests.serialization import dump as dump_object
    from kubekeep.manifests.serialization import load as load_object
    from kubekeep.manifests.summary import ClusterSummary, pod_phase_totals
    from kubekeep.manifests.transforms import Transforms
    from kubekeep.units import human_duration, human_size, parse_period, parse_timeout

#: every offered name -> (module, attribute), imported on first use
_LAZY: dict[str, tuple[str, str]] = {
    "ADDED": ("kubekeep.engine.diff", "ADDED"),
    "AGENT_HANDSHAKE_TIMEOUT": ("kubekeep.api.cluster", "AGENT_HANDSHAKE_TIMEOUT"),
    "AGENT_LISTEN": ("kubekeep.api.cluster", "AGENT_LISTEN"),
    "BackupProgress": ("kubekeep.engine.backup", "Progress"),
    "Change": ("kubekeep.engine.diff", "Change"),
    "CheckReport": ("kubekeep.engine.check", "CheckReport"),
    "ClaimResult": ("kubekeep.api.cluster_restore", "ClaimResult"),
    "CleanupReport": ("kubekeep.api.cluster", "CleanupReport"),
    "ClusterRestoreProgress": ("kubekeep.api.cluster_restore", "ClusterRestoreProgress"),
    "ClusterRestoreStats": ("kubekeep.api.cluster_restore", "ClusterRestoreStats"),
    "ClusterSummary": ("kubekeep.manifests.summary", "ClusterSummary"),
    "ClusterVolumeOptions": ("kubekeep.connectors.k8s.options", "ClusterVolumeOptions"),
    "DIR": ("kubekeep.engine.tree", "DIR"),
    "DamagedSnapshot": ("kubekeep.engine.snapshot", "DamagedSnapshot"),
    "DataSubset": ("kubekeep.engine.check", "DataSubset"),
    "Decision": ("kubekeep.engine.retention", "Decision"),
    "DestinationOptions": ("kubekeep.connectors", "DestinationOptions"),
    "DrillCleanup": ("kubekeep.engine.drills", "DrillCleanup"),
    "DrillNamespace": ("kubekeep.engine.drills", "DrillNamespace"),
    "DrillObject": ("kubekeep.engine.drills", "DrillObject"),
    "DrillOptions": ("kubekeep.api.restore_drills", "DrillOptions"),
    "DrillRecord": ("kubekeep.engine.drills", "DrillRecord"),
    "DrillWorkload": ("kubekeep.engine.drills", "DrillWorkload"),
    "ETCD_SNAPSHOT_PATH": ("kubekeep.api.etcd", "ETCD_SNAPSHOT_PATH"),
    "EtcdSourceOptions": ("kubekeep.connectors.etcd", "EtcdSourceOptions"),
    "ExtendReport": ("kubekeep.engine.objectlock", "ExtendReport"),
    "FILE": ("kubekeep.engine.tree", "FILE"),
    "FieldChange": ("kubekeep.manifests.fielddiff", "FieldChange"),
    "ForgetReport": ("kubekeep.api.snapshot_ops", "ForgetReport"),
    "FsDestinationOptions": ("kubekeep.connectors.fs", "FsDestinationOptions"),
    "FsSourceOptions": ("kubekeep.connectors.fs", "FsSourceOptions"),
    "HelperOptions": ("kubekeep.kube.pods", "HelperOptions"),
    "IndexRepairReport": ("kubekeep.engine.repair", "IndexRepairReport"),
    "KeyListing": ("kubekeep.engine.repository", "KeyListing"),
    "METADATA": ("kubekeep.engine.diff", "METADATA"),
    "MODIFIED": ("kubekeep.engine.diff", "MODIFIED"),
    "ManifestsDestinationOptions": ("kubekeep.connectors.k8s.options", "ManifestsDestinationOptions"),
    "ManifestsSourceOptions": ("kubekeep.connectors.k8s.options", "ManifestsSourceOptions"),
    "NAMESPACES_DIR": ("kubekeep.manifests.layout", "NAMESPACES_DIR"),
    "Node": ("kubekeep.engine.tree", "Node"),
    "NodeFilter": ("kubekeep.engine.restore", "NodeFilter"),
    "ObjectChange": ("kubekeep.api.manifests", "ObjectChange"),
    "ObjectLockOptions": ("kubekeep.api.object_lock", "ObjectLockOptions"),
    "ObjectLockSettings": ("kubekeep.api.object_lock", "ObjectLockSettings"),
    "ObjectSelector": ("kubekeep.manifests.selection", "ObjectSelector"),
    "Policy": ("kubekeep.engine.retention", "Policy"),
    "ProgressCallback": ("kubekeep.engine.backup", "ProgressCallback"),
    "PruneReport": ("kubekeep.engine.prune", "PruneReport"),
    "REMOVED": ("kubekeep.engine.diff", "REMOVED"),
    "Repository": ("kubekeep.engine.repository", "Repository"),
    "RepositoryMetrics": ("kubekeep.api.metrics", "RepositoryMetrics"),
    "RepositoryOptions": ("kubekeep.api.repositories", "RepositoryOptions"),
    "RestoreStats": ("kubekeep.engine.restore", "RestoreStats"),
    "RestoreVolumeOptions": ("kubekeep.connectors.k8s.options", "RestoreVolumeOptions"),
    "RunMetrics": ("kubekeep.api.metrics", "RunMetrics"),
    "S3DestinationOptions": ("kubekeep.connectors.s3", "S3DestinationOptions"),
    "SYMLINK": ("kubekeep.engine.tree", "SYMLINK"),
    "Snapshot": ("kubekeep.engine.snapshot", "Snapshot"),
    "SnapshotKind": ("kubekeep.engine.entries", "SnapshotKind"),
    "SnapshotsRepairReport": ("kubekeep.engine.repair", "SnapshotsRepairReport"),
    "SourceMetrics": ("kubekeep.api.metrics", "SourceMetrics"),
    "SourceOptions": ("kubekeep.connectors", "SourceOptions"),
    "TYPE_CHANGED": ("kubekeep.engine.diff", "TYPE_CHANGED"),
    "Transforms": ("kubekeep.manifests.transforms", "Transforms"),
    "VolumeOptions": ("kubekeep.connectors.pvc", "VolumeOptions"),
    "add_key": ("kubekeep.api.repositories", "add_key"),
    "backup": ("kubekeep.api.backups", "backup"),
    "cat": ("kubekeep.api.snapshot_ops", "cat"),
    "check": ("kubekeep.api.snapshot_ops", "check"),
    "cleanup": ("kubekeep.api.cluster", "cleanup"),
    "copy": ("kubekeep.api.snapshot_ops", "copy"),
    "diff": ("kubekeep.api.snapshot_ops", "diff"),
    "diff_manifests": ("kubekeep.api.manifests", "diff_manifests"),
    "drill": ("kubekeep.api.restore_drills", "drill"),
    "drill_report": ("kubekeep.api.restore_drills", "drill_report"),
    "drills": ("kubekeep.api.restore_drills", "drills"),
    "dump_object": ("kubekeep.manifests.serialization", "dump"),
    "etcd_restore_dir": ("kubekeep.api.etcd", "etcd_restore_dir"),
    "etcd_status": ("kubekeep.api.etcd", "etcd_status"),
    "etcd_follow": ("kubekeep.api.etcd_following", "etcd_follow"),
    "FollowOptions": ("kubekeep.api.etcd_following", "FollowOptions"),
    "etcd_restore_point": ("kubekeep.api.etcd_replay", "etcd_restore_point"),
    "RecoveryWindow": ("kubekeep.api.etcd_timeline", "RecoveryWindow"),
    "Timeline": ("kubekeep.api.etcd_timeline", "Timeline"),
    "recovery_windows": ("kubekeep.api.etcd_timeline", "recovery_windows"),
    "timelines": ("kubekeep.api.etcd_timeline", "timelines"),
    "extend_locks": ("kubekeep.api.object_lock", "extend_locks"),
    "find_snapshot": ("kubekeep.api.snapshot_ops", "find_snapshot"),
    "forget": ("kubekeep.api.snapshot_ops", "forget"),
    "human_duration": ("kubekeep.units", "human_duration"),
    "human_size": ("kubekeep.units", "human_size"),
    "init_repository": ("kubekeep.api.repositories", "init_repository"),
    "is_manifests": ("kubekeep.api.manifests", "is_manifests"),
    "list_keys": ("kubekeep.api.repositories", "list_keys"),
    "load_object": ("kubekeep.manifests.serialization", "load"),
    "load_transforms": ("kubekeep.api.transforms", "load_transforms"),
    "ls": ("kubekeep.api.snapshot_ops", "ls"),
    "object_lock_settings": ("kubekeep.api.object_lock", "object_lock_settings"),
    "open_repository": ("kubekeep.api.repositories", "open_repository"),
    "parse_api_version_map": ("kubekeep.manifests.api_versions", "parse_api_version_map"),
    "parse_namespace_map": ("kubekeep.manifests.selection", "parse_namespace_map"),
    "parse_object_path": ("kubekeep.manifests.layout", "parse_path"),
    "parse_period": ("kubekeep.units", "parse_period"),
    "parse_timeout": ("kubekeep.units", "parse_timeout"),
    "pod_phase_totals": ("kubekeep.manifests.summary", "pod_phase_totals"),
    "prune": ("kubekeep.api.snapshot_ops", "prune"),
    "read_password": ("kubekeep.api.repositories", "read_password"),
    "refresh": ("kubekeep.api.repositories", "refresh"),
    "remove_key": ("kubekeep.api.repositories", "remove_key"),
    "repair_index": ("kubekeep.api.snapshot_ops", "repair_index"),
    "repair_snapshots": ("kubekeep.api.snapshot_ops", "repair_snapshots"),
    "repository_metrics": ("kubekeep.api.metrics", "repository_metrics"),
    "restore": ("kubekeep.api.snapshot_ops", "restore"),
    "scheme_of": ("kubekeep.connectors", "scheme_of"),
    "serve_agent": ("kubekeep.api.cluster", "serve_agent"),
    "snapshots": ("kubekeep.api.snapshot_ops", "snapshots"),
    "split_ref": ("kubekeep.api.refs", "split_ref"),
    "stat": ("kubekeep.api.snapshot_ops", "stat"),
    "summary": ("kubekeep.api.manifests", "summary"),
    "unlock": ("kubekeep.api.repositories", "unlock"),
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'kubekeep.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "etcd_follow",
    "FollowOptions",
    "etcd_restore_point",
    "RecoveryWindow",
    "Timeline",
    "recovery_windows",
    "timelines",
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
