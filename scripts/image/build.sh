#!/usr/bin/env bash
# Build kubekeep's OCI image without a container daemon or a registry (docs/image.md):
#   1. mmdebstrap: a minimal Debian root file system (the host's release and apt mirror) with
#      python3; the hook install-kubekeep.sh builds kubekeep's wheel in it and installs it with
#      its dependencies into the venv /opt/kubekeep, then removes the compilers again;
#   2. umoci: an OCI image layout holding that file system as one layer, with its config;
#   3. skopeo: an oci-archive file, ghcr.io/kubekeep/kubekeep:<version>.
#
# usage: scripts/image/build.sh   (env: ARCH=amd64|arm64, OUT=build/image, PYTHON=python3, SUITE)
# Writes $OUT/oci-$ARCH (an OCI image layout) and $OUT/kubekeep-<version>-$ARCH.oci.tar (its archive).
# Needs root (mmdebstrap's root mode), mmdebstrap, umoci, skopeo (scripts/system-deps.sh); a
# foreign ARCH also needs qemu-user-static with binfmt_misc (mmdebstrap runs its packages' scripts).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ARCH=${ARCH:-amd64}
OUT=$(realpath -m "${OUT:-$repo/build/image}")
PYTHON=${PYTHON:-python3}
SUITE=${SUITE:-$(. /etc/os-release && echo "$VERSION_CODENAME")}
IMAGE_NAME=${IMAGE_NAME:-ghcr.io/kubekeep/kubekeep}

case "$ARCH" in
  amd64) ;;
  arm64) ;;
  *) echo "ARCH must be amd64 or arm64, not $ARCH" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "scripts/image/build.sh: needs root (mmdebstrap's root mode)" >&2; exit 1; }

# the same Debian mirror and suites (release, updates, security) as this machine's apt
mapfile -t sources < <(apt-get indextargets --no-release-info --format 'deb $(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' \
  | awk -v s="$SUITE" '$3 == s || $3 == s "-updates" || $3 == s "-security"' | sort -u)
[ ${#sources[@]} -gt 0 ] || sources=("deb http://deb.debian.org/debian $SUITE main")

mkdir -p "$OUT"
# reproducible timestamps: the commit's time (mmdebstrap and umoci honour it)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH

rootfs_tar="$OUT/rootfs-$ARCH.tar"
# python3 and the shared libraries the dependencies' wheels link to (manylinux: libstdc++, libgcc);
# ca-certificates for HTTPS to S3 and API servers. gcc, libc6-dev and python3-dev build the C
# chunker and leave again in the hook (install-kubekeep.sh). The merged-usr hooks set up merged
# /usr without the usrmerge package (and the perl it needs).
KUBEKEEP_SRC=$repo KUBEKEEP_OUT=$OUT PYTHON=$PYTHON mmdebstrap \
  --variant=apt \
  --architectures="$ARCH" \
  --include=python3,libstdc++6,ca-certificates,gcc,libc6-dev,python3-dev \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --customize-hook="$here/install-kubekeep.sh \"\$1\"" \
  --quiet \
  "$SUITE" "$rootfs_tar" "${sources[@]}"

version=$(cat "$OUT/version")
layout="$OUT/oci-$ARCH"
rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci raw add-layer --image "$layout:$version" "$rootfs_tar"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
label=(
  "org.opencontainers.image.title=kubekeep"
  "org.opencontainers.image.description=Back up Kubernetes clusters (etcd, manifests, volumes) into a deduplicated, encrypted snapshot repository; also the agent of its helper pods"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.created=$created"
  "org.opencontainers.image.licenses=Apache-2.0"
  "org.opencontainers.image.source=https://github.com/kubekeep/kubekeep"
  "org.opencontainers.image.base.name=debian:$SUITE"
)
config=(
  --os=linux --architecture="$ARCH" --created="$created" --author="kubekeep"
  --config.user=65532:65532
  --config.entrypoint=/opt/kubekeep/bin/kubekeep
  --config.cmd=--help
  --config.workingdir=/tmp
  --config.exposedports=8765/tcp
  --history.created_by="scripts/image/build.sh (mmdebstrap $SUITE $ARCH, kubekeep $version)"
)
while IFS= read -r line; do config+=(--config.env="$line"); done <"$here/env"
for l in "${label[@]}"; do config+=(--config.label="$l" --manifest.annotation="$l"); done
umoci config --image "$layout:$version" "${config[@]}"
umoci gc --layout "$layout"

archive="$OUT/kubekeep-$version-$ARCH.oci.tar"
rm -f "$archive"
skopeo --insecure-policy copy --quiet "oci:$layout:$version" "oci-archive:$archive:$IMAGE_NAME:$version"
rm -f "$rootfs_tar"  # the layout holds it (compressed)
echo "$IMAGE_NAME:$version ($ARCH): $archive" >&2
