"""The simulated node's kubelet: runs the pods bound to the node (through the runtime) and
serves the kubelet API the apiserver proxies ``exec``, ``portforward`` and ``logs`` to.

Pods go Pending -> Running -> Succeeded/Failed with the status a kubelet reports (conditions,
pod IP, container states, exit codes, restart counts) and its events (Pulling, Pulled, Created,
Started, Failed, BackOff, FailedMount). An image the node does not know fails to pull
(ErrImagePull, then ImagePullBackOff), as a missing image in a registry does.

What a container gets, as from a real kubelet: env (``value``, ``valueFrom`` secretKeyRef /
configMapKeyRef / fieldRef, ``envFrom``), the ``KUBERNETES_SERVICE_*`` variables (pointing at
the test apiserver's own address: there is no kube-proxy for the ``kubernetes`` Service's
ClusterIP), volumes (claims, hostPath, emptyDir, secret, configMap, projected with a
service-account token from the TokenRequest API, so the API server's ServiceAccount admission
mounts ``kube-api-access-*`` at /var/run/secrets/kubernetes.io/serviceaccount as usual).
Tokens are not refreshed: pods here live minutes, tokens an hour.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from testenv.simcsi import websocket as ws
from testenv.simcsi.api import Obj, SimApi, SimApiError, now, path_of
from testenv.simcsi.runtime import (
    ContainerSpec,
    Image,
    Mount,
    Runtime,
    Sandbox,
    capabilities,
)
from testenv.simcsi.watching import Controller, Key, Source, meta

if TYPE_CHECKING:
    from testenv.simcsi.storage import BackingStore

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class PodState:
    uid: str
    first_seen: float
    sandbox: Sandbox | None = None
    pull_failures: int = 0
    restart_at: dict[str, float] = field(default_factory=dict)
    last_status: str = ""
    #: claim name -> its volume on this machine (directory, or image file of a block claim)
    claims: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerStart:
    """What a container's claims held at the moment it started (``Kubelet.starts``): for each
    claim the pod mounts, its files as relative path -> size (a block claim: ``"" -> size``)."""

    namespace: str
    pod: str
    uid: str
    container: str
    restarts: int
    time: float
    claims: dict[str, dict[str, int]]


def volume_listing(path: str) -> dict[str, int]:
    """The regular files under ``path`` (relative path -> size); a file itself: ``{"": size}``."""
    root = Path(path)
    if root.is_file():
        return {"": root.stat().st_size}
    listing: dict[str, int] = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            full = Path(directory) / name
            if full.is_file() and not full.is_symlink():
                listing[str(full.relative_to(root))] = full.stat().st_size
    return listing


class Kubelet(Controller):
    name = "kubelet"

    def __init__(
        self,
        api: SimApi,
        stop: threading.Event,
        log: Callable[[str], None],
        *,
        node: str,
        node_ip: str,
        runtime: Runtime,
        store: BackingStore,
        drivers: set[str],
        images: dict[str, Image],
        settings: Any,
    ) -> None:
        super().__init__(api, stop, log)
        self.node = node
        self.node_ip = node_ip
        self.runtime = runtime
        self.store = store
        self.drivers = drivers
        self.images = images
        self.settings = settings
        self.pods: dict[tuple[str, str], PodState] = {}
        self.lock = threading.Lock()
        #: every container start, with what its claims held then (for tests: data before the app)
        self.starts: list[ContainerStart] = []
        server = urlparse(api.server)
        #: where pods reach the apiserver (KUBERNETES_SERVICE_HOST / _PORT)
        self.api_host, self.api_port = server.hostname or "127.0.0.1", server.port or 443

    def sources(self) -> list[Source]:
        return [
            Source(
                "/api/v1/pods",
                lambda o: ("pod", meta(o)["namespace"], meta(o)["name"]),
                {"fieldSelector": f"spec.nodeName={self.node}"},
            )
        ]

    def sandbox(self, namespace: str, name: str) -> Sandbox | None:
        with self.lock:
            state = self.pods.get((namespace, name))
        return state.sandbox if state is not None else None

    def shutdown(self) -> None:
        with self.lock:
            states = list(self.pods.values())
            self.pods.clear()
        for state in states:
            if state.sandbox is not None:
                self.runtime.destroy(state.sandbox, grace=0.5)

    # -- reconcile --------------------------------------------------------------------------
    def reconcile(self, key: Key) -> float | None:
        _, ns, name = key
        path = path_of("v1", "pods", ns, name)
        pod = self.api.get(path)
        with self.lock:
            state = self.pods.get((ns, name))
        if pod is None or (state is not None and state.uid != meta(pod)["uid"]):
            self._forget(ns, name)
            if pod is None:
                return None
            state = None
        if pod["spec"].get("nodeName") != self.node:
            return None
        uid = meta(pod)["uid"]
        if meta(pod).get("deletionTimestamp"):
            self._forget(ns, name, grace=min(float(pod["spec"].get("terminationGracePeriodSeconds") or 1), 2.0))
            self.api.delete(path, {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
            return None
        phase = (pod.get("status") or {}).get("phase")
        if state is None:
            if phase in ("Succeeded", "Failed"):
                return None
            state = PodState(uid, time.monotonic())
            with self.lock:
                self.pods[(ns, name)] = state
        if state.sandbox is None:
            if phase in ("Succeeded", "Failed"):
                return None
            return self._start(pod, state)
        return self._sync(pod, state)

    def _forget(self, ns: str, name: str, grace: float = 1.0) -> None:
        with self.lock:
            state = self.pods.pop((ns, name), None)
        if state is not None and state.sandbox is not None:
            self.runtime.destroy(state.sandbox, grace=grace)

    # -- starting ---------------------------------------------------------------------------
    def _start(self, pod: Obj, state: PodState) -> float | None:
        containers = pod["spec"]["containers"]
        delay = float(self.settings.pod_start_delay)
        if time.monotonic() - state.first_seen < delay:
            self._status(pod, state, "Pending", [self._waiting(c, "ContainerCreating") for c in containers])
            return max(0.2, delay - (time.monotonic() - state.first_seen))
        missing = [c for c in containers if c["image"] not in self.images]
        if missing:
            state.pull_failures += 1
            reason = "ErrImagePull" if state.pull_failures % 2 else "ImagePullBackOff"
            image = missing[0]["image"]
            if reason == "ErrImagePull":
                self.api.event(pod, "Pulling", f'Pulling image "{image}"', component="kubelet")
                self.api.event(
                    pod,
                    "Failed",
                    f'Failed to pull image "{image}": rpc error: code = NotFound '
                    f'desc = failed to pull and unpack image "{image}": not found',
                    warning=True,
                    component="kubelet",
                )
            else:
                self.api.event(pod, "BackOff", f'Back-off pulling image "{image}"', warning=True, component="kubelet")
            statuses = [
                self._waiting(
                    c,
                    reason if c in missing else "ContainerCreating",
                    f'Back-off pulling image "{c["image"]}"' if c in missing else "",
                )
                for c in containers
            ]
            self._status(pod, state, "Pending", statuses)
            return 2.0
        try:
            mounts = self._volumes(pod)
        except _NotReady as exc:
            self.api.event(pod, "FailedMount", str(exc), warning=True, component="kubelet")
            self._status(pod, state, "Pending", [self._waiting(c, "ContainerCreating") for c in containers])
            return 1.0
        host_network = bool(pod["spec"].get("hostNetwork")) or not any(c.get("ports") for c in containers)
        ip = self.node_ip if host_network else self.runtime.ips.take()
        try:
            specs = [self._container(pod, c, mounts, ip) for c in containers]
        except _NotReady as exc:
            if not host_network:
                self.runtime.ips.give(ip)
            self.api.event(pod, "Failed", f"Error: {exc}", warning=True, component="kubelet")
            self._status(
                pod, state, "Pending", [self._waiting(c, "CreateContainerConfigError", str(exc)) for c in containers]
            )
            return 1.0
        try:
            sandbox = self.runtime.create_sandbox(meta(pod)["uid"], specs, ip, host_network=host_network)
        except BaseException:
            if not host_network:
                self.runtime.ips.give(ip)
            raise
        state.sandbox = sandbox
        state.claims = {
            v["persistentVolumeClaim"]["claimName"]: mounts[v["name"]][0]
            for v in pod["spec"].get("volumes") or ()
            if "persistentVolumeClaim" in v and v["name"] in mounts
        }
        for c in containers:
            self.api.event(
                pod, "Pulled", f'Container image "{c["image"]}" already present on machine', component="kubelet"
            )
            self._run(pod, sandbox, c["name"])
        return self._sync(pod, state)

    def _run(self, pod: Obj, sandbox: Sandbox, name: str) -> None:
        self._record_start(pod, name)
        self.runtime.start_container(sandbox, name)
        self.api.event(pod, "Created", f"Created container {name}", component="kubelet")
        self.api.event(pod, "Started", f"Started container {name}", component="kubelet")
        container = sandbox.containers[name]
        key = ("pod", meta(pod)["namespace"], meta(pod)["name"])
        proc = container.proc
        assert proc is not None

        def wait() -> None:
            proc.wait()
            self.enqueue(key)

        threading.Thread(target=wait, name=f"simcsi-wait-{name}", daemon=True).start()

    def _record_start(self, pod: Obj, name: str) -> None:
        ns, pod_name = meta(pod)["namespace"], meta(pod)["name"]
        with self.lock:
            state = self.pods.get((ns, pod_name))
        if state is None or state.sandbox is None:
            return
        record = ContainerStart(
            namespace=ns,
            pod=pod_name,
            uid=state.uid,
            container=name,
            restarts=state.sandbox.containers[name].restarts,
            time=time.time(),
            claims={claim: volume_listing(path) for claim, path in state.claims.items()},
        )
        with self.lock:
            self.starts.append(record)

    def _volumes(self, pod: Obj) -> dict[str, tuple[str, bool]]:
        """Host path and read-only flag of each pod volume."""
        ns = meta(pod)["namespace"]
        out: dict[str, tuple[str, bool]] = {}
        base = self.runtime.root / meta(pod)["uid"] / "volumes"
        for volume in pod["spec"].get("volumes") or ():
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]
                pvc = self.api.get(path_of("v1", "persistentvolumeclaims", ns, claim["claimName"]))
                if pvc is None or (pvc.get("status") or {}).get("phase") != "Bound":
                    raise _NotReady(
                        f'MountVolume.SetUp failed for volume "{name}": persistentvolumeclaim '
                        f'"{claim["claimName"]}" is not bound'
                    )
                pv = self.api.get(path_of("v1", "persistentvolumes", name=pvc["spec"]["volumeName"]))
                out[name] = (self._pv_path(pv, name), bool(claim.get("readOnly")))
            elif "hostPath" in volume:
                out[name] = (volume["hostPath"]["path"], False)
            elif "emptyDir" in volume:
                d = base / name
                d.mkdir(parents=True, exist_ok=True)
                d.chmod(0o777)
                out[name] = (str(d), False)
            elif "secret" in volume or "configMap" in volume or "projected" in volume:
                fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
                out[name] = (_write_files(base / name, self._volume_files(pod, volume), fs_group), True)
        return out

    def _pv_path(self, pv: Obj | None, name: str) -> str:
        spec = (pv or {}).get("spec") or {}
        csi = spec.get("csi")
        if csi and csi.get("driver") in self.drivers:
            path = self.store.volume_path(csi["volumeHandle"])
            if path.exists():
                return str(path)
        elif spec.get("hostPath"):
            return str(spec["hostPath"]["path"])
        elif spec.get("local"):
            return str(spec["local"]["path"])
        raise _NotReady(f'MountVolume.SetUp failed for volume "{name}": the volume cannot be attached on this node')

    def _volume_files(self, pod: Obj, volume: Obj) -> dict[str, tuple[bytes, int]]:
        """The files of a secret, configMap or projected volume: relative path -> (data, mode)."""
        name = volume["name"]
        if "secret" in volume:
            src = volume["secret"]
            return self._key_files(pod, name, "secret", src.get("secretName", ""), src, src.get("defaultMode", 0o644))
        if "configMap" in volume:
            src = volume["configMap"]
            return self._key_files(pod, name, "configmap", src.get("name", ""), src, src.get("defaultMode", 0o644))
        projected = volume["projected"]
        mode = projected.get("defaultMode", 0o644)
        files: dict[str, tuple[bytes, int]] = {}
        for source in projected.get("sources") or ():
            if "secret" in source:
                ref = source["secret"]
                files.update(self._key_files(pod, name, "secret", ref.get("name", ""), ref, mode))
            elif "configMap" in source:
                ref = source["configMap"]
                files.update(self._key_files(pod, name, "configmap", ref.get("name", ""), ref, mode))
            elif "serviceAccountToken" in source:
                ref = source["serviceAccountToken"]
                files[ref["path"]] = (self._token(pod, name, ref).encode(), mode)
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or ():
                    value = _field(pod, self.node, item.get("fieldRef", {}).get("fieldPath", ""))
                    files[item["path"]] = (value.encode(), item.get("mode", mode))
        return files

    def _key_files(
        self, pod: Obj, volume: str, kind: str, ref: str, source: Obj, mode: int
    ) -> dict[str, tuple[bytes, int]]:
        """A Secret's or ConfigMap's keys as files (all keys, or ``items`` key -> path)."""
        plural = "secrets" if kind == "secret" else "configmaps"
        obj = self.api.get(path_of("v1", plural, meta(pod)["namespace"], ref))
        optional = bool(source.get("optional"))
        if obj is None:
            if optional:
                return {}
            raise _NotReady(f'MountVolume.SetUp failed for volume "{volume}": {kind} "{ref}" not found')
        if kind == "secret":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = source.get("items")
        if not items:
            return {k: (v, mode) for k, v in data.items()}
        files = {}
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise _NotReady(
                    f'MountVolume.SetUp failed for volume "{volume}": '
                    f"couldn't find key {item['key']} in {kind} {meta(pod)['namespace']}/{ref}"
                )
            files[item["path"]] = (data[item["key"]], item.get("mode", mode))
        return files

    def _token(self, pod: Obj, volume: str, source: Obj) -> str:
        """A token for the pod's service account from the TokenRequest API, bound to the pod
        (the apiserver's own audiences unless the source names one)."""
        ns, account = meta(pod)["namespace"], pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [source["audience"]] if source.get("audience") else [],
                "expirationSeconds": int(source.get("expirationSeconds") or 3600),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta(pod)["name"],
                    "uid": meta(pod)["uid"],
                },
            },
        }
        try:
            answer = self.api.create(path_of("v1", "serviceaccounts", ns, account, "token"), request)
        except SimApiError as exc:
            raise _NotReady(f'MountVolume.SetUp failed for volume "{volume}": failed to fetch token: {exc}') from None
        return str(answer["status"]["token"])

    def _container(self, pod: Obj, c: Obj, volumes: dict[str, tuple[str, bool]], ip: str) -> ContainerSpec:
        image = self.images[c["image"]]
        env = dict(image.env)
        env["HOSTNAME"] = meta(pod)["name"]
        port = str(self.api_port)
        env.update(
            KUBERNETES_SERVICE_HOST=self.api_host,
            KUBERNETES_SERVICE_PORT=port,
            KUBERNETES_SERVICE_PORT_HTTPS=port,
            KUBERNETES_PORT=f"tcp://{self.api_host}:{port}",
        )
        for source in c.get("envFrom") or ():
            env.update(self._env_from(pod, source))
        for item in c.get("env") or ():
            value = self._env_value(pod, item, ip, env)
            if value is not None:
                env[item["name"]] = value
        env.setdefault("HOME", "/")  # what containerd sets for a user the image's /etc/passwd lacks
        command = c.get("command") or list(image.entrypoint)
        args = c.get("args") if c.get("command") or c.get("args") else list(image.cmd)
        argv = [_expand(a, env) for a in [*command, *(args or [])]]
        if not argv:
            raise _NotReady(f"container {c['name']} has no command")
        mounts = []
        for m in c.get("volumeMounts") or ():
            host, read_only = volumes[m["name"]]
            mounts.append(Mount(m["mountPath"], host, read_only or bool(m.get("readOnly"))))
        for d in c.get("volumeDevices") or ():
            host, read_only = volumes[d["name"]]
            mounts.append(Mount(d["devicePath"], host, read_only))
        pod_sc = pod["spec"].get("securityContext") or {}
        sc = c.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        if (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) and not uid:
            raise _NotReady("container has runAsNonRoot and image will run as root")
        return ContainerSpec(
            name=c["name"],
            image=image,
            argv=argv,
            env=env,
            workdir=c.get("workingDir") or "/",
            mounts=mounts,
            caps=capabilities(sc),
            uid=uid,
            gid=gid,
            no_new_privs=sc.get("allowPrivilegeEscalation") is False,
            groups=[
                *pod_sc.get("supplementalGroups", ()),
                *([pod_sc["fsGroup"]] if pod_sc.get("fsGroup") is not None else []),
            ],
            read_only_root=bool(sc.get("readOnlyRootFilesystem")),
            ports=[int(p["containerPort"]) for p in c.get("ports") or () if p.get("protocol", "TCP") == "TCP"],
        )

    def _env_from(self, pod: Obj, source: Obj) -> dict[str, str]:
        prefix = source.get("prefix", "")
        kind, ref = ("secret", source["secretRef"]) if "secretRef" in source else ("configmap", source["configMapRef"])
        obj = self.api.get(path_of("v1", f"{kind}s", meta(pod)["namespace"], ref["name"]))
        if obj is None:
            if ref.get("optional"):
                return {}
            raise _NotReady(f'{kind} "{ref["name"]}" not found')
        data = obj.get("data") or {}
        if kind == "secret":
            return {prefix + k: base64.b64decode(v).decode() for k, v in data.items()}
        return {prefix + k: str(v) for k, v in data.items()}

    def _env_value(self, pod: Obj, item: Obj, ip: str, env: dict[str, str]) -> str | None:
        """The variable's value; None when an optional reference is missing (left unset)."""
        if "value" in item:
            return _expand(str(item["value"]), env)
        source = item.get("valueFrom") or {}
        ns = meta(pod)["namespace"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = self.api.get(path_of("v1", "secrets", ns, ref["name"]))
            value = ((secret or {}).get("data") or {}).get(ref["key"])
            if value is None and ref.get("optional"):
                return None
            if value is None:
                raise _NotReady(
                    f'secret "{ref["name"]}" not found'
                    if secret is None
                    else f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}"
                )
            return base64.b64decode(value).decode()
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            cm = self.api.get(path_of("v1", "configmaps", ns, ref["name"])) or {}
            value = (cm.get("data") or {}).get(ref["key"])
            if value is None and ref.get("optional"):
                return None
            if value is None:
                raise _NotReady(f'configmap "{ref["name"]}" or its key {ref["key"]} not found')
            return str(value)
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            return {"status.podIP": ip, "status.hostIP": self.node_ip}.get(path) or _field(pod, self.node, path)
        return ""

    # -- status -----------------------------------------------------------------------------
    def _sync(self, pod: Obj, state: PodState) -> float | None:
        sandbox = state.sandbox
        assert sandbox is not None
        policy = pod["spec"].get("restartPolicy", "Always")
        statuses = []
        next_check: float | None = None
        for c in pod["spec"]["containers"]:
            container = sandbox.containers[c["name"]]
            proc = container.proc
            code = proc.poll() if proc is not None else None
            if proc is not None and code is not None and container.exit_code is None:
                container.exit_code = code
                container.finished_at = time.time()
                if policy == "Always" or (policy == "OnFailure" and code != 0):
                    backoff = min(1.0 * 2**container.restarts, 10.0)
                    state.restart_at[c["name"]] = time.monotonic() + backoff
                    self.api.event(
                        pod,
                        "BackOff",
                        f"Back-off restarting failed container {c['name']} in pod "
                        f"{meta(pod)['name']}_{meta(pod)['namespace']}({meta(pod)['uid']})",
                        warning=True,
                        component="kubelet",
                    )
            restart_at = state.restart_at.get(c["name"])
            if restart_at is not None and time.monotonic() >= restart_at:
                del state.restart_at[c["name"]]
                container.restarts += 1
                self._run(pod, sandbox, c["name"])
                code = None
            elif restart_at is not None:
                next_check = max(0.1, restart_at - time.monotonic())
            statuses.append(self._container_status(c, container, waiting_backoff=restart_at is not None))
        terminated = [s for s in statuses if "terminated" in s["state"]]
        if len(terminated) == len(statuses):
            failed = any(s["state"]["terminated"]["exitCode"] != 0 for s in terminated)
            phase = "Failed" if failed else "Succeeded"
        else:
            phase = "Running"
        self._status(pod, state, phase, statuses, sandbox=sandbox)
        return next_check

    def _container_status(self, c: Obj, container: Any, *, waiting_backoff: bool) -> Obj:
        base = {
            "name": c["name"],
            "image": c["image"],
            "imageID": f"simcsi://{c['image']}",
            "restartCount": container.restarts,
            "containerID": f"simcsi://{container.proc.pid if container.proc else 0}",
        }
        started = _ts(container.started_at)
        if waiting_backoff:
            return {
                **base,
                "ready": False,
                "started": False,
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container {c['name']}",
                    }
                },
                "lastState": {"terminated": {"exitCode": container.exit_code, "reason": "Error"}},
            }
        if container.exit_code is not None:
            return {
                **base,
                "ready": False,
                "started": False,
                "state": {
                    "terminated": {
                        "exitCode": container.exit_code,
                        "reason": "Completed" if container.exit_code == 0 else "Error",
                        "startedAt": started,
                        "finishedAt": _ts(container.finished_at),
                    }
                },
            }
        return {**base, "ready": True, "started": True, "state": {"running": {"startedAt": started}}}

    @staticmethod
    def _waiting(c: Obj, reason: str, message: str = "") -> Obj:
        waiting = {"reason": reason, **({"message": message} if message else {})}
        return {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": waiting},
        }

    def _status(
        self, pod: Obj, state: PodState, phase: str, statuses: list[Obj], *, sandbox: Sandbox | None = None
    ) -> None:
        ready = phase == "Running" and all(s.get("ready") for s in statuses)
        conditions: list[dict[str, Any]] = [
            {"type": "PodReadyToStartContainers", "status": "True" if sandbox else "False"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
            {"type": "ContainersReady", "status": "True" if ready else "False"},
            {"type": "PodScheduled", "status": "True"},
        ]
        status: Obj = {
            "phase": phase,
            "hostIP": self.node_ip,
            "hostIPs": [{"ip": self.node_ip}],
            "containerStatuses": statuses,
        }
        if sandbox is not None:
            status["podIP"] = sandbox.ip
            status["podIPs"] = [{"ip": sandbox.ip}]
        fingerprint = json.dumps([status, conditions], sort_keys=True)
        if fingerprint == state.last_status:
            return
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or ()}
        for c in conditions:
            same = old.get(c["type"], {}).get("status") == c["status"]
            c["lastTransitionTime"] = old[c["type"]].get("lastTransitionTime") if same else now()
            c["lastProbeTime"] = None
        status["conditions"] = conditions
        status["startTime"] = (pod.get("status") or {}).get("startTime") or now()
        try:
            self.api.merge(
                path_of("v1", "pods", meta(pod)["namespace"], meta(pod)["name"], "status"), {"status": status}
            )
            state.last_status = fingerprint
        except SimApiError as exc:
            if exc.status != 404:
                raise


