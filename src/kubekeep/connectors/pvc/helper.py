"""The helper pod beside one claim: what it runs (the agent's command line: this package knows
the agent, ``kube.pods`` only knows pods), whether the namespace would admit it, and starting
it: a Secret with the session secret, the pod, waiting until it runs, then the agent session."""

from __future__ import annotations

from typing import Any

from kubekeep import errors
from kubekeep.agent import protocol
from kubekeep.agent.client import Connect, open_session, tcp
from kubekeep.kube import cleanup, pods, portforward
from kubekeep.kube.requesting import Session

from .options import KubeContext, VolumeOptions

Obj = dict[str, Any]
#: how long the agent of a running helper pod may take to answer
CONNECT_TIMEOUT_S = 60.0


def agent_process(options: pods.HelperOptions, *, write: bool, block: bool) -> pods.AgentProcess:
    """The agent as a helper pod runs it: serving the claim's files (or its block device),
    writing them only for a restore, exiting when no session starts in time."""
    # the image's entrypoint is the kubekeep command (docs/image.md): ``kubekeep agent ...``
    args = ["agent", *(["--device", pods.DEVICE_PATH] if block else ["--root", pods.MOUNT_PATH])]
    args += ["--listen", f":{protocol.DEFAULT_PORT}", "--idle-timeout", f"{options.idle_timeout:.0f}"]
    if write:
        args.append("--write")
    return pods.AgentProcess(args=tuple(args), port=protocol.DEFAULT_PORT, secret_env=protocol.SECRET_ENV)


def pod_manifest(
    name: str,
    namespace: str,
    claim: str,
    *,
    secret_name: str,
    options: pods.HelperOptions,
    metadata: Obj,
    write: bool,
    block: bool,
    node_name: str = "",
) -> Obj:
    """The helper pod running the agent on ``claim`` (read-only unless ``write``)."""
    return pods.helper_manifest(
        name,
        namespace,
        claim,
        secret_name=secret_name,
        options=options,
        metadata=metadata,
        write=write,
        block=block,
        agent=agent_process(options, write=write, block=block),
        node_name=node_name,
    )


def check_admitted(
    session: Session, namespace: str, claim: str, options: VolumeOptions, *, write: bool, block: bool, what: str
) -> None:
    """Before anything is created: would the namespace admit the helper pod this run needs?"""
    manifest = pod_manifest(
        "kubekeep-admission-check",
        namespace,
        claim,
        secret_name="kubekeep-admission-check",
        options=options.helper,
        metadata={},
        write=write,
        block=block,
    )
    pods.check_admitted(session, manifest, what=what)


def agent_connect(kube: KubeContext, mode: str, pod: Obj) -> Connect:
    """How to reach a running helper pod's agent: the pod's address from inside the cluster,
    the API server's port-forward from outside (``auto``), or as told."""
    use_pod_ip = mode == "pod-ip" or (mode == "auto" and kube.in_cluster)
    meta = pod["metadata"]
    if use_pod_ip:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            raise errors.SourceUnreachable(f"helper pod {meta['namespace']}/{meta['name']} has no IP address")
        return tcp(ip, protocol.DEFAULT_PORT)
    return lambda: portforward.connect(kube.access, meta["namespace"], meta["name"], protocol.DEFAULT_PORT)


class HelperPod:
    """The helper pod of one claim in one run: ``start()`` creates the Secret and the pod and
    waits until it runs, ``connect()`` opens the agent session (a backup's read-only, a
    restore's read-write when ``write``). The run's ``remove()`` deletes both objects."""

    def __init__(
        self,
        kube: KubeContext,
        run: cleanup.Run,
        options: VolumeOptions,
        *,
        namespace: str,
        claim: str,
        label: str,
        write: bool,
        block: bool,
        node: str = "",
    ) -> None:
        self.kube = kube
        self.run = run
        self.options = options
        self.namespace = namespace
        self.claim = claim
        self.label = label
        self.write = write
        self.block = block
        self.node = node
        self.name = ""
        self.pod: Obj = {}
        self._secret = b""

    def start(self) -> Obj:
        """Create the Secret and the pod; the pod once it runs (fails fast when it cannot)."""
        ns, status = self.namespace, self.options.status
        self._secret = protocol.new_secret()
        secret_name = self.run.name("secret")
        self.run.create(
            pods.secret_path(ns),
            pods.secret_manifest(secret_name, ns, self._secret, self.run.metadata("agent-secret")),
            f"Secret {ns}/{secret_name}",
        )
        self.name = self.run.name("agent")
        status(
            f"{self.label}: starting helper pod {ns}/{self.name} "
            f"({'read-write' if self.write else self.options.helper.image})"
        )
        self.run.create(
            pods.pod_path(ns),
            pod_manifest(
                self.name,
                ns,
                self.claim,
                secret_name=secret_name,
                options=self.options.helper,
                metadata=self.run.metadata("agent"),
                write=self.write,
                block=self.block,
                node_name=self.node,
            ),
            f"helper pod {ns}/{self.name}",
        )
        self.pod = pods.wait_running(
            self.kube.session, ns, self.name, timeout=self.options.helper.start_timeout, status=status
        )
        return self.pod

    def connect(self) -> tuple[protocol.Channel, protocol.Hello]:
        """The authenticated session with the started pod's agent."""
        return open_session(
            agent_connect(self.kube, self.options.connect, self.pod),
            self._secret,
            "restore" if self.write else "backup",
            timeout=CONNECT_TIMEOUT_S,
            peer=f"agent of {self.label}",
            alive=lambda: pods.check_running(self.kube.session, self.namespace, self.name),
        )
