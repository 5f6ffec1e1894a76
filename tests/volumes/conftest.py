"""Fixtures for the volumes layer: the simulated CSI node side on the local control plane, a
namespace it serves, claims with data, and a ``kubekeep`` runner pointed at the cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep.kube import cleanup
from kubekeep.kube.pods import DEFAULT_IMAGE
from testenv import bootstrap
from testenv.cluster import Cluster
from testenv.rest import ApiError, RestClient, resource_path
from testenv.simcsi import TAINT_KEY, TOLERATION, SimCSI
from tests.cli.helpers import KK, RepoSpec, init_fast, wait_for

SNAP = "snapshot.storage.k8s.io/v1"


@pytest.fixture(scope="module")
def simcsi(cluster: Cluster) -> Iterator[SimCSI]:
    """The simulated CSI driver and node, per test module: the extra node is gone again for
    other tests on the shared cluster (some count its nodes)."""
    with SimCSI(cluster, agent_images=[DEFAULT_IMAGE]) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _simcsi_defaults(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts with the simulation's failure modes off."""
    yield
    if "simcsi" in request.fixturenames:
        sim: SimCSI = request.getfixturevalue("simcsi")
        sim.settings.__init__()  # type: ignore[misc]


class Kube:
    """The test's view of one namespace: create claims and pods, wait for them, inspect."""

    def __init__(self, cluster: Cluster, sim: SimCSI, namespace: str) -> None:
        self.cluster = cluster
        self.sim = sim
        self.ns = namespace
        self.rest: RestClient = cluster.rest()

    def claim(
        self,
        name: str,
        *,
        size: str = "1Gi",
        block: bool = False,
        storage_class: str = bootstrap.STORAGE_CLASS,
        wait: bool = True,
    ) -> Path | None:
        """Create a claim and wait until it is bound; its data directory (or image file)."""
        spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": size}},
        }
        if block:
            spec["volumeMode"] = "Block"
        self.rest.create(
            resource_path("v1", "persistentvolumeclaims", self.ns),
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": spec,
            },
        )
        if not wait:
            return None
        assert wait_for(lambda: self.phase(name) == "Bound", timeout=30), f"claim {name} not bound"
        return self.sim.volume_path(self.ns, name)

    def phase(self, claim: str) -> str:
        try:
            obj = self.rest.get(resource_path("v1", "persistentvolumeclaims", self.ns, claim))
        except ApiError:
            return ""
        return str((obj.get("status") or {}).get("phase", ""))

    def pod(
        self,
        name: str,
        claim: str,
        *,
        image: str,
        annotations: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> dict[str, Any]:
        """An application pod using ``claim`` at /data; waits until it runs."""
        container: dict[str, Any] = {
            "name": "app",
            "image": image,
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }
        if command:
            container["command"] = command
        self.rest.create(
            resource_path("v1", "pods", self.ns),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": self.ns, "annotations": annotations or {}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "tolerations": [TOLERATION],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        )
        assert wait_for(lambda: self.get("pods", name).get("status", {}).get("phase") == "Running", timeout=30)
        return self.get("pods", name)

    def get(self, plural: str, name: str, api: str = "v1") -> dict[str, Any]:
        try:
            return dict(self.rest.get(resource_path(api, plural, self.ns, name)))
        except ApiError as err:
            if err.status == 404:
                return {}
            raise

    def delete(self, plural: str, name: str, api: str = "v1") -> None:
        self.rest.delete(resource_path(api, plural, self.ns, name))

    def labelled(self) -> list[str]:
        """Every object a kubekeep run created that still exists (in this namespace, plus PVs)."""
        found = []
        for api, plural, namespaced in (
            ("v1", "pods", True),
            ("v1", "secrets", True),
            ("v1", "persistentvolumeclaims", True),
            (SNAP, "volumesnapshots", True),
            ("v1", "persistentvolumes", False),
        ):
            items = self.rest.get(
                resource_path(api, plural, self.ns if namespaced else None), labelSelector=cleanup.RUN_LABEL
            )["items"]
            found += [
                f"{plural}/{i['metadata']['name']}"
                for i in items
                if namespaced or (i["spec"].get("claimRef") or {}).get("namespace") == self.ns
            ]
        return found

    def snapshot_contents(self) -> list[str]:
        items = self.rest.get(resource_path(SNAP, "volumesnapshotcontents"))["items"]
        return [
            i["metadata"]["name"]
            for i in items
            if (i["spec"].get("volumeSnapshotRef") or {}).get("namespace") == self.ns
        ]

    def wait_clean(self, timeout: float = 30) -> None:
        """Until nothing of a kubekeep run is left here (objects, snapshot contents)."""
        ok = wait_for(lambda: not self.labelled() and not self.snapshot_contents(), timeout=timeout, interval=0.3)
        assert ok, f"left behind: {self.labelled()} {self.snapshot_contents()}"


@pytest.fixture
def kube(cluster: Cluster, simcsi: SimCSI, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """A fresh namespace the simulated driver serves; deleted afterwards."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")[:30].strip("-")
    name = f"v-{base}-{uuid.uuid4().hex[:5]}"
    rest = cluster.rest()
    rest.create(
        resource_path("v1", "namespaces"),
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {"kubekeep.test/test-namespace": "true", "simcsi.kubekeep.test/enabled": "true"},
            },
        },
    )
    k = Kube(cluster, simcsi, name)
    try:
        yield k
    finally:
        rest.delete(resource_path("v1", "namespaces", name=name))
        rest.close()
        k.rest.close()


@pytest.fixture
def kk(tmp_path: Path, cluster: Cluster) -> KK:
    """A ``kubekeep`` runner on a fresh local repository, with the cluster's kubeconfig."""
    spec = RepoSpec(str(tmp_path / "repo"))
    init_fast(spec, "pw")
    return KK(
        spec,
        password="pw",
        cache_dir=tmp_path / "cache",
        extra_env={"KUBECONFIG": str(cluster.kubeconfig), "KUBEKEEP_HELPER_TOLERATIONS": TAINT_KEY},
    )
