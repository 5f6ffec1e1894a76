#!/usr/bin/env bash
# Install the Debian packages kubekeep's tests and demo use, if any is missing.
# zstd: benchmarks; chromium: the web UI's browser tests; etcd-client: etcdctl for demos;
# mmdebstrap, umoci, skopeo: `make image` and tests/image (scripts/image/build.sh).
set -euo pipefail
need=()
for pkg in zstd chromium mmdebstrap umoci skopeo; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${need[*]} (run: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
