"""Retention policies against restic's documented behaviour (doc/060_forget.rst): calendar
buckets newest first, options ORed, ISO weeks, 'unlimited', and the oldest snapshot kept while a
bucket still has counts left."""

from __future__ import annotations

import datetime as dt

import pytest

from kubekeep.engine.retention import Policy, apply_policy, group_key
from kubekeep.engine.snapshot import Snapshot
from kubekeep.errors import UsageError
from kubekeep.units import parse_period, parse_timeout


def snap(when: dt.datetime | str, tags: tuple[str, ...] = (), host: str = "h", uri: str = "fs:/x") -> Snapshot:
    if isinstance(when, str):
        when = dt.datetime.fromisoformat(when)
    t = when.replace(tzinfo=dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    s = Snapshot(time=t, tree="00" * 32, source={"uri": uri, "host": host}, tags=list(tags))
    s.id = t
    return s


def kept(snaps: list[Snapshot], policy: Policy) -> list[str]:
    return sorted(d.snapshot.time[:19] for d in apply_policy(snaps, policy) if d.keep)


def daily(first: dt.date, last: dt.date, hour: int = 11) -> list[Snapshot]:
    out, day = [], first
    while day <= last:
        out.append(snap(dt.datetime(day.year, day.month, day.day, hour)))
        day += dt.timedelta(days=1)
    return out


def test_restic_example_twelve_sundays_keep_daily_4() -> None:
    sundays = [snap(dt.datetime(2019, 9, 1, 11) + dt.timedelta(weeks=i)) for i in range(12)]
    assert kept(sundays, Policy(daily=4)) == [
        "2019-10-27T11:00:00",
        "2019-11-03T11:00:00",
        "2019-11-10T11:00:00",
        "2019-11-17T11:00:00",
    ]


def test_keep_last_and_newest_of_each_day() -> None:
    snaps = [snap(f"2020-03-0{d}T{h:02d}:00:00") for d in (1, 2, 3) for h in (8, 12, 20)]
    assert kept(snaps, Policy(last=3)) == ["2020-03-03T08:00:00", "2020-03-03T12:00:00", "2020-03-03T20:00:00"]
    assert kept(snaps, Policy(daily=2)) == ["2020-03-02T20:00:00", "2020-03-03T20:00:00"]
    # ORed: the newest two plus the newest of each of three days
    assert kept(snaps, Policy(last=2, daily=3)) == [
        "2020-03-01T20:00:00",
        "2020-03-02T20:00:00",
        "2020-03-03T12:00:00",
        "2020-03-03T20:00:00",
    ]


def test_oldest_snapshot_kept_while_counts_are_left() -> None:
    snaps = [snap(f"2020-03-0{d}T{h:02d}:00:00") for d in (1, 2) for h in (8, 20)]
    # two days only, five daily wanted: the newest of each day, and the oldest snapshot too
    assert kept(snaps, Policy(daily=5)) == ["2020-03-01T08:00:00", "2020-03-01T20:00:00", "2020-03-02T20:00:00"]
    reasons = {d.snapshot.time[:19]: d.reasons for d in apply_policy(snaps, Policy(daily=5))}
    assert any("oldest" in r for r in reasons["2020-03-01T08:00:00"])
    # keep-last counts every snapshot: nothing "oldest" to add
    assert len(kept(snaps, Policy(last=3))) == 3


def test_weeks_are_iso_weeks_monday_to_sunday() -> None:
    sunday, monday = snap("2019-11-17T23:00:00"), snap("2019-11-18T01:00:00")
    assert kept([sunday, monday], Policy(weekly=1)) == ["2019-11-18T01:00:00"]
    assert kept([sunday, monday], Policy(weekly=2)) == ["2019-11-17T23:00:00", "2019-11-18T01:00:00"]
    # the ISO year differs from the calendar year around new year
    a, b = snap("2019-12-30T12:00:00"), snap("2020-01-05T12:00:00")  # both 2020-W01
    assert kept([a, b], Policy(weekly=1)) == ["2020-01-05T12:00:00"]


def test_monthly_and_hourly() -> None:
    snaps = daily(dt.date(2020, 1, 1), dt.date(2020, 4, 15))
    assert kept(snaps, Policy(monthly=3)) == ["2020-02-29T11:00:00", "2020-03-31T11:00:00", "2020-04-15T11:00:00"]
    hours = [snap(f"2020-05-05T{h:02d}:{m:02d}:00") for h in (9, 10, 11) for m in (0, 30)]
    assert kept(hours, Policy(hourly=2)) == ["2020-05-05T10:30:00", "2020-05-05T11:30:00"]


def test_restic_daily_weekly_monthly_yearly_example() -> None:
    # "one backup every day ... --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75",
    # here over three calendar years ending on Tuesday 2019-12-31
    snaps = daily(dt.date(2017, 1, 1), dt.date(2019, 12, 31))
    result = kept(snaps, Policy(daily=7, weekly=5, monthly=12, yearly=75))
    days = [f"2019-12-{d}" for d in range(25, 32)]  # 7 daily
    weeks = ["2019-12-08", "2019-12-15", "2019-12-22"]  # weekly beyond the dailies
    months = [
        f"2019-{m:02d}-{d}"
        for m, d in [
            (1, 31),
            (2, 28),
            (3, 31),
            (4, 30),
            (5, 31),
            (6, 30),
            (7, 31),
            (8, 31),
            (9, 30),
            (10, 31),
            (11, 30),
        ]
    ]  # 11 monthly beyond Dec 31
    years = ["2017-12-31", "2018-12-31"]  # yearly beyond 2019
    oldest = ["2017-01-01"]  # yearly counts are left
    assert result == sorted(f"{d}T11:00:00" for d in days + weeks + months + years + oldest)


def test_unlimited_keeps_every_bucket() -> None:
    snaps = [snap(f"2020-03-0{d}T{h:02d}:00:00") for d in (1, 2, 3) for h in (8, 20)]
    assert kept(snaps, Policy(daily=-1)) == [
        "2020-03-01T08:00:00",
        "2020-03-01T20:00:00",
        "2020-03-02T20:00:00",
        "2020-03-03T20:00:00",
    ]


def test_keep_within_is_relative_to_the_newest_snapshot() -> None:
    newest = snap("2020-01-10T12:00:00")
    on_edge = snap("2020-01-08T12:00:00")  # exactly 2 days older: restic does not keep it
    inside = snap("2020-01-08T12:00:01")
    old = snap("2019-12-01T00:00:00")
    assert kept([newest, on_edge, inside, old], Policy(within=dt.timedelta(days=2))) == [
        "2020-01-08T12:00:01",
        "2020-01-10T12:00:00",
    ]


def test_keep_tag_and_empty_policy() -> None:
    snaps = [
        snap("2020-01-01T00:00:00", ("monthly-archive",)),
        snap("2020-01-02T00:00:00"),
        snap("2020-01-03T00:00:00", ("other",)),
    ]
    assert kept(snaps, Policy(keep_tags=["monthly-archive"], last=1)) == ["2020-01-01T00:00:00", "2020-01-03T00:00:00"]
    both = snap("2020-01-04T00:00:00", ("a", "b"))
    assert kept([*snaps, both], Policy(keep_tags=["a,b"])) == ["2020-01-04T00:00:00"]
    assert kept([*snaps, both], Policy(keep_tags=["a,other"])) == []
    assert Policy().empty() and not Policy(yearly=1).empty()
    assert all(not d.keep for d in apply_policy(snaps, Policy(keep_tags=["absent"])))


def test_grouping_and_durations() -> None:
    a, b = snap("2020-01-01T00:00:00", host="one"), snap("2020-01-01T00:00:00", host="two", uri="fs:/y")
    assert group_key(a, ("host", "source")) == ("one", "fs:/x")
    assert group_key(b, ("host",)) == ("two",)
    assert parse_period("7d") == dt.timedelta(days=7)
    assert parse_period("1d12h") == dt.timedelta(hours=36)
    with pytest.raises(UsageError):
        parse_period("3x")


def test_m_is_a_month_in_periods_and_a_minute_in_timeouts() -> None:
    assert parse_period("1m") == dt.timedelta(days=30)
    assert parse_timeout("1m") == 60.0
    assert parse_timeout("1m30s") == parse_timeout("90") == 90.0
    with pytest.raises(UsageError, match="bad duration"):
        parse_timeout("1d")
