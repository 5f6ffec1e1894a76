"""``SimCSI``: the simulated node side of a CSI hostpath driver, started against a test cluster.

One extra node (``simcsi-<id>``, not managed by kwok) with a kubelet that really runs pods (as
namespaced processes on this machine), a provisioner and a snapshot controller for the test
drivers, all as threads of the calling process watching the API. To the API they look like the
csi-driver-host-path deployment: the same objects, fields, phases and events.

Only claims in namespaces labelled ``simcsi.kubekeep.test/enabled=true`` are provisioned, so a
shared test cluster's other namespaces are left alone.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from testenv import bootstrap
from testenv.simcsi.api import SNAPSHOT_GROUP, Obj, SimApi, path_of
from testenv.simcsi.kubelet import ContainerStart, Kubelet, KubeletServer, self_signed
from testenv.simcsi.node import TOLERATION, NodeAgent
from testenv.simcsi.provisioner import Provisioner
from testenv.simcsi.runtime import Image, Runtime, host_image
from testenv.simcsi.snapshotter import Snapshotter
from testenv.simcsi.storage import BackingStore

if TYPE_CHECKING:
    from testenv.cluster import Cluster

ENABLED_LABEL = "simcsi.kubekeep.test/enabled"
#: a second CSI driver that has no VolumeSnapshotClass (for "no snapshot class" cases)
NOSNAP_DRIVER = "nosnap.csi.kubekeep.test"
NOSNAP_STORAGE_CLASS = "simcsi-nosnap"
SHELL_IMAGE = "registry.kubekeep.test/shell:1"
CRASH_IMAGE = "registry.kubekeep.test/crash:1"
NODE_IP = "127.0.0.1"


@dataclass
class Settings:
    """Failure modes and delays; tests change them while the simulation runs."""

    pod_start_delay: float = 0.0  # pods stay ContainerCreating this long (a slow image pull)
    snapshot_delay: float = 0.0  # snapshots become ready after this long
    hold_snapshots: bool = False  # snapshots never become ready
    snapshot_error: str = ""  # snapshots fail with this error


def kubekeep_source_root() -> str:
    """Where the kubekeep package's sources are (the agent image's contents)."""
    spec = importlib.util.find_spec("kubekeep")
    assert spec is not None and spec.origin is not None
    return str(Path(spec.origin).resolve().parents[1])


class SimCSI:
    def __init__(self, cluster: Cluster, *, agent_images: list[str], log: Any = None, root: Path | None = None) -> None:
        self.cluster = cluster
        self.node = f"simcsi-{uuid.uuid4().hex[:6]}"
        self.settings = Settings()
        self.messages: list[str] = []
        self._log_hook = log
        self._root = root or Path(tempfile.mkdtemp(prefix="kubekeep-simcsi-"))
        self._own_root = root is None
        self.drivers = {bootstrap.CSI_DRIVER, NOSNAP_DRIVER}
        # the kubekeep image: its entrypoint is the kubekeep command (helper pods pass `agent ...`,
        # CLI pods `command: [kubekeep, ...]`), run from the sources this process imports
        agent = host_image(
            entrypoint=("python", "-m", "kubekeep.cli.main"), python=True, pythonpath=(kubekeep_source_root(),)
        )
        self.images: dict[str, Image] = dict.fromkeys(agent_images, agent)
        self.images[SHELL_IMAGE] = host_image(cmd=("sleep", "infinity"))
        # starts (the pod is Running for a moment), then dies: the agent crashing after its start
        self.images[CRASH_IMAGE] = host_image(
            entrypoint=("sh", "-c", "sleep 1; echo 'fatal: simulated crash' >&2; exit 3")
        )
        self.store = BackingStore(self._root / "csi")
        self.stop_event = threading.Event()
        self.api = SimApi(cluster.api_client())
        self.runtime = Runtime(self._root / "pods", self.log)
        self.kubelet = Kubelet(
            self.api,
            self.stop_event,
            self.log,
            node=self.node,
            node_ip=NODE_IP,
            runtime=self.runtime,
            store=self.store,
            drivers=self.drivers,
            images=self.images,
            settings=self.settings,
        )
        cert, key = self_signed(self._root / "pki", NODE_IP)
        self.server = KubeletServer(self.kubelet, NODE_IP, cert, key)
        self.node_agent = NodeAgent(
            self.api,
            self.stop_event,
            self.log,
            name=self.node,
            ip=NODE_IP,
            kubelet_port=self.server.port,
            drivers=sorted(self.drivers),
        )
        self.provisioner = Provisioner(
            self.api,
            self.stop_event,
            self.log,
            node=self.node,
            drivers=self.drivers,
            store=self.store,
            enabled_label=ENABLED_LABEL,
        )
        self.snapshotter = Snapshotter(
            self.api, self.stop_event, self.log, drivers=self.drivers, store=self.store, settings=self.settings
        )

    def log(self, message: str) -> None:
        self.messages.append(message)
        if self._log_hook is not None:
            self._log_hook(message)

    def start(self) -> Self:
        self.api.apply(
            path_of("storage.k8s.io/v1", "storageclasses", name=NOSNAP_STORAGE_CLASS),
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": NOSNAP_STORAGE_CLASS},
                "provisioner": NOSNAP_DRIVER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
            },
        )
        self.server.start()
        self.node_agent.register()
        for controller in (self.kubelet, self.provisioner, self.snapshotter):
            controller.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for controller in (self.kubelet, self.provisioner, self.snapshotter):
            controller.join(timeout=5)
        self.kubelet.shutdown()
        self.server.stop()
        self.node_agent.unregister()
        self.api.close()
        if self._own_root:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for tests --------------------------------------------------------------------------
    def enable(self, namespace: str) -> None:
        """Let the simulated driver provision claims in ``namespace``."""
        self.api.merge(path_of("v1", "namespaces", name=namespace), {"metadata": {"labels": {ENABLED_LABEL: "true"}}})

    def volume_path(self, namespace: str, claim: str) -> Path:
        """Where a bound claim's data lives on this machine (to seed or inspect it)."""
        pvc = self.api.get(path_of("v1", "persistentvolumeclaims", namespace, claim))
        if pvc is None or not pvc["spec"].get("volumeName"):
            raise LookupError(f"claim {namespace}/{claim} is not bound")
        pv: Obj = self.api.get(path_of("v1", "persistentvolumes", name=pvc["spec"]["volumeName"]))
        return self.store.volume_path(pv["spec"]["csi"]["volumeHandle"])

    def container_starts(self, namespace: str | None = None) -> list[ContainerStart]:
        """Every container start on the node (of ``namespace``), oldest first, with what each
        claim the pod mounts held at that moment: proof of what an application saw first."""
        with self.kubelet.lock:
            starts = list(self.kubelet.starts)
        return [s for s in starts if namespace is None or s.namespace == namespace]

    def placement(self) -> Obj:
        """Pod spec fields that put a pod on this node (merge them into a pod template)."""
        return {"nodeSelector": {"kubernetes.io/hostname": self.node}, "tolerations": [dict(TOLERATION)]}

    def snapshot_count(self) -> int:
        """Snapshots held by the simulated driver (its data, not API objects)."""
        return sum(1 for _ in self.store.snapshots.iterdir())

    def snapshot_class_exists(self, driver: str) -> bool:
        items = self.api.get(path_of(SNAPSHOT_GROUP, "volumesnapshotclasses")).get("items", ())
        return any(c.get("driver") == driver for c in items)
