"""Sizes and durations as people read and write them.

Two duration syntaxes, named apart because ``m`` means different things in them:
:func:`parse_timeout` reads waits and time limits as kubectl does (``30s``, ``2m``, ``1m30s``:
``m`` is a minute), :func:`parse_period` reads retention periods as restic does (``7d``, ``1y6m``:
``m`` is a month).
"""

from __future__ import annotations

import datetime as dt
import re

from kubekeep import errors

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_TIMEOUT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PERIOD_HOURS = {"y": 365 * 24, "m": 30 * 24, "w": 7 * 24, "d": 24, "h": 1}


def human_size(n: float, decimals: int = 2) -> str:
    """``1536`` -> ``1.50 KiB`` (binary units; bytes without decimals)."""
    for unit in _SIZE_UNITS:
        if abs(n) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.{decimals}f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parse_timeout(text: str) -> float:
    """Seconds in a wait or time limit: ``30``, ``30s``, ``2m``, ``1h``, ``1m30s``, ``500ms``
    (a bare number is seconds; ``m`` is a minute)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise errors.UsageError(f"bad duration {text!r}: expected e.g. 30s, 2m or 1m30s")
    return sum(float(n) * _TIMEOUT_SECONDS[u] for n, u in parts)


def human_duration(seconds: float) -> str:
    """``600`` -> ``10m``, ``90`` -> ``1m30s``, ``12.5`` -> ``12.5s`` (what parse_timeout reads back)."""
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{rest}s" if rest else "")


def parse_period(text: str) -> dt.timedelta:
    """A retention period: ``2d``, ``12h``, ``1y2m3d4h`` (y = 365 days, ``m`` = a month of 30
    days, w = 7 days)."""
    if not re.fullmatch(r"((\d+)[ymwdh])+", text.strip()):
        raise errors.UsageError(f"invalid duration {text!r} (use e.g. 7d, 12h, 1y6m)")
    hours = sum(int(n) * _PERIOD_HOURS[u] for n, u in re.findall(r"(\d+)([ymwdh])", text))
    return dt.timedelta(hours=hours)


_LOCK_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "s": 1}


def parse_lock_period(text: str) -> dt.timedelta:
    """An Object Lock period: ``30`` (days), ``30d``, ``12h``, ``1y``, ``2w``, ``5s`` (seconds, for
    tests), or a sum such as ``1d12h``. No ``m``: it would be a minute in one syntax, a month in
    the other."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return dt.timedelta(days=int(text))
    if not re.fullmatch(r"(\d+[ywdhs])+", text):
        raise errors.UsageError(f"invalid Object Lock period {text!r} (use e.g. 30 or 30d, 12h, 1y, 5s)")
    return dt.timedelta(seconds=sum(int(n) * _LOCK_SECONDS[u] for n, u in re.findall(r"(\d+)([ywdhs])", text)))


_SIZE_FACTORS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2}
_SIZE_FACTORS |= {"g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """Bytes: ``4096``, ``512KiB``, ``8MiB``, ``1GB`` (KiB/MiB/GiB binary, KB/MB/GB decimal)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    factor = _SIZE_FACTORS.get(m.group(2).lower()) if m else None
    if m is None or factor is None:
        raise errors.UsageError(f"bad size {text!r}: expected e.g. 512KiB, 8MiB or 1GiB")
    return int(float(m.group(1)) * factor)


def parse_instant(text: str) -> dt.datetime:
    """A point in time, ISO 8601: ``2026-12-06T14:00:00Z``, ``2026-12-06 14:00:00+01:00``, or
    without a zone (local time, as ``date`` prints it)."""
    try:
        when = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise errors.UsageError(f"bad time {text!r}: expected ISO 8601, e.g. 2026-12-06T14:00:00Z") from None
    return when if when.tzinfo is not None else when.astimezone()
