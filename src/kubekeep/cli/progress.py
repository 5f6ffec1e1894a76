"""Progress display for long-running commands (rich, on stderr, only on a terminal)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from kubekeep import api


class BackupProgress:
    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> BackupProgress:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.fields[files]} files"),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                TextColumn("[dim]{task.fields[current]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("backup", total=None, files=0, current="")
        return self

    def update(self, counters: api.BackupProgress) -> None:
        if self._progress is not None:
            current = counters.current if len(counters.current) < 60 else "…" + counters.current[-59:]
            self._progress.update(self._task, completed=counters.bytes_done, files=counters.files, current=current)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


class CountProgress:
    """A bar for work with a known count (check --read-data, copy)."""

    def __init__(self, description: str, *, enabled: bool) -> None:
        self.enabled = enabled
        self.description = description
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> CountProgress:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn(self.description),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=None)
        return self

    def update(self, _what: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


class RestoreProgress:
    """A data-first cluster restore: objects created, claims written, bytes of their data."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> RestoreProgress:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.fields[phase]}: {task.fields[objects]} objects, {task.fields[claims]} claims"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                TextColumn("[dim]{task.fields[current]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "restore", total=None, phase="objects", objects=0, claims="0/0", current=""
            )
        return self

    def update(self, state: api.ClusterRestoreProgress) -> None:
        if self._progress is not None:
            current = state.current if len(state.current) < 40 else "…" + state.current[-39:]
            self._progress.update(
                self._task,
                completed=state.bytes_done,
                total=state.bytes_total or None,
                phase=state.phase,
                objects=state.objects_done,
                claims=f"{state.claims_done}/{state.claims_total}",
                current=current,
            )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
