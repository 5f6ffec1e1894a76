"""Builds kubekeep's C extension, the keyed-gear FastCDC chunker (src/kubekeep/engine/_gearcdc.c).
Everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("kubekeep.engine._gearcdc", ["src/kubekeep/engine/_gearcdc.c"],
                             extra_compile_args=["-O3"])])
