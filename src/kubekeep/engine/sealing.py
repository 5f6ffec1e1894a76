"""The compiled per-blob path, ``kubekeep.engine._seal`` (Rust, rust/seal): reading small files
whole and naming them (keyed BLAKE3), compressing (zstd) and encrypting (AES-256-GCM) blobs,
a batch per call without the GIL. Imported here, with a clear error in a source tree where it
was never built."""

from __future__ import annotations

try:
    from kubekeep.engine import _seal as compiled
except ImportError as exc:
    raise ImportError(
        "kubekeep's compiled module kubekeep.engine._seal (rust/seal) is not built: install kubekeep "
        "with pip (`pip install -e .` in a checkout; builds it with cargo)"
    ) from exc

__all__ = ["compiled"]
