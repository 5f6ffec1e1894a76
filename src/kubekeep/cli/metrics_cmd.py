"""``kubekeep metrics``: the repository's backups as Prometheus metrics (docs/deploy.md).

Reads the repository every ``--interval`` (snapshot list, run records, object listing: no data)
and serves the newest reading on ``--listen`` at ``/metrics``; ``--once`` prints one reading.
Rendered with prometheus_client, the Prometheus project's own Python client, so names, types
and the text format follow its conventions.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import click
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubekeep import api, errors
from kubekeep.cli._common import global_options, info, warn, with_repository

#: per source (labels source, kind, host, tags): name, help, value of an ``api.SourceMetrics``
SOURCE_METRICS: list[tuple[str, str, Callable[[api.SourceMetrics], float | None]]] = [
    ("kubekeep_last_success_timestamp_seconds", "Time of the newest snapshot of a source", lambda s: s.last_time),
    (
        "kubekeep_last_snapshot_duration_seconds",
        "How long the newest snapshot of a source took",
        lambda s: s.duration_s,
    ),
    (
        "kubekeep_last_snapshot_added_bytes",
        "Bytes the newest snapshot of a source added to the repository",
        lambda s: s.bytes_added,
    ),
    ("kubekeep_last_snapshot_files", "Files in the newest snapshot of a source", lambda s: s.files),
    ("kubekeep_last_snapshot_objects", "API objects in the newest manifests snapshot of a source", lambda s: s.objects),
    (
        "kubekeep_last_snapshot_warnings",
        "Warnings of the newest snapshot of a source (data that could not be read)",
        lambda s: s.warnings,
    ),
    ("kubekeep_snapshots", "Snapshots kept of a source", lambda s: s.snapshots),
]
#: per command and source (labels command, source, kind, tags), of an ``api.RunMetrics``
RUN_METRICS: list[tuple[str, str, Callable[[api.RunMetrics], float | None]]] = [
    (
        "kubekeep_last_run_timestamp_seconds",
        "When the newest recorded run of a command on a source finished",
        lambda r: r.last_time,
    ),
    (
        "kubekeep_last_run_success",
        "1 if the newest recorded run of a command on a source succeeded, 0 if it failed",
        lambda r: float(r.last_ok),
    ),
    (
        "kubekeep_last_run_duration_seconds",
        "How long the newest recorded run of a command on a source took",
        lambda r: r.last_duration_s,
    ),
    (
        "kubekeep_last_failure_timestamp_seconds",
        "When the newest failed run of a command on a source finished",
        lambda r: r.last_failure_time,
    ),
    ("kubekeep_recorded_runs", "Runs recorded of a command on a source (prune keeps the newest 50)", lambda r: r.runs),
    (
        "kubekeep_recorded_run_failures",
        "Failed runs among those recorded of a command on a source",
        lambda r: r.failures,
    ),
]


class RepositoryCollector(Collector):
    """The metric families of the newest :class:`api.RepositoryMetrics` reading."""

    def __init__(self) -> None:
        self.reading: api.RepositoryMetrics | None = None
        self.read_ok = False
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            m, ok = self.reading, self.read_ok
        yield _gauge("kubekeep_up", "1 if the last reading of the repository succeeded", [([], float(ok))])
        if m is None:
            return
        for name, doc, source_value in SOURCE_METRICS:
            samples = [([s.source, s.kind, s.host, s.tags], source_value(s)) for s in m.sources]
            yield _gauge(name, doc, samples, ["source", "kind", "host", "tags"])
        for name, doc, run_value in RUN_METRICS:
            samples = [([r.command, r.source, r.kind, r.tags], run_value(r)) for r in m.runs]
            yield _gauge(name, doc, samples, ["command", "source", "kind", "tags"])
        if m.last_check is not None:
            c = m.last_check
            yield _gauge("kubekeep_last_check_success", "1 if the newest check found no problem", [([], float(c.ok))])
            yield _gauge(
                "kubekeep_last_check_timestamp_seconds", "When the newest check finished", [([], m.last_check_time)]
            )
            yield _gauge(
                "kubekeep_last_check_errors", "Problems the newest check found", [([], c.stats.get("errors", 0))]
            )
        sizes = [([t], n) for t, n in sorted(m.size_bytes.items())]
        yield _gauge("kubekeep_repository_size_bytes", "Bytes stored, by kind of object", sizes, ["type"])
        counts = [([t], n) for t, n in sorted(m.objects.items())]
        yield _gauge("kubekeep_repository_objects", "Objects stored, by kind", counts, ["type"])
        yield _gauge(
            "kubekeep_damaged_snapshots", "Snapshot files that do not decrypt or decode", [([], m.damaged_snapshots)]
        )
        yield _gauge("kubekeep_last_read_timestamp_seconds", "When the repository was last read", [([], m.read_time)])
        yield _gauge(
            "kubekeep_last_read_duration_seconds", "How long reading the repository took", [([], m.read_duration_s)]
        )


def _gauge(
    name: str, doc: str, samples: Sequence[tuple[list[str], float | None]], labels: list[str] | None = None
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels or [])
    for values, value in samples:
        if value is not None:
            family.add_metric(values, float(value))
    return family


def _read(repo: api.Repository, collector: RepositoryCollector) -> None:
    try:
        reading = api.repository_metrics(repo)
    except errors.KubekeepError as exc:
        warn(f"cannot read the repository: {exc}")
        with collector.lock:
            collector.read_ok = False
        return
    with collector.lock:
        collector.reading, collector.read_ok = reading, True


def _listen_address(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.UsageError(f"--listen {listen!r}: expected [HOST]:PORT")
    return host or "0.0.0.0", int(port)


@click.command(short_help="Serve the repository's backups as Prometheus metrics.")
@click.option("--listen", default=":9464", show_default=True, metavar="[HOST]:PORT", help="Where to serve /metrics.")
@click.option(
    "--interval", default="60s", show_default=True, metavar="DURATION", help="How often to read the repository."
)
@click.option("--once", is_flag=True, help="Print one reading in the Prometheus text format and exit.")
@global_options
@with_repository
def command(repo: api.Repository, listen: str, interval: str, once: bool) -> None:
    """Read the repository every --interval (snapshots, run records, sizes: no data) and serve
    the newest reading at http://[HOST]:PORT/metrics: per source the newest snapshot's time,
    duration, bytes added, files and warnings; per command and source whether the newest run
    succeeded (every backup, forget, prune and check records its outcome); the newest check;
    the space each kind of object takes. Metric names are in docs/deploy.md."""
    collector = RepositoryCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    every = api.parse_timeout(interval)
    if every <= 0:
        raise errors.UsageError("--interval must be longer than 0s")
    if once:
        _read(repo, collector)
        sys.stdout.write(generate_latest(registry).decode())
        if not collector.read_ok:
            raise errors.StorageError("the repository could not be read")
        return
    host, port = _listen_address(listen)
    _read(repo, collector)
    start_http_server(port, addr=host, registry=registry)
    info(f"serving metrics on http://{host}:{port}/metrics, reading the repository every {every:g} s")
    while True:
        time.sleep(every)
        _read(repo, collector)
