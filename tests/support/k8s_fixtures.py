"""Fixtures for manifests tests against the local control plane: a repository, seeded
namespaces, and helpers to read a snapshot's objects and compare them after cleaning.

Loaded by the root conftest (``pytest_plugins``); ``seeded`` is module-scoped, so each test
module gets its own namespaces."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from kubekeep.manifests import layout, planning, serialization
from kubekeep.manifests.cleaning import CleanOptions
from testenv import seed
from testenv.cluster import Cluster
from testenv.rest import RestClient, resource_path
from tests.cli.helpers import FAST_KDF


@pytest.fixture
def manifests_repo(tmp_path: Path) -> Iterator[Repository]:
    opts = api.RepositoryOptions(str(tmp_path / "repo"), "pw", cache_dir=tmp_path / "cache")
    r = api.init_repository(opts, kdf=FAST_KDF)
    try:
        yield r
    finally:
        r.close()


@dataclass
class Seeded:
    """Namespaces filled by ``testenv.seed`` (default mix: ~27 objects each, Widgets included)."""

    cluster: Cluster
    namespaces: list[str]

    def rest(self) -> RestClient:
        return self.cluster.rest()

    def backup(self, repo: Repository, *, readonly: bool = False, **options: Any) -> Snapshot:
        kubeconfig = self.cluster.readonly_kubeconfig if readonly else self.cluster.kubeconfig
        return api.backup(repo, "k8s://", options=api.ManifestsSourceOptions(kubeconfig=str(kubeconfig), **options))

    def restore(
        self, repo: Repository, ref: str, *, select: api.ObjectSelector | None = None, **options: Any
    ) -> list[dict[str, Any]]:
        stats = api.restore(
            repo,
            ref,
            "k8s://",
            select=select,
            options=api.ManifestsDestinationOptions(kubeconfig=str(self.cluster.kubeconfig), **options),
        )
        return stats.results


@pytest.fixture(scope="module")
def seeded(cluster: Cluster) -> Iterator[Seeded]:
    """Seeded namespaces of this test module (a unique prefix), deleted afterwards."""
    prefix = f"m{uuid.uuid4().hex[:5]}-"
    result = seed.seed(cluster, prefix=prefix)
    seed.wait_for_workloads(cluster, result.namespaces, timeout=120)  # a settled cluster diffs to nothing
    client = cluster.rest()
    try:
        yield Seeded(cluster, result.namespaces)
    finally:
        for ns in result.namespaces:
            client.delete(resource_path("v1", "namespaces", name=ns))
        client.close()


def snapshot_objects(repo: Repository, snap: Snapshot, prefix: str = "") -> dict[str, Any]:
    """path -> object for every object file of ``snap`` (below ``prefix``)."""
    out = {}
    for path, node in api.ls(repo, f"{snap.id}:{prefix}", recursive=True):
        if node.type == "file" and layout.ref_of_attrs(node.attrs) is not None:
            out[path.lstrip("/")] = serialization.load(b"".join(api.cat(repo, f"{snap.id}:{path}")))
    return out


def restorable(repo: Repository, snap: Snapshot, namespace: str) -> dict[str, Any]:
    """The objects of ``namespace`` (and its Namespace object) a restore would create, cleaned
    as for a restore: what must come back equal. Keyed by (kind, name)."""
    objects = snapshot_objects(repo, snap, f"namespaces/{namespace}")
    ns_path = layout.object_path("", "namespaces", "", namespace)
    objects.update({p: o for p, o in snapshot_objects(repo, snap, "cluster/core/namespaces").items() if p == ns_path})
    stored = []
    for path, obj in objects.items():
        ref = layout.parse_path(path)
        assert ref is not None
        stored.append(planning.StoredObject(path, layout.object_attrs(obj, ref.group, ref.resource), obj))
    out = {}
    for p in planning.plan(stored, CleanOptions()):
        if p.skip is None:
            (p.obj["metadata"].get("labels") or {}).pop(planning.RESTORED_FROM_LABEL, None)
            if p.obj["metadata"].get("labels") == {}:
                del p.obj["metadata"]["labels"]
            out[(p.kind, p.name)] = p.obj
    return out


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def namespace_gone(client: RestClient, name: str) -> bool:
    try:
        client.get(resource_path("v1", "namespaces", name=name))
    except Exception as exc:  # noqa: BLE001 - ApiError 404
        return getattr(exc, "status", None) == 404
    return False
