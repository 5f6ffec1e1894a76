"""Delta segments, timelines and chains read from hostile or damaged repositories: every
malformed byte or field is refused or left out, never replayed."""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

import pytest

from kubekeep.api import etcd_timeline as timeline
from kubekeep.api.etcd_replay import choose_full
from kubekeep.engine.retention import Decision, Policy, apply_policy, attached_decisions
from kubekeep.engine.snapshot import Snapshot
from kubekeep.errors import IntegrityError, UsageError
from kubekeep.etcd import segment
from kubekeep.etcd._proto import kv_pb2


def event(rev: int, key: bytes = b"/k", value: bytes = b"v", kind: int = segment.PUT) -> kv_pb2.Event:
    return kv_pb2.Event(type=kind, kv=kv_pb2.KeyValue(key=key, value=value, mod_revision=rev))  # type: ignore[arg-type]


def encoded(*revs: int) -> bytes:
    return segment.encode(segment.Record(1_000 + r, event(r)) for r in revs)


def test_round_trip_keeps_order_times_and_drops_prev_kv() -> None:
    ev = event(5)
    ev.prev_kv.CopyFrom(kv_pb2.KeyValue(key=b"/k", value=b"old"))
    data = segment.encode([segment.Record(7, ev), segment.Record(0, event(5, b"/j", kind=segment.DELETE))])
    out = list(segment.decode(data, after=4, upto=5))
    assert [(r.received_ns, r.revision, r.event.kv.key) for r in out] == [(7, 5, b"/k"), (0, 5, b"/j")]
    assert not out[0].event.HasField("prev_kv")


@pytest.mark.parametrize(
    ("data", "after", "upto", "match"),
    [
        (b"NOTASEGM" + encoded(3)[8:], 2, 3, "does not start"),
        (encoded(3)[:-2], 2, 3, "does not fit|cut short"),
        (encoded(3) + b"\x00\x00", 2, 3, "cut short"),
        (encoded(3, 2), 1, 3, "out of order"),
        (encoded(3), 3, 5, "outside its range"),
        (encoded(6), 3, 5, "outside its range"),
        (segment.MAGIC + struct.pack(">qI", 1, 1 << 31), 0, 5, "does not fit"),
        (segment.MAGIC + struct.pack(">qI", 1, 3) + b"\xff\xff\xff", 0, 5, "undecodable"),
        (segment.encode([segment.Record(1, event(3, key=b""))]), 2, 3, "neither a put nor a delete"),
        (segment.encode([segment.Record(-5, event(3))]), 2, 3, "negative time"),
    ],
)
def test_damaged_segments_are_refused(data: bytes, after: int, upto: int, match: str) -> None:
    with pytest.raises(IntegrityError, match=match):
        list(segment.decode(data, after=after, upto=upto))


def snap(kind: str, metadata: dict[str, Any], *, time: str = "2026-12-06T10:00:00Z", **kw: Any) -> Snapshot:
    s = Snapshot(time=time, tree="00", source={"kind": kind, "uri": "etcd://e", "host": "c1"}, metadata=metadata, **kw)
    s.id = f"{kind}-{len(str(metadata))}-{kw.get('chain') or kw.get('extends') or ''}-{time}"
    return s


def full(rev: int, after: int | None = None, chain: str = "c", time: str = "2026-12-06T10:00:00Z") -> Snapshot:
    meta = {"etcd": {"revision": rev, "revision_after": rev if after is None else after, "cluster_id": "c1"}}
    return snap("etcd", meta, time=time, chain=chain)


def delta(after: int, upto: int, extends: str = "c", **over: Any) -> Snapshot:
    meta: dict[str, Any] = {
        "format": 1, "cluster_id": "c1", "after_revision": after, "upto_revision": upto,
        "since_ns": after * 10**9, "until_ns": upto * 10**9, "events": upto - after,
        "outage_from_ns": None, "outage_until_ns": None, "endpoint": "e",
    }  # fmt: skip
    meta.update(over)
    return snap("etcd-delta", {"etcd_delta": meta}, extends=extends, time=f"2026-12-06T10:00:{upto:02d}Z")


@pytest.mark.parametrize(
    "over",
    [
        {"format": 2},
        {"after_revision": -1},
        {"upto_revision": "9"},
        {"after_revision": 9, "upto_revision": 3},
        {"since_ns": 10, "until_ns": 5},
        {"events": True},
        {"cluster_id": 7},
        {"outage_from_ns": 5, "outage_until_ns": "x"},
    ],
)
def test_malformed_segment_metadata_is_left_out(over: dict[str, Any]) -> None:
    tl = timeline.build([full(2), delta(2, 5, **over)])["c1"]
    assert tl.segments == [] and tl.window() == (timeline.Point(2, tl.fulls[0].time_ns),) * 2


def test_windows_runs_and_gaps() -> None:
    snaps = [full(2), delta(2, 5), delta(5, 9), delta(12, 15), full(11, chain="d"), delta(11, 12, extends="d")]
    tl = timeline.build(snaps)["c1"]
    assert [(r.after, r.upto) for r in tl.runs()] == [(2, 9), (11, 15)]
    assert [(a.revision, b.revision) for a, b in tl.windows()] == [(2, 9), (11, 15)]
    window = timeline.recovery_window(tl)
    assert (window.gaps, window.full_snapshots, window.delta_segments) == (1, 2, 4)
    f, segs = choose_full(tl, 7)
    assert f.revision == 2 and [(s.after, s.upto) for s in segs] == [(2, 5), (5, 9)]
    with pytest.raises(UsageError, match="gapless"):
        choose_full(tl, 10)
    with pytest.raises(UsageError, match="before the earliest"):
        choose_full(tl, 1)


def test_a_full_snapshot_whose_revision_is_uncertain_is_not_used_past_it() -> None:
    # the state of this snapshot lies somewhere in 5..9: it serves only points from 9 on
    tl = timeline.build([full(2), delta(2, 12), full(5, 9, chain="d", time="2026-12-06T10:00:09Z")])["c1"]
    assert choose_full(tl, 7)[0].revision == 2
    assert choose_full(tl, 10)[0].revision == 5


def test_chain_keys_on_the_wire() -> None:
    plain = Snapshot(time="t", tree="00", source={})
    assert "chain" not in plain.to_wire() and "extends" not in plain.to_wire()
    wire = Snapshot(time="t", tree="00", source={}, chain="k").to_wire()
    assert Snapshot.from_wire(wire, "x").chain == "k"
    hostile = dict(wire, chain={"not": "a key"}, extends=["x"])
    back = Snapshot.from_wire(hostile, "x")
    assert back.chain is None and back.extends is None


def test_attached_snapshots_follow_their_chain() -> None:
    t0 = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    kept_full = Snapshot(time=(t0 + dt.timedelta(hours=1)).isoformat(), tree="00", source={}, chain="new")
    old_full = Snapshot(time=t0.isoformat(), tree="00", source={}, chain="old")
    judged = apply_policy([kept_full, old_full], Policy(last=1))
    seg_new = Snapshot(time="t", tree="00", source={}, extends="new")
    seg_old = Snapshot(time="t", tree="00", source={}, extends="old")
    orphan = Snapshot(time="t", tree="00", source={}, extends="gone")
    out = attached_decisions(judged, [seg_new, seg_old, orphan], {"new", "old"})
    assert [(d.keep, d.reasons) for d in out] == [
        (True, ["with its chain"]),
        (False, []),
        (True, ["chain start missing"]),
    ]
    assert all(isinstance(d, Decision) for d in out)
