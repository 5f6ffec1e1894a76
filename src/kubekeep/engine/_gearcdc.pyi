from typing_extensions import Buffer

class GearCDC:
    """FastCDC 2020 (pyfastcdc's normalized cut rule) with a custom gear table: 256 little-endian
    64-bit values, 2048 bytes; the left-shifted table is derived from it."""

    def __init__(self, gear: Buffer, min_size: int, avg_size: int, max_size: int, normalization: int = 1) -> None: ...
    def cut_buf(self, buf: Buffer) -> list[int]:
        """The end offset of every chunk of ``buf``, ascending; the last is ``len(buf)`` (none
        for an empty buffer). Scans without holding the GIL."""
    @property
    def min_size(self) -> int: ...
    @property
    def avg_size(self) -> int: ...
    @property
    def max_size(self) -> int: ...
