"""``kubekeep etcd follow``: full etcd snapshots with the watch events between them.

The follower watches every key of the cluster and stores what it received as a delta segment
(a snapshot of kind ``etcd-delta``) every ``interval`` seconds, or sooner when ``segment_bytes``
have gathered; it takes a new full snapshot every ``full_every`` seconds, or sooner when the
segments since the last one outgrow ``full_ratio`` times the database. On start it resumes
from the last stored revision; when etcd has compacted that revision away it says so and takes
a new full snapshot. A member that stops answering is replaced by the next endpoint that does,
resuming at the last revision received (docs/etcd.md, "Point in time").
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kubekeep import errors
from kubekeep.api.etcd_timeline import Timeline, timelines
from kubekeep.connectors.etcd import EtcdSourceOptions, open_importer
from kubekeep.connectors.etcd_delta import DELTA_FORMAT, DeltaImporter, DeltaMeta
from kubekeep.engine.backup import run_backup
from kubekeep.engine.entries import SnapshotKind
from kubekeep.engine.repository import Repository
from kubekeep.etcd import segment
from kubekeep.etcd.client import EtcdClient
from kubekeep.etcd.watch import Compacted, WatchBatch, Watcher


@dataclass(frozen=True)
class FollowOptions:
    interval: float = 10.0  # store a segment at least this often while events arrive
    segment_bytes: int = 8 << 20  # or as soon as this many bytes of events gathered
    full_every: float = 3600.0  # a new full snapshot this often
    full_ratio: float = 1.0  # or when the segments since the last one exceed this x the database
    idle_every: float = 300.0  # without events, an empty segment this often extends the window
    tags: tuple[str, ...] = ()
    run_for: float | None = None  # stop after this many seconds (None: until stopped)
    retry_max: float = 60.0  # the longest wait between attempts after a failure
    #: while storage fails, hold at most this many bytes of events; beyond, let them go and
    #: catch up from etcd's history once storage is back (or take a full snapshot)
    max_held: int = 256 << 20
    #: after a full snapshot, merge the segments of the chain it closes into one (a day at 10 s
    #: is 8,640 segments otherwise, each a snapshot every listing reads)
    consolidate: bool = True


@dataclass
class FollowReport:
    cluster_id: str = ""
    full_snapshots: list[str] = field(default_factory=list)
    segments: int = 0
    events: int = 0
    bytes_stored: int = 0
    resumed_from: int | None = None  # the revision after which a restart went on
    compactions: int = 0  # times the history to resume from was compacted away
    reconnects: int = 0


Log = Callable[[str], None]
#: segments of a chain are merged only while they hold at most this many bytes in all
MERGE_LIMIT = 256 << 20


class _Follower:
    def __init__(
        self,
        repo: Repository,
        uri: str,
        source: EtcdSourceOptions,
        options: FollowOptions,
        stop: threading.Event,
        log: Log,
    ) -> None:
        self.repo, self.uri, self.source, self.opts, self.stop, self.log = repo, uri, source, options, stop, log
        self.report = FollowReport()
        probe = open_importer(uri, source)
        self.client: EtcdClient = probe.client
        self.uri_key = probe.uri
        self.watcher: Watcher | None = None
        self.chain: str | None = None
        self.last_full_at = 0.0
        self.db_size = 0
        self.delta_bytes = 0  # encoded segment bytes since the last full snapshot
        # what is stored: every event up to cut_rev, known complete at cut_ns
        self.cut_rev = 0
        self.cut_ns = 0
        # what is received: every event up to known_rev, at known_ns; buffer holds those > cut_rev
        self.known_rev = 0
        self.known_ns = 0
        self.buffer: list[segment.Record] = []
        self.buffer_bytes = 0
        self.catch_up_to = 0  # events up to this revision came from history: no time
        self.outage: tuple[int, int] | None = None
        self.last_write = time.monotonic()

    # -- watching -------------------------------------------------------------------------------
    def _open_watch(self, after: int) -> None:
        """Watch from ``after`` + 1, on the first endpoint that answers."""
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        self.client.close()
        self.client.connect()
        status = self.client.status()
        if self.report.cluster_id and status.cluster_id != self.report.cluster_id:
            raise errors.ConnectorError(
                f"etcd at {status.endpoint} belongs to cluster {status.cluster_id}, "
                f"not {self.report.cluster_id} that this follower follows"
            )
        self.report.cluster_id = status.cluster_id
        watcher = Watcher(self.client, after + 1)
        created = watcher.start()
        self.watcher = watcher
        now = time.time_ns()
        if created > after and self.known_ns:
            # events after `after` happened while nobody watched: they come from history
            self.catch_up_to = created
            self.outage = (self.outage[0] if self.outage else self.known_ns, now)
        self.log(f"watching etcd at {status.endpoint} (cluster {status.cluster_id}) from revision {after + 1}")

    def _receive(self, timeout: float) -> WatchBatch | None:
        if self.watcher is None:  # let go while storage failed: watch again from what is stored
            self._open_watch(self.known_rev)
        assert self.watcher is not None
        batch = self.watcher.get(timeout)
        if batch is None:
            return None
        held = self.known_rev  # a batch holds whole revisions: compare with what came before it
        for ev in batch.events:
            rev = ev.kv.mod_revision
            if rev <= held:
                continue  # already held (a watch reopened from an earlier revision)
            received = 0 if rev <= self.catch_up_to else batch.received_ns
            self.buffer.append(segment.Record(received, ev))
            self.buffer_bytes += ev.ByteSize() + 16
            self.known_rev = rev
        if batch.progress:
            self.known_rev = max(self.known_rev, batch.revision)
        self.known_ns = batch.received_ns
        return batch

    # -- storing --------------------------------------------------------------------------------
    def _write_segment(self) -> None:
        if self.chain is None:
            return
        records = self.buffer
        upto = max(self.known_rev, self.cut_rev)
        meta = DeltaMeta(
            format=DELTA_FORMAT,
            cluster_id=self.report.cluster_id,
            after_revision=self.cut_rev,
            upto_revision=upto,
            since_ns=self.cut_ns,
            until_ns=max(self.known_ns, self.cut_ns),
            events=len(records),
            outage_from_ns=self.outage[0] if self.outage else None,
            outage_until_ns=self.outage[1] if self.outage else None,
            endpoint=str(self.client.endpoint),
        )
        data = segment.encode(records)
        with self.repo.lock():
            self.repo.refresh_index()
            snap = run_backup(
                self.repo,
                DeltaImporter(self.uri_key, data, meta),
                tags=list(self.opts.tags),
                use_parent=False,
                workers=1,
                extends=self.chain,
            )
        self.buffer, self.buffer_bytes = [], 0
        self.cut_rev, self.cut_ns = upto, meta["until_ns"]
        self.outage = None
        self.last_write = time.monotonic()
        self.delta_bytes += len(data)
        self.report.segments += 1
        self.report.events += len(records)
        self.report.bytes_stored += int(snap.stats.get("bytes_stored", 0))
        first = records[0].revision if records else upto
        self.log(
            f"stored segment {snap.short_id}: {len(records)} event(s), revisions {first}..{upto}, {len(data)} bytes"
        )

    def _take_full(self) -> None:
        """A full snapshot, starting a new chain; the watch goes on meanwhile."""
        importer = open_importer(self.uri, self.source)
        chain = uuid.uuid4().hex
        with self.repo.lock(), importer:
            self.repo.refresh_index()
            parent = next(
                (
                    s
                    for s in reversed(self.repo.snapshots(skip_damaged=True))
                    if s.kind == SnapshotKind.ETCD.value and s.source.get("host") == self.report.cluster_id
                ),
                None,
            )
            snap = run_backup(self.repo, importer, tags=list(self.opts.tags), parent=parent, chain=chain)
        meta = snap.metadata.get("etcd") or {}
        if meta.get("cluster_id") != self.report.cluster_id:
            raise errors.ConnectorError(
                f"the full snapshot came from cluster {meta.get('cluster_id')}, not {self.report.cluster_id}"
            )
        closed, self.chain = self.chain, chain
        self.last_full_at = time.monotonic()
        self.db_size = int(meta.get("db_size") or 0)
        self.delta_bytes = 0
        self.report.full_snapshots.append(snap.id)
        self.log(
            f"stored full snapshot {snap.short_id}: revision {meta.get('revision')}, "
            f"{int(snap.stats.get('bytes_total', 0))} bytes"
        )
        if closed is not None and self.opts.consolidate:
            try:
                self._consolidate(closed)
            except errors.KubekeepError as exc:
                self.log(f"could not merge the segments of the closed chain: {exc}; they stay as they are")

    def _consolidate(self, chain: str) -> None:
        """Merge the segments of a closed chain into one segment, then remove them. A crash in
        between leaves both, which restores read as one (each revision is replayed once)."""
        from kubekeep.api.etcd_replay import segment_records
        from kubekeep.api.etcd_timeline import Segment, delta_meta

        segs = []
        for snap in self.repo.snapshots(skip_damaged=True):
            meta = delta_meta(snap) if snap.extends == chain else None
            if meta is not None and meta["cluster_id"] == self.report.cluster_id:
                segs.append(Segment(snap, meta))
        segs.sort(key=lambda s: (s.after, s.upto))
        if len(segs) < 2:
            return
        outages = [s.outage for s in segs if s.outage is not None]
        gapless = all(b.after <= a.upto for a, b in zip(segs, segs[1:], strict=False))
        size = sum(int(s.snapshot.stats.get("bytes_total", 0)) for s in segs)
        if len(outages) > 1 or not gapless or size > MERGE_LIMIT:
            return  # one outage per segment; a gap must stay visible; memory stays bounded
        records: list[segment.Record] = []
        done = segs[0].after
        for seg in segs:
            records.extend(r for r in segment_records(self.repo, seg) if r.revision > done)
            done = max(done, seg.upto)
        meta = DeltaMeta(
            format=DELTA_FORMAT,
            cluster_id=self.report.cluster_id,
            after_revision=segs[0].after,
            upto_revision=done,
            since_ns=min(s.since_ns for s in segs),
            until_ns=max(s.until_ns for s in segs),
            events=len(records),
            outage_from_ns=outages[0][0] if outages else None,
            outage_until_ns=outages[0][1] if outages else None,
            endpoint=segs[-1].meta["endpoint"],
        )
        with self.repo.lock():
            self.repo.refresh_index()
            merged = run_backup(
                self.repo,
                DeltaImporter(self.uri_key, segment.encode(records), meta),
                tags=list(self.opts.tags),
                use_parent=False,
                workers=1,
                extends=chain,
            )
            removed = 0
            for seg in segs:
                try:
                    self.repo.delete_snapshot(seg.snapshot.id)
                except errors.DeleteRefused:
                    break  # Object Lock: they stay until their dates pass
                removed += 1
        self.log(
            f"merged {len(segs)} segment(s) of the closed chain into {merged.short_id} "
            f"(revisions {meta['after_revision'] + 1}..{meta['upto_revision']}); removed {removed}"
        )

    def _full_due(self) -> bool:
        if time.monotonic() - self.last_full_at >= self.opts.full_every:
            return True
        return bool(self.db_size) and self.delta_bytes > self.opts.full_ratio * self.db_size

    # -- starting -------------------------------------------------------------------------------
    def _resume_point(self, tl: Timeline | None) -> tuple[int, int, str] | None:
        """(revision, time, chain) to resume after, when the stored timeline ends in segments
        that a full snapshot reaches and whose chain a snapshot still starts."""
        if tl is None or not tl.segments:
            return None
        windows = tl.windows()
        last = max(tl.segments, key=lambda s: (s.upto, s.until_ns))
        if not windows or windows[-1][1].revision != last.upto or last.snapshot.extends is None:
            return None
        starters = {s.chain for s in self.repo.snapshots(skip_damaged=True) if s.chain}
        if last.snapshot.extends not in starters:
            return None
        return last.upto, last.until_ns, last.snapshot.extends

    def _start_fresh(self) -> None:
        """Watch from the store's revision now, then take the full snapshot the watch extends."""
        self.client.close()
        status = self.client.status()
        at = time.time_ns()
        self.report.cluster_id = status.cluster_id
        self.buffer, self.buffer_bytes, self.outage, self.catch_up_to = [], 0, None, 0
        self.cut_rev = self.known_rev = status.revision
        self.known_ns = 0  # no outage: nothing was stored before
        self._open_watch(status.revision)
        self.cut_ns = self.known_ns = at
        self._take_full()

    def start(self) -> None:
        status = self.client.status()
        self.report.cluster_id = status.cluster_id
        found = {tl.cluster_id: tl for tl in timelines(self.repo)} if self.repo.snapshot_ids() else {}
        point = self._resume_point(found.get(status.cluster_id))
        if point is None:
            self.log(f"no timeline to resume for cluster {status.cluster_id}: starting with a full snapshot")
            self._start_fresh()
            return
        rev, until_ns, chain = point
        self.cut_rev = self.known_rev = rev
        self.cut_ns = self.known_ns = until_ns
        self.chain = chain
        self.report.resumed_from = rev
        try:
            self._open_watch(rev)
        except Compacted as exc:
            self.report.compactions += 1
            self.log(f"cannot resume after revision {rev}: {exc}; taking a new full snapshot")
            self.known_ns = 0
            self._start_fresh()
            return
        self.last_full_at = time.monotonic()  # the chain's age is unknown: count from now
        self.log(f"resumed after revision {rev}")

    # -- the loop -------------------------------------------------------------------------------
    def _reconnect(self, exc: Exception) -> None:
        """The watch broke: wait, then watch again from the last revision received."""
        self.report.reconnects += 1
        delay = 1.0
        while not self.stop.is_set():
            self.log(f"watch failed: {exc}; retrying in {delay:g}s")
            if self.stop.wait(delay):
                return
            try:
                self._open_watch(self.known_rev)
                return
            except Compacted as compacted:
                self.report.compactions += 1
                self.log(f"{compacted}; storing what was received, then taking a new full snapshot")
                self._flush_quietly()
                self.known_ns = 0
                self._start_fresh()
                return
            except (errors.SourceUnreachable, errors.ConnectorError) as again:
                exc = again
                delay = min(self.opts.retry_max, delay * 2)

    def _let_go(self) -> None:
        """Drop the held events and the watch: they come back from etcd's history (or, when it
        was compacted meanwhile, a new full snapshot covers them) once storage works again."""
        self.log(
            f"more than {self.opts.max_held} bytes held: letting {len(self.buffer)} event(s) go; "
            f"watching again from revision {self.cut_rev + 1} once storage is back"
        )
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        self.buffer, self.buffer_bytes = [], 0
        self.known_rev, self.known_ns = self.cut_rev, self.cut_ns

    def _probe(self) -> bool:
        """Ask the watched member for its revision: when it is the last one received, nothing is
        in flight and the state is known up to now (etcd answers progress requests only once a
        watch has delivered an event, so an idle store needs this). True when caught up."""
        asked = time.time_ns()
        if self.client.status().revision != self.known_rev:
            return False
        self.known_ns = max(self.known_ns, asked)
        return True

    def _final_flush(self) -> None:
        """On stop: wait (briefly) for the events in flight, then store what is held, or an empty
        segment when the window would otherwise end earlier than what is known."""
        if self.watcher is not None:
            try:
                deadline = time.monotonic() + 2.0
                while not self._probe() and time.monotonic() < deadline:
                    self._receive(0.2)
            except errors.KubekeepError as exc:
                self.log(f"could not learn how far the watch is on stopping: {exc}")
        if self.known_ns > self.cut_ns and self.chain is not None:
            try:
                self._write_segment()
            except errors.KubekeepError as exc:
                self.log(f"could not store the last {len(self.buffer)} event(s): {exc}")

    def _flush_quietly(self) -> None:
        try:
            if self.buffer:
                self._write_segment()
        except errors.KubekeepError as exc:
            self.log(f"could not store the last {len(self.buffer)} event(s): {exc}")

    def run(self) -> FollowReport:
        started = time.monotonic()
        self.start()
        next_tick = time.monotonic() + self.opts.interval
        storage_delay = 0.0
        while not self.stop.is_set():
            if self.opts.run_for is not None and time.monotonic() - started >= self.opts.run_for:
                break
            try:
                if self.watcher is None and time.monotonic() < storage_delay:
                    self.stop.wait(min(0.5, storage_delay - time.monotonic()))
                    continue
                self._receive(max(0.0, min(next_tick - time.monotonic(), 0.5)))
                if time.monotonic() >= next_tick:
                    assert self.watcher is not None
                    self.watcher.request_progress()
                    self._probe()
            except Compacted as exc:
                self.report.compactions += 1
                self.log(f"{exc}; taking a new full snapshot")
                self.known_ns = 0
                self._start_fresh()
                continue
            except (errors.SourceUnreachable, errors.ConnectorError) as exc:
                self._reconnect(exc)
                continue
            now = time.monotonic()
            ticked = now >= next_tick
            if ticked:
                next_tick = now + self.opts.interval
            idle = now - self.last_write >= self.opts.idle_every
            due = (ticked and (self.buffer or idle)) or self.buffer_bytes >= self.opts.segment_bytes
            try:
                if due and now >= storage_delay:
                    self._write_segment()
                if self._full_due() and now >= storage_delay:
                    if self.buffer:
                        self._write_segment()
                    self._take_full()
                storage_delay = 0.0
            except errors.KubekeepError as exc:  # storage, lock, or etcd during a full snapshot
                wait = min(self.opts.retry_max, max(self.opts.interval, 1.0))
                storage_delay = now + wait
                self.log(f"could not store: {exc}; {len(self.buffer)} event(s) held, retrying in {wait:g}s")
                if self.buffer_bytes > self.opts.max_held:
                    self._let_go()
        self._final_flush()
        return self.report

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        self.client.close()


def etcd_follow(
    repo: Repository,
    uri: str,
    source: EtcdSourceOptions | None = None,
    options: FollowOptions | None = None,
    *,
    stop: threading.Event | None = None,
    log: Log | None = None,
) -> FollowReport:
    """Follow the etcd cluster at ``uri`` until ``stop`` is set or ``options.run_for`` passed."""
    follower = _Follower(
        repo, uri, source or EtcdSourceOptions(), options or FollowOptions(), stop or threading.Event(), log or _no_log
    )
    try:
        return follower.run()
    finally:
        follower.close()


def _no_log(line: str) -> None:
    return None