class _NotReady(Exception):
    pass


def _field(pod: Obj, node: str, path: str) -> str:
    """A downward-API field of the pod (``metadata.labels['x']`` included)."""
    m = meta(pod)
    fields = {
        "metadata.name": m["name"],
        "metadata.namespace": m["namespace"],
        "metadata.uid": m["uid"],
        "spec.nodeName": node,
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
    }
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if keyed:
        return str((m.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    return str(fields.get(path, ""))


def _write_files(target: Path, files: dict[str, tuple[bytes, int]], fs_group: int | None) -> str:
    """Write a volume's files under ``target`` (replacing what an earlier attempt left), owned
    by root and, with an ``fs_group``, by that group (as the kubelet's volume ownership does)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for relative, (data, mode) in files.items():
        parts = PurePosixPath(relative).parts
        if not parts or ".." in parts or PurePosixPath(relative).is_absolute():
            raise _NotReady(f"invalid volume file path {relative!r}")
        path = target.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    if fs_group is not None:
        for path in [target, *target.rglob("*")]:
            os.chown(path, -1, fs_group)
    return str(target)


def _expand(text: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _ts(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the kubelet API ------------------------------------------------------------------------


class KubeletServer:
    """HTTPS on the node's address: /exec, /portForward and /containerLogs for the apiserver."""

    def __init__(self, kubelet: Kubelet, host: str, cert: Path, key: Path) -> None:
        self.kubelet = kubelet
        handler = type("Handler", (_Handler,), {"kubelet": kubelet})
        self.server = http.server.ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        ctx.set_alpn_protocols(["http/1.1"])
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="simcsi-kubelet-api", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    kubelet: Kubelet
    protocol_version = "HTTP/1.1"
    rbufsize = 0  # unbuffered: after an upgrade, every byte past the headers is still in the socket

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _plain(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if parts == ["healthz"]:
            return self._plain(200, "ok")
        if len(parts) >= 3 and parts[0] in ("exec", "portForward", "containerLogs"):
            sandbox = self.kubelet.sandbox(parts[1], parts[2])
            if sandbox is None:
                return self._plain(404, f"pod {parts[1]}/{parts[2]} is not running on this node")
            if parts[0] == "containerLogs" and len(parts) == 4:
                tail = int(query["tailLines"][0]) if "tailLines" in query else None
                data = self.kubelet.runtime.read_log(sandbox, parts[3], tail)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            if parts[0] == "exec" and len(parts) == 4:
                return self._exec(sandbox, parts[3], query)
            if parts[0] == "portForward":
                return self._port_forward(sandbox, query)
        return self._plain(404, "not found")

    def _upgrade(self) -> bool:
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if self.headers.get("Upgrade", "").lower() != "websocket" or "v4.channel.k8s.io" not in offered:
            self._plain(400, "this kubelet streams over WebSocket with the v4.channel.k8s.io protocol only")
            return False
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws.accept_key(self.headers["Sec-WebSocket-Key"]))
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        return True

    def _exec(self, sandbox: Sandbox, container: str, query: dict[str, list[str]]) -> None:
        if container not in sandbox.containers:
            return self._plain(404, f"container {container} not found")
        command = query.get("command") or []
        if not self._upgrade():
            return None
        sock = self.connection
        try:
            proc = self.kubelet.runtime.exec(sandbox, container, command)
        except OSError as exc:
            sock.sendall(
                ws.frame(b"\x03" + json.dumps({"metadata": {}, "status": "Failure", "message": str(exc)}).encode())
            )
            return None
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        if query.get("input", ["0"])[0] not in ("1", "true"):
            proc.stdin.close()
        sources = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
        open_outputs = set(sources)

        def on_message(op: int, payload: bytes) -> bool:
            if payload[:1] == b"\x00" and not proc.stdin.closed:  # type: ignore[union-attr]
                try:
                    proc.stdin.write(payload[1:])  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
                except OSError:
                    pass
            return True

        def on_closed(fd: int) -> bool:
            open_outputs.discard(fd)
            return not open_outputs

        ws.pump(sock, b"", sources, on_message, on_source_closed=on_closed)
        if open_outputs:  # the client went away first; the process keeps running, as with a real CRI
            return None
        code = proc.wait()
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {
                "metadata": {},
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "message": f"command terminated with non-zero exit code: error executing command "
                f"{command}, exit code {code}",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        try:
            sock.sendall(ws.frame(b"\x03" + json.dumps(status).encode()))
            sock.sendall(ws.frame(b"", ws.OP_CLOSE))
        except OSError:
            pass
        return None

    def _port_forward(self, sandbox: Sandbox, query: dict[str, list[str]]) -> None:
        ports = [int(p) for value in query.get("port", []) for p in value.split(",")]
        if len(ports) != 1:
            return self._plain(400, "this kubelet forwards exactly one port per connection")
        port = ports[0]
        if not self._upgrade():
            return None
        sock = self.connection
        head = port.to_bytes(2, "little")
        sock.sendall(ws.frame(b"\x00" + head) + ws.frame(b"\x01" + head))
        try:
            target = self.kubelet.runtime.connect(sandbox, port)
        except OSError as exc:
            message = (
                f"an error occurred forwarding {port} -> {port}: error forwarding port {port} to pod "
                f"{sandbox.uid}: failed to connect to localhost:{port} inside namespace: "
                f"{exc.strerror or exc}"
            )
            try:
                sock.sendall(ws.frame(b"\x01" + message.encode()) + ws.frame(b"", ws.OP_CLOSE))
            except OSError:
                pass
            return None

        def on_message(op: int, payload: bytes) -> bool:
            if payload[:1] == b"\x00" and len(payload) > 1:
                try:
                    target.sendall(payload[1:])
                except OSError:
                    return False
            return True

        try:
            ws.pump(sock, b"", {target.fileno(): 0}, on_message, on_source_closed=lambda fd: True)
        finally:
            try:
                target.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            target.close()
            try:
                sock.sendall(ws.frame(b"", ws.OP_CLOSE))
            except OSError:
                pass
        return None


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A throwaway serving certificate for the kubelet API (the apiserver does not verify it
    unless started with --kubelet-certificate-authority)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "kubelet.crt", directory / "kubelet.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=simcsi-kubelet",
            "-addext",
            f"subjectAltName=IP:{host}",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
