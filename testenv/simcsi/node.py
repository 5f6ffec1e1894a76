"""The simulated node's registration: the Node object, its heartbeat (Lease and Ready
condition, so the node lifecycle controller never taints it), and the CSI driver's
CSIDriver and CSINode objects, as the node plugin's registrar would create them."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from testenv.simcsi.api import SimApi, SimApiError, now, path_of

#: node label the hostpath driver reports as its topology (and puts into PV node affinity)
TOPOLOGY_KEY = "topology.hostpath.csi/node"
#: the node's taint: only pods that tolerate it run here (a shared test cluster's other pods,
#: say the seeded Deployments, stay on kwok's nodes)
TAINT_KEY = "simcsi.kubekeep.test/node"
TOLERATION = {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
HEARTBEAT_S = 10.0


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeAgent:
    def __init__(
        self,
        api: SimApi,
        stop: threading.Event,
        log: Callable[[str], None],
        *,
        name: str,
        ip: str,
        kubelet_port: int,
        drivers: list[str],
    ) -> None:
        self.api = api
        self.stop = stop
        self.log = log
        self.name = name
        self.ip = ip
        self.kubelet_port = kubelet_port
        self.drivers = drivers
        self._thread = threading.Thread(target=self._beat, name="simcsi-node-heartbeat", daemon=True)

    def register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    TOPOLOGY_KEY: self.name,
                    "kubekeep.test/simcsi": "true",
                },
            },
            "spec": {"taints": [{"key": TAINT_KEY, "effect": "NoSchedule"}]},
        }
        self.api.create(path_of("v1", "nodes"), node, exist_ok=True)
        self._status()
        for driver in self.drivers:
            self.api.apply(
                path_of("storage.k8s.io/v1", "csidrivers", name=driver),
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "CSIDriver",
                    "metadata": {"name": driver},
                    "spec": {
                        "attachRequired": False,
                        "podInfoOnMount": True,
                        "fsGroupPolicy": "File",
                        "volumeLifecycleModes": ["Persistent"],
                    },
                },
            )
        self.api.apply(
            path_of("storage.k8s.io/v1", "csinodes", name=self.name),
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "CSINode",
                "metadata": {"name": self.name},
                "spec": {
                    "drivers": [{"name": d, "nodeID": self.name, "topologyKeys": [TOPOLOGY_KEY]} for d in self.drivers]
                },
            },
        )
        self._lease()
        self._thread.start()

    def _status(self) -> None:
        stamp = now()
        conditions = [
            {
                "type": t,
                "status": "False",
                "reason": f"KubeletHasSufficient{t.removesuffix('Pressure')}",
                "message": "simulated",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
            for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ] + [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "simulated kubelet is ready",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        ]
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        self.api.merge(
            path_of("v1", "nodes", name=self.name, sub="status"),
            {
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": self.ip},
                        {"type": "Hostname", "address": self.name},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
                    "capacity": capacity,
                    "allocatable": capacity,
                    "conditions": conditions,
                    "phase": "Running",
                    "nodeInfo": {
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "kubeletVersion": "simcsi",
                        "containerRuntimeVersion": "simcsi://1",
                        "kernelVersion": "",
                        "osImage": "simcsi",
                        "bootID": "",
                        "machineID": "",
                        "systemUUID": "",
                        "kubeProxyVersion": "",
                    },
                }
            },
        )

    def _lease(self) -> None:
        path = path_of("coordination.k8s.io/v1", "leases", "kube-node-lease", self.name)
        self.api.apply(
            path,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": _micro_now()},
            },
        )

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self._lease()
                self._status()
            except (SimApiError, OSError) as exc:
                self.log(f"node heartbeat failed: {exc}")

    def unregister(self) -> None:
        self._thread.join(timeout=2)
        for path in (
            path_of("storage.k8s.io/v1", "csinodes", name=self.name),
            path_of("coordination.k8s.io/v1", "leases", "kube-node-lease", self.name),
            path_of("v1", "nodes", name=self.name),
        ):
            try:
                self.api.delete(path)
            except (SimApiError, OSError):
                pass
