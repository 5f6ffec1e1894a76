# syntax=docker/dockerfile:1
# The kubekeep agent image: what kubekeep's helper pods run beside a volume (docs/volumes.md).
#
#   docker build -t ghcr.io/kubekeep/kubekeep:0.1.0 .
#
# Only the agent's own dependencies are installed (chunking, hashing, compression, sealing):
# no Kubernetes client, no storage or CLI libraries. The entry point is `python -m kubekeep.agent`
# (the same code as `kubekeep agent`). The image runs as root because reading every file of a
# volume, whatever its owner and mode, needs uid 0; the helper pod drops every capability but
# DAC_READ_SEARCH (backups) or CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID (restores),
# and mounts this image read-only.

ARG PYTHON=python:3.11-slim-bookworm

FROM ${PYTHON} AS build
# kubekeep's chunker is a small C extension (src/kubekeep/engine/_gearcdc.c): compiled here, in the
# build stage only; the slim image already has Python's headers
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
# keep this list in step with what kubekeep.agent imports (tests/volumes/test_agent.py checks it)
RUN pip install --no-cache-dir --root-user-action=ignore --prefix=/install --no-deps . \
 && pip install --no-cache-dir --root-user-action=ignore --prefix=/install \
        "pyfastcdc>=0.3.1,<0.4" "blake3>=1.0,<2" "zstandard>=0.23" "cryptography>=43" "msgpack>=1.0"

FROM ${PYTHON}
LABEL org.opencontainers.image.title="kubekeep agent" \
      org.opencontainers.image.description="Serves a mounted volume to kubekeep: chunks and hashes locally, sends only the chunks the repository lacks" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /install /usr/local
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 0
EXPOSE 8765
ENTRYPOINT ["python", "-m", "kubekeep.agent"]
CMD ["--help"]
