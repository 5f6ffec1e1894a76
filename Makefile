# kubekeep: the two set-up commands are `make demo` (the main job, end to end on a throwaway local
# cluster and a local repository) and `make test` (the whole test suite). Both install what they need.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint binaries bench-engine system-deps image clean

$(STAMP): pyproject.toml setup.py src/kubekeep/engine/_gearcdc.c rust/seal/Cargo.toml rust/seal/Cargo.lock rust/seal/src/lib.rs
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Debian packages the tests and the demo use (skipped when already installed).
system-deps:
	@bash scripts/system-deps.sh

# pinned upstream binaries (etcd, Kubernetes, kwok, Helm, the MinIO S3 test server, the distribution
# OCI registry), built once into
# ~/.cache/kubekeep-testenv
binaries: $(STAMP)
	$(PY) -m testenv build

demo: $(STAMP) system-deps binaries
	$(PY) scripts/demo.py

# the habits the code follows, checked: one style (ruff), types (mypy --strict), layers (import-linter)
LINTED := src tests testenv bench scripts
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: $(STAMP) system-deps binaries lint
	$(PY) -m pytest -q

# engine, storage and CLI tests only (no local control plane; MinIO and the registry are built on first use)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not cluster"

# the OCI image (CLI and agent), daemonless, from Debian's packages: build/image/ (docs/image.md);
# ARCH=arm64 for arm64 (needs qemu-user-static)
image: $(STAMP) system-deps
	PYTHON=$(abspath $(PY)) bash scripts/image/build.sh

bench-engine: $(STAMP)
	$(PY) bench/bench_engine.py

clean:
	rm -rf $(VENV) .pytest_cache
