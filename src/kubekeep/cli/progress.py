"""Progress display for long-running commands (rich, on stderr, only on a terminal)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubekeep import api

if TYPE_CHECKING:
    from rich.progress import Progress


class _Bar:
    """One rich progress task on stderr, shown only when ``enabled``; subclasses name the columns
    and the task's first fields."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None

    def _columns(self) -> list[Any]:
        raise NotImplementedError

    def _fields(self) -> dict[str, Any]:
        return {}

    def _start(self) -> None:
        if self.enabled:  # rich is imported only here and below: ~30 ms of every start-up otherwise
            from rich.console import Console
            from rich.progress import Progress

            self._progress = Progress(*self._columns(), console=Console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(type(self).__name__, total=None, **self._fields())

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


def _tail(text: str, width: int) -> str:
    return text if len(text) < width else "…" + text[-(width - 1) :]


class BackupProgress(_Bar):
    def __enter__(self) -> BackupProgress:
        self._start()
        return self

    def _columns(self) -> list[Any]:
        from rich.progress import DownloadColumn, SpinnerColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn

        return [
            SpinnerColumn(),
            TextColumn("{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[current]}"),
        ]

    def _fields(self) -> dict[str, Any]:
        return {"files": 0, "current": ""}

    def update(self, counters: api.BackupProgress) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, completed=counters.bytes_done, files=counters.files, current=_tail(counters.current, 60)
            )


class CountProgress(_Bar):
    """A bar for work with a known count (check --read-data, copy)."""

    def __init__(self, description: str, *, enabled: bool) -> None:
        super().__init__(enabled=enabled)
        self.description = description

    def __enter__(self) -> CountProgress:
        self._start()
        return self

    def _columns(self) -> list[Any]:
        from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn

        return [
            SpinnerColumn(),
            TextColumn(self.description),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        ]

    def update(self, _what: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)


class RestoreProgress(_Bar):
    """A data-first cluster restore: objects created, claims written, bytes of their data."""

    def __enter__(self) -> RestoreProgress:
        self._start()
        return self

    def _columns(self) -> list[Any]:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        return [
            SpinnerColumn(),
            TextColumn("{task.fields[phase]}: {task.fields[objects]} objects, {task.fields[claims]} claims"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[current]}"),
        ]

    def _fields(self) -> dict[str, Any]:
        return {"phase": "objects", "objects": 0, "claims": "0/0", "current": ""}

    def update(self, state: api.ClusterRestoreProgress) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=state.bytes_done,
                total=state.bytes_total or None,
                phase=state.phase,
                objects=state.objects_done,
                claims=f"{state.claims_done}/{state.claims_total}",
                current=_tail(state.current, 40),
            )
