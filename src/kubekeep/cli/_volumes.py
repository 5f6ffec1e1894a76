"""Options shared by the commands that back up or restore volumes (``pvc://``, ``k8s:// --volumes``).

``@volume_options()`` adds them to a command and hands the command one ``volume`` keyword, a
:class:`VolumeFlags`, from which the command builds the pvc connector's ``VolumeOptions`` (or
``ClusterVolumeOptions`` for ``k8s:// --volumes``) once, when its source or destination has volumes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import click

from kubekeep import api, errors
from kubekeep.cli._common import settings

F = TypeVar("F", bound=Callable[..., Any])


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.UsageError(f"{what} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def parse_user(text: str) -> tuple[int, int]:
    """``UID[:GID]`` (the group defaults to the uid) of a non-root user."""
    uid_text, _, gid_text = text.partition(":")
    try:
        uid, gid = int(uid_text), int(gid_text or uid_text)
    except ValueError:
        raise errors.UsageError(f"--helper-user {text!r}: expected UID[:GID], numbers") from None
    if not 0 < uid < 2**31 or not 0 <= gid < 2**31:
        raise errors.UsageError(f"--helper-user {text!r}: the uid must be a non-root user id (1 or more)")
    return uid, gid


def parse_toleration(text: str) -> dict[str, Any]:
    """``KEY[=VALUE][:EFFECT]`` (operator Equal, or Exists without a value), or a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            raise errors.UsageError(f"toleration {text!r} is not valid JSON") from None
        if not isinstance(value, dict):
            raise errors.UsageError(f"toleration {text!r} must be a JSON object")
        return value
    spec, _, effect = text.partition(":")
    key, sep, value = spec.partition("=")
    if not key:
        raise errors.UsageError(f"toleration {text!r}: expected KEY[=VALUE][:EFFECT] or JSON")
    toleration: dict[str, Any] = {"key": key, "operator": "Equal" if sep else "Exists"}
    if sep:
        toleration["value"] = value
    if effect:
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise errors.UsageError(f"toleration effect {effect!r}: expected NoSchedule, PreferNoSchedule or NoExecute")
        toleration["effect"] = effect
    return toleration


_OPTIONS = [
    click.option(
        "--live",
        is_flag=True,
        default=None,
        help="Volumes: copy claims that cannot be snapshotted (not CSI, no snapshot class) while in use; "
        "crash-consistent at best.",
    ),
    click.option("--snapshot-class", help="Volumes: VolumeSnapshotClass to use (default: the driver's default)."),
    click.option("--snapshot-timeout", help="Volumes: how long a snapshot may take to be ready (default 10m)."),
    click.option(
        "--pre-hook",
        "pre_hooks",
        multiple=True,
        metavar="CMD",
        help="Volumes: run CMD (shell string or JSON array) in the pods using the claim just before the "
        "snapshot (repeatable).",
    ),
    click.option(
        "--post-hook",
        "post_hooks",
        multiple=True,
        metavar="CMD",
        help="Volumes: run CMD in those pods just after the snapshot is taken (repeatable).",
    ),
    click.option("--hook-container", help="Volumes: container the hooks run in (default: the pod's first)."),
    click.option("--hook-timeout", help="Volumes: time limit of each hook (default 30s)."),
    click.option(
        "--hook-on-error",
        type=click.Choice(["fail", "continue"]),
        default=None,
        help="Volumes: a failing hook fails the backup (fail, the default) or is a warning.",
    ),
    click.option(
        "--no-annotation-hooks", is_flag=True, default=None, help="Volumes: ignore hooks.kubekeep.io/* pod annotations."
    ),
    click.option(
        "--agent-image",
        envvar="KUBEKEEP_AGENT_IMAGE",
        show_envvar=True,
        help="Volumes: image of the helper pods (the kubekeep agent).",
    ),
    click.option(
        "--agent-connect",
        type=click.Choice(["auto", "port-forward", "pod-ip"]),
        default=None,
        help="Volumes: reach the agent through the API server (port-forward), at the pod's address "
        "(pod-ip, from inside the cluster), or pick (auto).",
    ),
    click.option(
        "--agent-compression/--no-agent-compression",
        default=None,
        help="Volumes: compress chunk data between agent and kubekeep (default on).",
    ),
    click.option(
        "--helper-node-selector",
        "node_selector",
        multiple=True,
        metavar="KEY=VALUE",
        envvar="KUBEKEEP_HELPER_NODE_SELECTOR",
        show_envvar=True,
        help="Volumes: run helper pods on nodes with this label (repeatable; the variable takes a "
        "space-separated list).",
    ),
    click.option(
        "--helper-toleration",
        "tolerations",
        multiple=True,
        metavar="KEY[=VALUE][:EFFECT]",
        envvar="KUBEKEEP_HELPER_TOLERATIONS",
        show_envvar=True,
        help="Volumes: let helper pods run on tainted nodes (repeatable, or a JSON toleration; the "
        "variable takes a space-separated list).",
    ),
    click.option("--helper-cpu", help="Volumes: CPU request of helper pods (default 100m)."),
    click.option("--helper-memory", help="Volumes: memory request of helper pods (default 256Mi)."),
    click.option("--helper-memory-limit", help="Volumes: memory limit of helper pods (default 1Gi)."),
    click.option("--helper-start-timeout", help="Volumes: how long a helper pod may take to start (default 5m)."),
    click.option(
        "--helper-user",
        metavar="UID[:GID]",
        help="Volumes: run helper pods as this non-root user, with no capabilities (admitted by Pod "
        "Security 'restricted'); for volumes whose files it can read. Restores cannot set owners.",
    ),
    click.option(
        "--helper-fs-group",
        type=click.IntRange(0, 2**31 - 1),
        default=None,
        metavar="GID",
        help="Volumes: fsGroup of helper pods (the volume's files made accessible to that group, where "
        "the storage driver supports it).",
    ),
]
_CLUSTER_OPTIONS = [
    click.option(
        "--volumes",
        "cluster_volumes",
        is_flag=True,
        help="k8s://: also back up the files of the claims (of --include-namespace, if given) under "
        "volumes/<namespace>/<claim>/; claims that cannot be snapshotted are skipped (or --live).",
    ),
    click.option("--volume-selector", metavar="SELECTOR", help="k8s:// --volumes: only claims with these labels."),
    click.option(
        "--volume-parallel",
        type=click.IntRange(1, 32),
        default=None,
        help="k8s:// --volumes: claims prepared (snapshot, helper pod) at once (default 2).",
    ),
]
_RESTORE_OPTIONS = [
    click.option("--size", help="pvc:// restore: size of a claim that does not exist yet (default: as recorded)."),
    click.option("--storage-class", help="pvc:// restore: storage class of a new claim (default: as recorded)."),
]
_NAMES = [
    "live",
    "snapshot_class",
    "snapshot_timeout",
    "pre_hooks",
    "post_hooks",
    "hook_container",
    "hook_timeout",
    "hook_on_error",
    "no_annotation_hooks",
    "agent_image",
    "agent_connect",
    "agent_compression",
    "node_selector",
    "tolerations",
    "helper_cpu",
    "helper_memory",
    "helper_memory_limit",
    "helper_start_timeout",
    "helper_user",
    "helper_fs_group",
]


