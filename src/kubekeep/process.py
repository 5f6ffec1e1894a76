"""Process-wide settings for the ``kubekeep`` program (not applied when kubekeep is imported as
a library): the C allocator's thresholds, BLAS threads and the cyclic garbage collector.

Measured on the engine benchmark (docs in bench/README.md): glibc's default ``mmap`` threshold
starts at 128 KiB and only grows as mmapped blocks are freed, and its heap is trimmed whenever
more than twice that is free at the top, so the chunk-sized buffers a backup allocates and frees
by the thousand (0.25-8 MiB each) were mostly fresh mappings: a page fault per 4 KiB on first
touch and a TLB shootdown across threads on every ``munmap``. Fixing both thresholds keeps those
buffers on the heap for reuse (first backup: 40 % fewer page faults, a third less system time).
Peak memory stays bounded by the pipeline's own limits; the heap's high-water mark is simply not
handed back before exit.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

# mallopt(3) parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: blocks at least this large still get their own mapping (glibc's ceiling for the threshold on
#: 64-bit systems is 32 MiB); packs (16 MiB) and chunks (at most 8 MiB) stay below it
MMAP_THRESHOLD = 32 * 1024 * 1024
#: one malloc arena for every thread: glibc gives each new thread (backup workers, sealers,
#: uploaders) an arena of its own, and each kept its own high-water mark of chunk and pack
#: buffers (first backup of the engine benchmark: peak 220 -> 197 MB, no slower; the big
#: buffers are few, so threads hardly ever wait on the arena's lock; Python's small objects
#: do not come from malloc)
ARENA_MAX = 1
#: free memory at the top of the heap kept for reuse before giving it back to the kernel
TRIM_THRESHOLD = 256 * 1024 * 1024
#: allocations (less deallocations) between collections of the youngest generation (Python's
#: default is 700), and collections of one generation between those of the next
GC_THRESHOLDS = (50_000, 20, 20)


def tune() -> None:
    """Apply the settings; call once, before numpy is imported and before any threads start."""
    # numpy's OpenBLAS starts a spinning thread per core at import; kubekeep does no linear algebra
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    _tune_glibc_malloc()
    # a backup or a restore makes millions of small acyclic objects (tree nodes, ids): collect
    # the youngest generation less often
    gc.set_threshold(*GC_THRESHOLDS)


def _tune_glibc_malloc() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        # the running program's own symbols, glibc's where it is glibc (ctypes.util.find_library
        # imports subprocess and more: ~20 ms of every command's start-up)
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(_M_ARENA_MAX, ARENA_MAX)
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
