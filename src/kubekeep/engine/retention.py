"""Retention policies (``forget --keep-*``), with restic's semantics.

Snapshots are grouped (by default by host and source); within each group, newest first, a
snapshot is kept if it is among the ``last`` N, or is the newest of its hour/day/week/month/year
while that bucket's count lasts (a negative count is unlimited; the group's oldest snapshot is
kept too while a count is left), or carries a ``keep_tags`` tag, or is less than ``within`` older
than the group's newest snapshot. Everything else is removed.

A snapshot attached to a chain (``Snapshot.extends``, e.g. an etcd delta segment) is not
judged by the policy: it is kept while a kept snapshot starts its chain (``Snapshot.chain``),
and kept when no snapshot in the repository starts it (a policy never removes what it cannot
place).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from kubekeep.engine.snapshot import Snapshot


@dataclass
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: dt.timedelta | None = None
    keep_tags: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.last
            or self.hourly
            or self.daily
            or self.weekly
            or self.monthly
            or self.yearly
            or self.within
            or self.keep_tags
        )


_BUCKETS: list[tuple[str, Callable[[dt.datetime], object]]] = [
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: t.isocalendar()[:2]),
    ("monthly", lambda t: (t.year, t.month)),
    ("yearly", lambda t: t.year),
]


@dataclass
class Decision:
    snapshot: Snapshot
    keep: bool
    reasons: list[str]


def apply_policy(snaps: list[Snapshot], policy: Policy) -> list[Decision]:
    """Decide for one group of snapshots (any order); returns decisions newest first."""
    ordered = sorted(snaps, key=lambda s: s.time, reverse=True)
    remaining = {name: getattr(policy, name) for name, _ in _BUCKETS}
    last_bucket: dict[str, object] = {}
    newest = ordered[0].datetime if ordered else None
    out = []
    for i, snap in enumerate(ordered):
        reasons = []
        t = snap.datetime
        if i < policy.last or policy.last < 0:
            reasons.append("last")
        oldest = i == len(ordered) - 1
        for name, bucket_of in _BUCKETS:
            if remaining[name] != 0:  # negative: unlimited
                bucket = bucket_of(t)
                # as restic: the oldest snapshot is kept too while the bucket has counts left
                if last_bucket.get(name) != bucket or oldest:
                    reasons.append(name if last_bucket.get(name) != bucket else f"oldest {name}")
                    last_bucket[name] = bucket
                    if remaining[name] > 0:
                        remaining[name] -= 1
        if policy.within is not None and newest is not None and newest - t < policy.within:
            reasons.append("within")
        # as restic: each keep_tags entry is a comma-separated list, all of which must be present
        if any(set(filter(None, entry.split(","))) <= set(snap.tags) for entry in policy.keep_tags):
            reasons.append("tag")
        out.append(Decision(snap, bool(reasons), reasons))
    return out


def group_key(snap: Snapshot, group_by: tuple[str, ...]) -> tuple[str, ...]:
    parts = []
    for g in group_by:
        if g == "host":
            parts.append(str(snap.source.get("host") or snap.hostname))
        elif g == "source":
            parts.append(snap.uri)
        elif g == "tags":
            parts.append(",".join(snap.tags))
        elif g == "kind":
            parts.append(snap.kind)
    return tuple(parts)


def attached_decisions(judged: list[Decision], attached: list[Snapshot], starters: set[str]) -> list[Decision]:
    """Decide for attached snapshots from the decisions on the others: kept with the snapshot
    that starts their chain, removed with it. ``starters``: every chain key that some snapshot
    in the repository starts (judged or not)."""
    kept_chains = {d.snapshot.chain for d in judged if d.keep and d.snapshot.chain}
    out = []
    for snap in attached:
        if snap.extends in kept_chains:
            out.append(Decision(snap, True, ["with its chain"]))
        elif snap.extends not in starters:
            out.append(Decision(snap, True, ["chain start missing"]))
        else:
            out.append(Decision(snap, False, []))
    return out
