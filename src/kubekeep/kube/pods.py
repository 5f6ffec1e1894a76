"""Helper pods: the locked-down pod that runs the agent beside a volume, and waiting for it
to start without ever hanging on a pod that cannot.

The pod runs as root (uid 0, the only way to read every file whatever its owner and mode)
with every capability dropped except what that needs: ``DAC_READ_SEARCH`` to read, and for a
restore ``CHOWN``, ``DAC_OVERRIDE``, ``FOWNER`` and ``FSETID`` to write files with their owners
and modes. Its root filesystem is read-only, it gets no service-account token, runs under the
RuntimeDefault seccomp profile, cannot gain privileges and is never restarted. The session
secret comes from a Secret through an environment variable, never from the command line.
What the pod runs (the agent's arguments, port and secret variable) is its caller's to say:
kube knows pods, not the agent.

Pod Security "baseline" and "restricted" refuse that pod (an added ``DAC_READ_SEARCH``; root).
:attr:`HelperOptions.run_as` runs it instead as a given user with no capabilities at all and an
``fsGroup``: a pod "restricted" admits, for volumes whose files that identity can read. Before a
run creates anything, :func:`check_admitted` asks the API server (a server-side dry run of the
helper pod) whether admission would let it start, so such namespaces fail at once with the
reason rather than after a snapshot and a claim were made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubekeep import __version__, errors
from kubekeep.kube import events, waiting
from kubekeep.kube.requesting import Session, api_path

Obj = dict[str, Any]
Status = Callable[[str], None]

DEFAULT_IMAGE = f"ghcr.io/kubekeep/kubekeep:{__version__}"
CONTAINER = "agent"
MOUNT_PATH = "/volume"
DEVICE_PATH = "/dev/kubekeep-volume"
SECRET_KEY = "secret"
READ_CAPS = ["DAC_READ_SEARCH"]
WRITE_CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID"]
#: container states that will not get better by waiting
_HOPELESS = {
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "RunContainerError",
    "PreCreateHookError",
}
#: an unschedulable pod fails once the scheduler has said so for this long
UNSCHEDULABLE_GRACE_S = 3.0
#: ErrImagePull is retried by the kubelet once; a second report fails
PULL_GRACE_S = 10.0


@dataclass
class HelperOptions:
    """Where and how helper pods run (all settable from the command line)."""

    image: str = DEFAULT_IMAGE
    pull_policy: str = "IfNotPresent"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Obj] = field(default_factory=list)
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "100m", "memory": "256Mi"})
    limits: dict[str, str] = field(default_factory=lambda: {"memory": "1Gi"})
    priority_class: str = ""
    image_pull_secrets: list[str] = field(default_factory=list)
    start_timeout: float = 300.0
    idle_timeout: float = 900.0  # the agent exits if no session starts within this
    #: run the agent as this (uid, gid), without root or any capability (Pod Security "restricted")
    run_as: tuple[int, int] | None = None
    #: the pod's fsGroup (the volume's files made group-accessible to it, where the driver can)
    fs_group: int | None = None


def secret_manifest(name: str, namespace: str, secret: bytes, metadata: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {**metadata, "name": name, "namespace": namespace},
        "stringData": {SECRET_KEY: secret.hex()},
    }


@dataclass(frozen=True)
class AgentProcess:
    """What a helper pod runs, as its user (the pvc connector, which knows the agent) says:
    the agent's arguments, the port it listens on, the environment variable for the secret."""

    args: tuple[str, ...]
    port: int
    secret_env: str


