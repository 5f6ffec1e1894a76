"""``restore --to k8s://`` of a snapshot with volumes: the data-first options (``--no-volumes``,
``--volumes-from``, ``--volume-parallel``) and the claims' part of the report."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import click

from kubekeep import api, errors
from kubekeep.cli._volumes import VolumeFlags
from kubekeep.cli.terminal import safe

F = TypeVar("F", bound=Callable[..., Any])

_COLORS = {"written": "green", "would write": "green", "failed": "red", "would fail": "red", "left alone": "yellow"}


@dataclass(frozen=True)
class DataFlags:
    """The data-first options as given on the command line."""

    no_volumes: bool
    volumes_from: tuple[str, ...]
    parallel: int | None

    def given(self) -> bool:
        return self.no_volumes or bool(self.volumes_from) or self.parallel is not None

    def options(self, volume: VolumeFlags, *, context: str | None, kubeconfig: str | None) -> api.RestoreVolumeOptions:
        if self.no_volumes and self.volumes_from:
            raise errors.UsageError("--no-volumes and --volumes-from exclude each other")
        return api.RestoreVolumeOptions(
            enabled=not self.no_volumes,
            volumes_from=self.volumes_from,
            parallel=self.parallel or 2,
            volume=None if self.no_volumes else volume.options(context=context, kubeconfig=kubeconfig),
        )


def data_options() -> Callable[[F], F]:
    """Add the data-first options to ``restore``; it receives them as ``data`` (:class:`DataFlags`)."""
    options = [
        click.option(
            "--no-volumes",
            is_flag=True,
            help="k8s://: restore the manifests only (claims created empty, workloads at once), not the "
            "claims' data of a snapshot with volumes.",
        ),
        click.option(
            "--volumes-from",
            "volumes_from",
            multiple=True,
            metavar="SNAPSHOT",
            help="k8s://: take a claim's data from this pvc:// snapshot of it instead of the snapshot's "
            "volumes/ (repeatable).",
        ),
        click.option(
            "--volume-parallel",
            "restore_volume_parallel",
            type=click.IntRange(1, 32),
            default=None,
            help="k8s://: claims whose data is written at once (default 2).",
        ),
    ]

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["data"] = DataFlags(
                kwargs.pop("no_volumes"), tuple(kwargs.pop("volumes_from")), kwargs.pop("restore_volume_parallel")
            )
            return f(*args, **kwargs)

        decorated: Any = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return cast(F, decorated)

    return decorate


def print_claims(claims: list[api.ClaimResult], *, quiet: bool) -> None:
    """One line per claim: what became of its data, how much, how long, and the workloads it held."""
    if not claims:
        return
    width = max(len(c.action) for c in claims)
    for c in claims:
        if quiet and not c.failed:
            continue
        size = api.human_size(c.bytes_written if c.action == "written" else c.bytes_planned)
        line = f"{c.action:<{width}}  data of PersistentVolumeClaim {c.label}"
        if c.action in ("written", "would write"):
            files = c.files_written if c.action == "written" else c.files_planned
            line += f" ({c.claim} claim, {files} files, {size}" + (
                f", {c.seconds:.1f} s)" if c.action == "written" else ")"
            )
        if c.reason:
            line += f": {c.reason}"
        if c.workloads:
            verb = "held back" if c.failed else "then"
            line += f" [{verb}: {', '.join(c.workloads)}]"
        click.secho(safe(line), fg=_COLORS.get(c.action))
