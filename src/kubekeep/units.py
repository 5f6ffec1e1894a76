"""Sizes and durations as people read and write them."""

from __future__ import annotations

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(n: float, decimals: int = 2) -> str:
    """``1536`` -> ``1.50 KiB`` (binary units; bytes without decimals)."""
    for unit in _SIZE_UNITS:
        if abs(n) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.{decimals}f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
