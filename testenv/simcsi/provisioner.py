"""The simulated external-provisioner + CSI controller: binds PVCs of our storage classes to new
volumes (empty, or restored from a VolumeSnapshot ``dataSource``) and deletes released ones.

As the real sidecar: it acts on claims the PV controller annotated with
``volume.kubernetes.io/storage-provisioner: <driver>``, creates a PV named ``pvc-<claim uid>``
with ``spec.csi`` (driver, volumeHandle), node affinity to the node holding the data and a
claimRef, and leaves the binding (PVC Pending -> Bound) to kube-controller-manager. A PV that
is Released with reclaim policy Delete has its volume and its object deleted.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from testenv.simcsi.api import SNAPSHOT_GROUP, Obj, SimApi, path_of
from testenv.simcsi.node import TOPOLOGY_KEY
from testenv.simcsi.storage import BackingStore
from testenv.simcsi.watching import Controller, Key, Source, meta

PROVISIONER_ANNOTATION = "volume.kubernetes.io/storage-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
PV_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"

_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_bytes(text: str) -> int:
    text = str(text)
    for unit, factor in _UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(float(text))


class Provisioner(Controller):
    name = "provisioner"

    def __init__(
        self,
        api: SimApi,
        stop: threading.Event,
        log: Callable[[str], None],
        *,
        node: str,
        drivers: set[str],
        store: BackingStore,
        enabled_label: str,
    ) -> None:
        super().__init__(api, stop, log)
        self.node = node
        self.drivers = drivers
        self.store = store
        self.enabled_label = enabled_label

    def sources(self) -> list[Source]:
        return [
            Source("/api/v1/persistentvolumeclaims", lambda o: ("pvc", meta(o)["namespace"], meta(o)["name"])),
            Source("/api/v1/persistentvolumes", self._pv_key),
        ]

    def _pv_key(self, pv: Obj) -> Key | None:
        if meta(pv).get("annotations", {}).get(PROVISIONED_BY) in self.drivers:
            return ("pv", meta(pv)["name"])
        return None

    def reconcile(self, key: Key) -> float | None:
        if key[0] == "pv":
            return self._reconcile_pv(key[1])
        return self._reconcile_pvc(key[1], key[2])

    def _reconcile_pvc(self, ns: str, name: str) -> float | None:
        pvc = self.api.get(path_of("v1", "persistentvolumeclaims", ns, name))
        if pvc is None or meta(pvc).get("deletionTimestamp") or pvc["spec"].get("volumeName"):
            return None
        driver = meta(pvc).get("annotations", {}).get(PROVISIONER_ANNOTATION)
        if driver not in self.drivers:
            return None
        namespace = self.api.get(path_of("v1", "namespaces", name=ns)) or {}
        if meta(namespace).get("labels", {}).get(self.enabled_label) != "true":
            return None  # not ours to serve on a shared test cluster
        pv_name = f"pvc-{meta(pvc)['uid']}"
        if self.api.get(path_of("v1", "persistentvolumes", name=pv_name)) is not None:
            return None  # provisioned; the PV controller binds
        sc = self.api.get(path_of("storage.k8s.io/v1", "storageclasses", name=pvc["spec"].get("storageClassName", "")))
        if sc is None:
            return 2.0
        block = pvc["spec"].get("volumeMode") == "Block"
        size = quantity_bytes(pvc["spec"]["resources"]["requests"]["storage"])
        source = None
        data_source = pvc["spec"].get("dataSourceRef") or pvc["spec"].get("dataSource")
        if data_source and data_source.get("kind") == "VolumeSnapshot":
            found = self._snapshot_source(pvc, data_source["name"], size)
            if found is None:
                return 1.0
            source, restore_size = found
            size = max(size, restore_size)
        elif data_source:
            self.api.event(
                pvc,
                "ProvisioningFailed",
                f"data source kind {data_source.get('kind')} is not supported",
                warning=True,
                component=driver,
            )
            return None
        self.api.event(
            pvc,
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{ns}/{name}"',
            component=driver,
        )
        volume_id = str(uuid.uuid4())
        self.store.create_volume(volume_id, block=block, size=size, source=source)
        pv: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "annotations": {
                    PROVISIONED_BY: driver,
                    "volume.kubernetes.io/provisioner-deletion-secret-name": "",
                    "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
                },
                "finalizers": [PV_FINALIZER],
            },
            "spec": {
                "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
                "accessModes": pvc["spec"].get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                "storageClassName": pvc["spec"]["storageClassName"],
                "volumeMode": "Block" if block else "Filesystem",
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": ns,
                    "name": name,
                    "uid": meta(pvc)["uid"],
                    "resourceVersion": meta(pvc)["resourceVersion"],
                },
                "csi": {
                    "driver": driver,
                    "volumeHandle": volume_id,
                    "volumeAttributes": {
                        "kind": "block" if block else "directory",
                        "storage.kubernetes.io/csiProvisionerIdentity": f"simcsi-{self.node}",
                    },
                    **({} if block else {"fsType": "ext4"}),
                },
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": TOPOLOGY_KEY, "operator": "In", "values": [self.node]}]}
                        ]
                    }
                },
            },
        }
        self.api.create(path_of("v1", "persistentvolumes"), pv, exist_ok=True)
        self.api.event(pvc, "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}", component=driver)
        return None

    def _snapshot_source(self, pvc: Obj, snapshot: str, size: int) -> tuple[Any, int] | None:
        ns = meta(pvc)["namespace"]
        vs = self.api.get(path_of(SNAPSHOT_GROUP, "volumesnapshots", ns, snapshot))
        status = (vs or {}).get("status") or {}
        if vs is None or not status.get("readyToUse"):
            self.api.event(
                pvc,
                "ProvisioningFailed",
                f"error getting handle for DataSource Type VolumeSnapshot by "
                f"Name {snapshot}: snapshot {snapshot} is not Ready",
                warning=True,
            )
            return None
        content = self.api.get(
            path_of(SNAPSHOT_GROUP, "volumesnapshotcontents", name=status["boundVolumeSnapshotContentName"])
        )
        handle = ((content or {}).get("status") or {}).get("snapshotHandle")
        if handle is None:
            return None
        restore = quantity_bytes(status.get("restoreSize") or "0")
        if size < restore:
            self.api.event(
                pvc,
                "ProvisioningFailed",
                f"requested volume size {size} is less than the size {restore} for the source snapshot {snapshot}",
                warning=True,
            )
            return None
        return self.store.snapshot_path(handle), restore

    def _reconcile_pv(self, name: str) -> float | None:
        path = path_of("v1", "persistentvolumes", name=name)
        pv = self.api.get(path)
        if pv is None:
            return None
        phase = (pv.get("status") or {}).get("phase")
        released = phase in ("Released", "Failed") and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
        if not (released or meta(pv).get("deletionTimestamp")):
            return None
        if meta(pv).get("deletionTimestamp") and phase not in ("Released", "Failed", "Available"):
            return None  # still bound: pv-protection holds it
        self.store.delete_volume(pv["spec"]["csi"]["volumeHandle"])
        finalizers = [f for f in meta(pv).get("finalizers", []) if f != PV_FINALIZER]
        if finalizers != meta(pv).get("finalizers", []):
            self.api.merge(
                path, {"metadata": {"finalizers": finalizers or None, "resourceVersion": meta(pv)["resourceVersion"]}}
            )
        if not meta(pv).get("deletionTimestamp"):
            self.api.delete(path)
        return None
