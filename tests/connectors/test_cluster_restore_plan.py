"""The planning half of a data-first cluster restore, without a cluster: the phases of a plan,
which claims the snapshot's selection restores and where their data is (sizes from the tree),
``--volumes-from`` matching, and which workloads wait for or are held by which claim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep import errors
from kubekeep.api import cluster_restore
from kubekeep.connectors.k8s.options import ManifestsDestinationOptions, RestoreVolumeOptions
from kubekeep.connectors.k8s.tiers import split_phases
from kubekeep.engine.backup import run_backup
from kubekeep.engine.entries import Entry, EntryType, Importer, SnapshotKind, SourceInfo, with_directories
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from kubekeep.manifests import layout, serialization
from kubekeep.manifests.cleaning import CleanOptions
from kubekeep.manifests.planning import StoredObject, plan
from kubekeep.storage.local import LocalBackend
from tests.cli.helpers import FAST_KDF


class _Source(Importer):
    def __init__(self, kind: SnapshotKind, files: list[Entry], extra: dict[str, Any] | None = None) -> None:
        self.kind, self.files, self.extra = kind, files, extra or {}

    def source(self) -> SourceInfo:
        return SourceInfo(
            "k8s://" if self.kind == SnapshotKind.MANIFESTS else "pvc://x/y", self.kind.value, "h", self.extra
        )

    def entries(self) -> Iterator[Entry]:
        yield from with_directories(sorted(self.files, key=lambda e: e.path))


def _obj(api_version: str, kind: str, resource: str, name: str, ns: str, **rest: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": ns}, **rest}


def _object_entry(obj: dict[str, Any], resource: str) -> Entry:
    group = layout.split_api_version(obj["apiVersion"])[0]
    meta = obj["metadata"]
    data = serialization.dump(obj)
    return Entry(
        layout.object_path(group, resource, meta.get("namespace", ""), meta["name"]),
        EntryType.FILE,
        size=len(data),
        data=data,
        attrs=layout.object_attrs(obj, group, resource),
    )


def _claim(name: str, ns: str = "shop") -> dict[str, Any]:
    return _obj("v1", "PersistentVolumeClaim", "persistentvolumeclaims", name, ns, spec={"accessModes": ["RWO"]})


def _file(path: str, size: int) -> Entry:
    return Entry(path, EntryType.FILE, size=size, data=b"x" * size)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = Repository.init(LocalBackend(tmp_path / "repo"), "pw", kdf=FAST_KDF, no_cache=True)
    yield r
    r.close()


@pytest.fixture
def snap(repo: Repository) -> Snapshot:
    files = [
        _object_entry(_claim("db"), "persistentvolumeclaims"),
        _object_entry(_claim("logs"), "persistentvolumeclaims"),
        _object_entry(_claim("empty"), "persistentvolumeclaims"),
        _object_entry(_claim("other", "ops"), "persistentvolumeclaims"),
        _file("volumes/shop/db/base/1", 1000),
        _file("volumes/shop/db/base/2", 24),
        _file("volumes/shop/logs/app.log", 300),
        _file("volumes/ops/other/x", 5),
    ]
    return run_backup(repo, _Source(SnapshotKind.MANIFESTS, files))


def test_claims_their_target_namespaces_and_bytes_to_write(repo: Repository, snap: Snapshot) -> None:
    claims = cluster_restore._snapshot_claims(repo, snap, None, {"shop": "shop-copy"})
    cluster_restore._attach_data(repo, snap, claims, ())
    got = {(c.source_namespace, c.name): c for c in claims}
    assert sorted(got) == [("ops", "other"), ("shop", "db"), ("shop", "empty"), ("shop", "logs")]
    db = got[("shop", "db")]
    assert (db.namespace, db.data_path, db.result.bytes_planned, db.result.files_planned) == (
        "shop-copy",
        "volumes/shop/db",
        1024,
        2,
    )
    assert db.result.source == f"{snap.short_id}:/volumes/shop/db"
    assert got[("ops", "other")].namespace == "ops"
    empty = got[("shop", "empty")]
    assert empty.data is None and empty.result.action == "no data"


def test_the_selection_decides_which_claims(repo: Repository, snap: Snapshot) -> None:
    only_shop_db = cluster_restore._snapshot_claims(repo, snap, lambda rel, node: rel.endswith("/db.yaml"), {})
    assert [(c.source_namespace, c.name) for c in only_shop_db] == [("shop", "db")]


def test_volumes_from_replaces_the_snapshots_volumes_and_is_checked(repo: Repository, snap: Snapshot) -> None:
    db = run_backup(repo, _Source(SnapshotKind.VOLUME, [_file("only", 77)], {"namespace": "shop", "name": "db"}))
    claims = cluster_restore._snapshot_claims(repo, snap, None, {})
    cluster_restore._attach_data(repo, snap, claims, [db.id])
    [c] = [c for c in claims if c.name == "db"]
    assert c.data is not None and c.data.id == db.id and c.data_path == "" and c.result.bytes_planned == 77
    assert c.result.source == db.short_id

    stranger = run_backup(repo, _Source(SnapshotKind.VOLUME, [_file("f", 1)], {"namespace": "shop", "name": "nope"}))
    with pytest.raises(errors.UsageError, match="does not restore"):
        cluster_restore._attach_data(repo, snap, cluster_restore._snapshot_claims(repo, snap, None, {}), [stranger.id])
    with pytest.raises(errors.UsageError, match="not a volume snapshot"):
        cluster_restore._attach_data(repo, snap, cluster_restore._snapshot_claims(repo, snap, None, {}), [snap.id])
    twice = run_backup(repo, _Source(SnapshotKind.VOLUME, [_file("g", 2)], {"namespace": "shop", "name": "db"}))
    with pytest.raises(errors.UsageError, match="both hold claim shop/db"):
        cluster_restore._attach_data(
            repo, snap, cluster_restore._snapshot_claims(repo, snap, None, {}), [db.id, twice.id]
        )


def test_when_the_data_comes_too(repo: Repository, snap: Snapshot) -> None:
    opts = ManifestsDestinationOptions()
    assert cluster_restore.wanted(repo, snap, "", opts)
    assert not cluster_restore.wanted(repo, snap, "/namespaces/shop", opts)
    assert not cluster_restore.wanted(
        repo, snap, "", ManifestsDestinationOptions(volumes=RestoreVolumeOptions(enabled=False))
    )
    with pytest.raises(errors.UsageError, match="--volumes-from"):
        cluster_restore.wanted(
            repo, snap, "/namespaces", ManifestsDestinationOptions(volumes=RestoreVolumeOptions(volumes_from=("x",)))
        )
    bare = run_backup(repo, _Source(SnapshotKind.MANIFESTS, [_object_entry(_claim("db"), "persistentvolumeclaims")]))
    assert not cluster_restore.wanted(repo, bare, "", opts)
    keep = cluster_restore.without_volumes(None)
    assert not keep("volumes", None) and not keep("volumes/shop/db/x", None) and keep("namespaces/volumes", None)


def _stored(obj: dict[str, Any], resource: str, uid: str = "", owner: str = "") -> StoredObject:
    obj = {**obj, "metadata": {**obj["metadata"], "uid": uid or f"uid-{obj['metadata']['name']}"}}
    if owner:
        obj["metadata"]["ownerReferences"] = [{"kind": "X", "name": "o", "uid": owner}]
    entry = _object_entry(obj, resource)
    return StoredObject(entry.path, entry.attrs, obj)


def test_phases_and_holds() -> None:
    tmpl = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    sts = _obj(
        "apps/v1",
        "StatefulSet",
        "statefulsets",
        "web",
        "shop",
        spec={"template": tmpl, "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
    )
    api_tmpl = {
        **tmpl,
        "spec": {**tmpl["spec"], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "db"}}]},
    }
    api = _obj("apps/v1", "Deployment", "deployments", "api", "shop", spec={"template": api_tmpl})
    free = _obj("apps/v1", "Deployment", "deployments", "free", "shop", spec={"template": tmpl})
    cm = _obj("v1", "ConfigMap", "configmaps", "owned-by-api", "shop")
    objects = [
        _stored(_claim("db"), "persistentvolumeclaims"),
        _stored(_claim("data-web-0"), "persistentvolumeclaims"),
        _stored(_claim("data-web-1"), "persistentvolumeclaims"),
        _stored(sts, "statefulsets"),
        _stored(api, "deployments", uid="uid-api"),
        _stored(free, "deployments"),
        _stored(cm, "configmaps", owner="uid-api"),
    ]
    planned = plan(objects, CleanOptions())
    first, later = split_phases(planned)
    assert {p.name for p in first} == {"db", "data-web-0", "data-web-1"}
    # the ConfigMap waits for its owner, a workload: it goes in the second phase
    assert {p.name for p in later} == {"web", "api", "free", "owned-by-api"}

    def claim(name: str, action: str, reason: str = "") -> cluster_restore._Claim:
        c = cluster_restore._Claim("shop", name, "shop", f"namespaces/shop/core/persistentvolumeclaims/{name}.yaml")
        c.result = cluster_restore.ClaimResult("shop", name, action=action, reason=reason)
        return c

    claims = [
        claim("db", "failed", "helper pod did not start"),
        claim("data-web-0", "written"),
        claim("data-web-1", "written"),
    ]
    hold, waits = cluster_restore._holds(claims, later)
    held = {p.name: hold(p) for p in later}
    assert held["api"] == "claim shop/db has no data: helper pod did not start"
    assert held["web"] is None and held["free"] is None and held["owned-by-api"] is None
    [web] = [p for p in later if p.name == "web"]
    assert waits == {web.path: "shop/data-web-0, shop/data-web-1"}
    assert claims[0].result.workloads == ["Deployment shop/api"]
    assert claims[1].result.workloads == ["StatefulSet shop/web"]

    stats = cluster_restore.ClusterRestoreStats(
        results=[{"action": "not created", "kind": "Deployment", "namespace": "shop", "name": "api"}],
        claims=[c.result for c in claims],
    )
    assert stats.problem() == (
        "1 of 3 claims' data not restored (shop/db: helper pod did not start); "
        "1 workload(s) not created (Deployment shop/api)"
    )
    assert cluster_restore.ClusterRestoreStats(claims=[claims[1].result]).problem() is None
    assert stats.to_dict()["claims"][0]["name"] == "db"