def helper_manifest(
    name: str,
    namespace: str,
    claim: str,
    *,
    secret_name: str,
    options: HelperOptions,
    metadata: Obj,
    write: bool,
    block: bool,
    agent: AgentProcess,
    node_name: str = "",
) -> Obj:
    """The agent's pod, mounting ``claim`` (read-only unless ``write``) at :data:`MOUNT_PATH`,
    or a block claim as the device :data:`DEVICE_PATH`."""
    container: Obj = {
        "name": CONTAINER,
        "image": options.image,
        "imagePullPolicy": options.pull_policy,
        "args": list(agent.args),
        "env": [{"name": agent.secret_env, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": SECRET_KEY}}}],
        "ports": [{"name": "agent", "containerPort": agent.port, "protocol": "TCP"}],
        "resources": {
            "requests": dict(options.requests),
            **({"limits": dict(options.limits)} if options.limits else {}),
        },
        "securityContext": _container_security(options, write),
    }
    if block:
        container["volumeDevices"] = [{"name": "volume", "devicePath": DEVICE_PATH}]
    else:
        container["volumeMounts"] = [{"name": "volume", "mountPath": MOUNT_PATH, "readOnly": not write}]
    spec: Obj = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {
            "seccompProfile": {"type": "RuntimeDefault"},
            **({"fsGroup": options.fs_group} if options.fs_group is not None else {}),
        },
        "containers": [container],
        "volumes": [{"name": "volume", "persistentVolumeClaim": {"claimName": claim, "readOnly": not write}}],
    }
    if options.node_selector:
        spec["nodeSelector"] = dict(options.node_selector)
    if node_name:  # live backups: beside the pod that has the volume attached
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
                    ]
                }
            }
        }
    if options.tolerations:
        spec["tolerations"] = list(options.tolerations)
    if options.priority_class:
        spec["priorityClassName"] = options.priority_class
    if options.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in options.image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**metadata, "name": name, "namespace": namespace},
        "spec": spec,
    }


def _container_security(options: HelperOptions, write: bool) -> Obj:
    common: Obj = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if options.run_as is not None:
        uid, gid = options.run_as
        return {"runAsUser": uid, "runAsGroup": gid, "runAsNonRoot": True, **common, "capabilities": {"drop": ["ALL"]}}
    return {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        **common,
        "capabilities": {"drop": ["ALL"], "add": WRITE_CAPS if write else READ_CAPS},
    }


POD_SECURITY_LABEL = "pod-security.kubernetes.io/enforce"


def check_admitted(session: Session, manifest: Obj, *, what: str) -> None:
    """Fail with the admission's reason if the API server would refuse ``manifest`` (a helper
    pod), asking it with a server-side dry run: nothing is created. Pod Security and any other
    admission policy answer exactly as they will for the real pod."""
    ns = manifest["metadata"]["namespace"]
    try:
        session.call("POST", pod_path(ns), query={"dryRun": "All"}, body=orjson.dumps(manifest))
    except errors.ApiError as exc:
        if exc.status not in (400, 403, 422):
            raise
        level = _pod_security_level(session, ns)
        way_out = (
            "run the helper as a non-root user that can read the volume's files (--helper-user UID:GID, "
            "--helper-fs-group GID)"
            if manifest["spec"]["containers"][0]["securityContext"].get("runAsUser") == 0
            else "ask the namespace's owner which pods it admits"
        )
        raise errors.ConnectorError(
            f"{what}: namespace {ns}{level} does not admit kubekeep's helper pod: {exc}; {way_out}"
        ) from None


def _pod_security_level(session: Session, namespace: str) -> str:
    """`` (Pod Security enforce=LEVEL)`` from the namespace's labels, when readable."""
    try:
        ns = session.get_or_none(api_path("", "v1", "namespaces", name=namespace))
    except errors.KubekeepError:
        return ""
    level = ((ns or {}).get("metadata", {}).get("labels") or {}).get(POD_SECURITY_LABEL)
    return f" (Pod Security enforce={level})" if level else ""


def secret_path(namespace: str, name: str = "") -> str:
    return api_path("", "v1", "secrets", namespace=namespace, name=name)


def pod_path(namespace: str, name: str = "", sub: str = "") -> str:
    return api_path("", "v1", "pods", namespace=namespace, name=name, subresource=sub)


def logs(session: Session, namespace: str, name: str, *, container: str = CONTAINER, tail: int = 10) -> str:
    response = session.request(
        "GET", pod_path(namespace, name, "log"), query={"container": container, "tailLines": tail}, accept="*/*"
    )
    return response.data.decode("utf-8", "replace").strip() if response.ok else ""


def wait_running(session: Session, namespace: str, name: str, *, timeout: float, status: Status) -> Obj:
    """Wait until the pod runs; fail at once, with the pod's events and logs, when it cannot
    (image pull errors, a crashing or exited agent, no node to run on)."""
    start = _PodStart(session, namespace, name)

    def timed_out() -> Exception:
        return _failure(session, start.pod, f"did not start within {timeout:.0f}s (phase {start.phase})")

    def progress(elapsed: float) -> None:
        what = start.waiting[0] if start.waiting else start.phase
        status(f"waiting for helper pod {namespace}/{name} to start ({what}, {elapsed:.0f}s of {timeout:.0f}s)")

    return waiting.poll(start.check, timeout=timeout, timed_out=timed_out, progress=progress)


