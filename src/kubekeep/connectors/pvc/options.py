"""What a ``pvc://`` run is told: the URI (``parse_uri``), the options (``VolumeOptions``),
and the cluster connection every claim of the run shares (``KubeContext``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kubekeep import errors
from kubekeep.kube import config, hooks, pods
from kubekeep.kube.config import ClusterAccess
from kubekeep.kube.requesting import Session

SCHEME = "pvc"
CONNECT_MODES = ("auto", "port-forward", "pod-ip")
Status = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def parse_uri(uri: str, *, need_name: bool = True) -> tuple[str | None, str, str]:
    """``pvc://[CONTEXT/]NAMESPACE/NAME`` -> ``(context, namespace, name)``; the context may
    itself contain slashes (EKS ARNs). Without ``need_name``, ``pvc://[CONTEXT/]NAMESPACE``
    and ``pvc://`` are accepted too (name, and namespace, empty)."""
    if not uri.lower().startswith("pvc://"):
        raise errors.UsageError(f"bad PVC URI {uri!r}: expected pvc://[CONTEXT/]NAMESPACE/NAME")
    parts = [p for p in uri[6:].strip("/").split("/") if p] if uri[6:].strip("/") else []
    if need_name:
        if len(parts) < 2:
            raise errors.UsageError(f"bad PVC URI {uri!r}: expected pvc://[CONTEXT/]NAMESPACE/NAME")
        return ("/".join(parts[:-2]) or None), parts[-2], parts[-1]
    if len(parts) >= 2:
        return ("/".join(parts[:-2]) or None), parts[-2], parts[-1]
    return None, (parts[0] if parts else ""), ""


@dataclass
class VolumeOptions:
    """Everything a volume backup or restore can be told (see ``kubekeep backup --help``)."""

    kubeconfig: str | None = None
    context: str | None = None
    live: bool = False
    snapshot_class: str | None = None
    snapshot_timeout: float = 600.0
    bind_timeout: float = 300.0
    connect: str = "auto"
    compress: bool = True
    helper: pods.HelperOptions = field(default_factory=pods.HelperOptions)
    pre_hooks: list[str] = field(default_factory=list)
    post_hooks: list[str] = field(default_factory=list)
    hook_container: str = ""
    hook_timeout: float = hooks.DEFAULT_TIMEOUT_S
    hook_on_error: str = "fail"
    annotation_hooks: bool = True
    excludes: list[str] = field(default_factory=list)
    status: Status = _quiet
    # restore
    size: str | None = None
    storage_class: str | None = None
    owners: bool | None = None

    def __post_init__(self) -> None:
        if self.connect not in CONNECT_MODES:
            raise errors.UsageError(f"agent connection {self.connect!r}: expected one of {', '.join(CONNECT_MODES)}")
        if self.hook_on_error not in hooks.ON_ERROR:
            raise errors.UsageError(f"hook on-error policy {self.hook_on_error!r}: expected fail or continue")
        if self.helper.run_as is not None and self.owners is None:
            self.owners = False  # a helper without root cannot give files their recorded owners

    def cli_hooks(self) -> list[hooks.Hook]:
        made = []
        for phase, commands in (("pre", self.pre_hooks), ("post", self.post_hooks)):
            for command in commands:
                made.append(
                    hooks.Hook(
                        phase=phase,
                        command=hooks.parse_command(command),
                        container=self.hook_container,
                        timeout=self.hook_timeout,
                        on_error=self.hook_on_error,
                    )
                )
        return made


class KubeContext:
    """One cluster connection shared by every volume of a run."""

    def __init__(self, options: VolumeOptions, context: str | None, *, session: Session | None = None) -> None:
        self.session = session or Session(config.connect(context or options.context, options.kubeconfig))
        self.access: ClusterAccess = self.session.access
        self.in_cluster = self.access.context == config.IN_CLUSTER
        self._owned = session is None

    def close(self) -> None:
        if self._owned:
            self.session.close()
