"""Builds kubekeep's compiled modules: the keyed-gear FastCDC chunker (C,
src/kubekeep/engine/_gearcdc.c) and the per-blob path (Rust, rust/seal: reading small files,
keyed BLAKE3, zstd, AES-256-GCM; setuptools-rust runs cargo with rust/seal/Cargo.lock).
Everything else about the package is in pyproject.toml.

Without a cargo on PATH, a Rust toolchain is installed for the build into the user's cache
directory by puccinialin (rustup's official installer, nothing installed system-wide)."""

import os
import shutil

from setuptools import Extension, setup
from setuptools_rust import Binding, RustExtension

if shutil.which("cargo") is None:
    from puccinialin import setup_rust

    print("kubekeep: no cargo on PATH; installing a Rust toolchain for the build (puccinialin)")
    os.environ.update(setup_rust())

setup(
    ext_modules=[Extension("kubekeep.engine._gearcdc", ["src/kubekeep/engine/_gearcdc.c"], extra_compile_args=["-O3"])],
    rust_extensions=[
        RustExtension(
            "kubekeep.engine._seal",
            path="rust/seal/Cargo.toml",
            binding=Binding.PyO3,
            py_limited_api="auto",  # abi3-py311, from the crate's pyo3 features
            args=["--locked"],
            debug=False,  # release also for `pip install -e .` (an in-place build would be a debug one)
        )
    ],
)
