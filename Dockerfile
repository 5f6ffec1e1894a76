# syntax=docker/dockerfile:1
# The kubekeep image for those who have Docker: the CLI and the agent of its helper pods, the same
# as `make image` builds without a daemon (scripts/image/build.sh, docs/image.md):
#
#   docker build -t ghcr.io/kubekeep/kubekeep:0.1.0 .
#
# Both install kubekeep with the dependencies pyproject.toml lists, nothing else, into the venv
# /opt/kubekeep, run as the user kubekeep (65532) with the same environment, and start `kubekeep`
# (tests/image/test_dependencies.py checks that they agree). Helper pods run `kubekeep agent` as
# root (reading every file of a volume, whatever its owner and mode, needs uid 0) with every
# capability dropped but DAC_READ_SEARCH (backups) or CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER,
# FSETID (restores), or as a non-root user with --helper-user; the root filesystem can be read-only.

ARG PYTHON=python:3.11-slim-bookworm
# the Rust toolchain that builds kubekeep.engine._seal (rust/seal), pinned; the same Debian release
ARG RUST=rust:1.95-slim-bookworm

FROM ${RUST} AS rust

FROM ${PYTHON} AS build
# kubekeep's chunker is a small C extension (src/kubekeep/engine/_gearcdc.c) and its per-blob path
# a Rust one (rust/seal): both compiled here, in the build stage only, with the rust stage's
# toolchain (cargo on PATH, so setup.py installs none); the slim image already has Python's headers
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY src ./src
# the Rust module _seal: cargo builds it with rust/seal/Cargo.lock (--locked); only the wheel's .so
# reaches the final stage
COPY rust ./rust
RUN python -m venv /opt/kubekeep \
 && /opt/kubekeep/bin/pip install --no-cache-dir . \
 && /opt/kubekeep/bin/pip uninstall -y pip setuptools

FROM ${PYTHON}
LABEL org.opencontainers.image.title="kubekeep" \
      org.opencontainers.image.description="Back up Kubernetes clusters (etcd, manifests, volumes) into a deduplicated, encrypted snapshot repository; also the agent of its helper pods" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kubekeep/kubekeep"
COPY --from=build /opt/kubekeep /opt/kubekeep
RUN echo 'kubekeep:x:65532:65532:kubekeep:/home/kubekeep:/usr/sbin/nologin' >>/etc/passwd \
 && echo 'kubekeep:x:65532:' >>/etc/group \
 && install -d -o 65532 -g 65532 -m 0750 /home/kubekeep
# the same as scripts/image/env
ENV PATH=/opt/kubekeep/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/home/kubekeep \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    KUBEKEEP_CACHE_DIR=/tmp/kubekeep-cache \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /tmp
EXPOSE 8765
ENTRYPOINT ["/opt/kubekeep/bin/kubekeep"]
CMD ["--help"]