class _PodStart:
    """What a starting pod last looked like, and whether waiting longer can help."""

    def __init__(self, session: Session, namespace: str, name: str) -> None:
        self.session = session
        self.namespace = namespace
        self.name = name
        self.pod: Obj = {}
        self.phase = "Pending"
        self.waiting: tuple[str, str] | None = None
        self.unschedulable_since: float | None = None
        self.pull_error_since: float | None = None

    def check(self) -> Obj | None:
        """The pod once it runs; None while it may still start; raises when it cannot."""
        session = self.session
        pod = session.get_or_none(pod_path(self.namespace, self.name))
        if pod is None:
            raise errors.ConnectorError(f"helper pod {self.namespace}/{self.name} was deleted while starting")
        self.pod = pod
        st = pod.get("status") or {}
        self.phase = phase = st.get("phase", "Pending")
        now = time.monotonic()
        if phase == "Running":
            return self.pod
        if phase in ("Failed", "Succeeded"):
            raise _failure(session, pod, f"exited ({_terminated(st)})")
        self.waiting = _waiting(st)
        if self.waiting is not None:
            reason, message = self.waiting
            if reason in _HOPELESS:
                raise _failure(session, pod, f"cannot start: {reason}" + (f": {message}" if message else ""))
            if reason == "ErrImagePull":
                self.pull_error_since = self.pull_error_since or now
                if now - self.pull_error_since >= PULL_GRACE_S:
                    raise _failure(session, pod, f"cannot pull its image: {message or reason}")
        scheduled = next((c for c in st.get("conditions") or () if c.get("type") == "PodScheduled"), None)
        if (
            scheduled
            and scheduled.get("status") == "False"
            and scheduled.get("reason") == "Unschedulable"
            and "unbound immediate PersistentVolumeClaims" not in str(scheduled.get("message"))
        ):
            self.unschedulable_since = self.unschedulable_since or now
            if now - self.unschedulable_since >= UNSCHEDULABLE_GRACE_S:
                raise _failure(session, pod, f"cannot be scheduled: {' '.join(str(scheduled.get('message')).split())}")
        else:
            self.unschedulable_since = None
        return None


def check_running(session: Session, namespace: str, name: str) -> None:
    """Raise (with events and log) if a helper pod that was running has stopped: its agent is
    not coming back (the pod never restarts)."""
    path = pod_path(namespace, name)
    pod = session.get_or_none(path)
    if pod is None:
        raise errors.ConnectorError(f"helper pod {namespace}/{name} was deleted")
    st = pod.get("status") or {}
    stopped = any((cs.get("state") or {}).get("terminated") for cs in st.get("containerStatuses") or ())
    if st.get("phase") in ("Failed", "Succeeded") or stopped:
        raise _failure(session, pod, f"exited ({_terminated(st)})")


def _waiting(st: Obj) -> tuple[str, str] | None:
    for cs in st.get("containerStatuses") or ():
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return str(waiting["reason"]), " ".join(str(waiting.get("message", "")).split())
    return None


def _terminated(st: Obj) -> str:
    for cs in st.get("containerStatuses") or ():
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return f"exit code {term.get('exitCode')}" + (f", {term['reason']}" if term.get("reason") else "")
    return str(st.get("reason") or st.get("phase"))


def _failure(session: Session, pod: Obj, what: str) -> errors.ConnectorError:
    meta = pod["metadata"]
    parts = [f"helper pod {meta['namespace']}/{meta['name']} {what}"]
    evs = events.recent(session, meta["namespace"], "Pod", meta["name"], limit=4)
    if evs:
        parts.append("events: " + "; ".join(evs))
    tail = logs(session, meta["namespace"], meta["name"], tail=5)
    if tail:
        parts.append("log: " + " | ".join(tail.splitlines()[-5:]))
    return errors.ConnectorError(" -- ".join(parts))


def pods_using_claim(session: Session, namespace: str, claim: str) -> list[Obj]:
    """Running pods that mount ``claim`` (hooks run in them; live backups run beside them),
    kubekeep's own helper pods excepted."""
    body = session.get(pod_path(namespace), fieldSelector="status.phase=Running")
    out = []
    for pod in body.get("items") or ():
        vols = pod.get("spec", {}).get("volumes") or ()
        ours = (pod["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "kubekeep"
        if (
            any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in vols)
            and not pod["metadata"].get("deletionTimestamp")
            and not ours
        ):
            out.append(pod)
    return out