@dataclass(frozen=True)
class VolumeFlags:
    """The volume options as given on the command line; the connector options are built from
    them only for a source or destination that has volumes (the pvc connector's module loads
    the Kubernetes client)."""

    given: dict[str, Any]

    def cluster(self) -> bool:
        """Whether ``k8s:// --volumes`` (or one of its options) was asked for."""
        return bool(
            self.given.get("cluster_volumes") or self.given.get("volume_selector") or self.given.get("volume_parallel")
        )

    def options(
        self, *, excludes: Iterable[str] = (), context: str | None = None, kubeconfig: str | None = None
    ) -> api.VolumeOptions:
        given = self.given
        helper = api.HelperOptions()
        for name, attr in (("agent_image", "image"), ("helper_fs_group", "fs_group")):
            if given.get(name) is not None:
                setattr(helper, attr, given[name])
        if given.get("helper_start_timeout"):
            helper.start_timeout = api.parse_timeout(given["helper_start_timeout"])
        if given.get("node_selector"):
            helper.node_selector = _pairs(given["node_selector"], "node selector")
        if given.get("tolerations"):
            helper.tolerations = [parse_toleration(t) for t in given["tolerations"]]
        requests = {k: given[n] for k, n in (("cpu", "helper_cpu"), ("memory", "helper_memory")) if given.get(n)}
        if requests:
            helper.requests = {"cpu": "100m", "memory": "256Mi", **requests}
        if given.get("helper_memory_limit"):
            helper.limits = {"memory": given["helper_memory_limit"]}
        if given.get("helper_user"):
            helper.run_as = parse_user(given["helper_user"])
        settable: dict[str, Any] = {
            key: given[name]
            for name, key in (
                ("live", "live"),
                ("snapshot_class", "snapshot_class"),
                ("hook_container", "hook_container"),
                ("hook_on_error", "hook_on_error"),
                ("agent_connect", "connect"),
                ("agent_compression", "compress"),
                ("size", "size"),
                ("storage_class", "storage_class"),
            )
            if given.get(name) is not None
        }
        for name in ("snapshot_timeout", "hook_timeout"):
            if given.get(name):
                settable[name] = api.parse_timeout(given[name])
        for name in ("pre_hooks", "post_hooks"):
            if given.get(name):
                settable[name] = list(given[name])
        if given.get("no_annotation_hooks"):
            settable["annotation_hooks"] = False
        return api.VolumeOptions(
            kubeconfig=kubeconfig,
            context=context,
            helper=helper,
            excludes=list(excludes),
            status=_status_printer(),
            **settable,
        )

    def cluster_options(self, *, excludes: Iterable[str] = ()) -> api.ClusterVolumeOptions | None:
        """``k8s:// --volumes``: None unless asked for."""
        if not self.cluster():
            return None
        return api.ClusterVolumeOptions(
            selector=self.given.get("volume_selector") or "",
            parallel=self.given.get("volume_parallel") or 2,
            volume=self.options(excludes=excludes),
        )


def _status_printer() -> Callable[[str], None]:
    """Progress lines on stderr (silent with --quiet or --json), callable from any thread: the
    settings are read now, in the command's thread, where the click context is."""
    s = settings()
    enabled = not s.quiet and not s.json

    def status(message: str) -> None:
        if enabled:
            click.echo(message, err=True)

    return status


def volume_options(*, restore: bool = False) -> Callable[[F], F]:
    """Add the volume options to a command; it receives them as ``volume`` (:class:`VolumeFlags`)."""
    names = _NAMES + (
        ["size", "storage_class"] if restore else ["cluster_volumes", "volume_selector", "volume_parallel"]
    )
    options = _OPTIONS + (_RESTORE_OPTIONS if restore else _CLUSTER_OPTIONS)

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name, None) for name in names}
            kwargs["volume"] = VolumeFlags(given)
            return f(*args, **kwargs)

        decorated: Any = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return cast(F, decorated)

    return decorate
