#!/usr/bin/env bash
# mmdebstrap's customize hook for scripts/image/build.sh: runs on the host, with the new root
# file system at $1. Downloads kubekeep's dependencies as wheels for the image's platform (with
# the host's pip and its configuration), builds kubekeep's wheel inside the root file system
# (its C chunker, and its Rust module with the host's Rust toolchain, mounted read-only for that
# build only, and the crates of rust/seal/Cargo.lock, vendored on the host), installs both offline into the venv /opt/kubekeep, removes the compilers,
# and adds the image's user, kubekeep (65532:65532).
set -euo pipefail
root=$1
src=${KUBEKEEP_SRC:?}
out=${KUBEKEEP_OUT:?}
here=$(cd "$(dirname "$0")" && pwd)
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

read -r pyver machine glibc < <(in_root python3 -c \
  'import platform, sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine(), platform.libc_ver()[1].replace(".", "_"))')

mkdir -p "$root/tmp/src" "$root/tmp/wheels" "$root/tmp/dist" "$root/tmp/cargo"
tar -C "$src" --exclude=__pycache__ --exclude='*.so' --exclude='*.pyc' --exclude=rust/seal/target \
  -cf - pyproject.toml setup.py MANIFEST.in README.md src rust | tar -C "$root/tmp/src" -xf -

# Rust (kubekeep.engine._seal): Debian's rustc is too old for the crates, so the build borrows the
# host's toolchain (the same Debian release, so the same glibc), mounted read-only at /opt/rust and
# unmounted again whatever happens; the crates Cargo.lock names are vendored into the root file
# system here, on the host, and cargo runs offline. Nothing of either stays in the image.
PATH=$PATH:${CARGO_HOME:-$HOME/.cargo}/bin  # rustup's default place
[ "$machine" = "$(uname -m)" ] || { echo "install-kubekeep.sh: _seal builds with the host's Rust toolchain, which cannot run in a $machine root" >&2; exit 1; }
sysroot=$(rustc --print sysroot)  # the toolchain rustup's rustc proxy would run (or rustc itself)
[ -x "$sysroot/bin/cargo" ] || { echo "install-kubekeep.sh: no cargo in $sysroot (install Rust with rustup)" >&2; exit 1; }
cargo vendor --quiet --locked --versioned-dirs --manifest-path "$src/rust/seal/Cargo.toml" "$root/tmp/cargo/vendor" >/dev/null
printf '%s\n' '[source.crates-io]' 'replace-with = "vendored"' '[source.vendored]' 'directory = "/tmp/cargo/vendor"' \
  '[net]' 'offline = true' >"$root/tmp/cargo/config.toml"
toolchain=$root/opt/rust
unmount_rust() { if mountpoint -q "$toolchain"; then umount "$toolchain"; fi; rmdir "$toolchain" 2>/dev/null || true; }
trap unmount_rust EXIT

# every manylinux tag the image's glibc accepts (pip does not expand a given one), legacy names too
platforms=()
for minor in $(seq "${glibc#2_}" -1 5); do platforms+=("--platform=manylinux_2_${minor}_${machine}"); done
platforms+=("--platform=manylinux2014_${machine}" "--platform=manylinux2010_${machine}" "--platform=manylinux1_${machine}")
fetch=("$PYTHON" -m pip download --quiet --dest "$root/tmp/wheels" --only-binary=:all:
  --implementation=cp --python-version="$pyver" --abi="cp${pyver/./}" "${platforms[@]}")
"${fetch[@]}" -r <("$PYTHON" "$here/requirements.py")
"${fetch[@]}" -r <("$PYTHON" "$here/requirements.py" --build)
"${fetch[@]}" --no-deps pip

pip_whl=$(cd "$root/tmp/wheels" && ls pip-*.whl | head -n1)
pip=(/opt/kubekeep/bin/python "/tmp/wheels/$pip_whl/pip" --disable-pip-version-check --no-cache-dir
  --no-input)
in_root python3 -m venv --without-pip /opt/kubekeep
mkdir -p "$toolchain"
mount --bind "$sysroot" "$toolchain"
mount -o remount,bind,ro "$toolchain"
chroot "$root" /usr/bin/env -i PATH=/opt/rust/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  CARGO_HOME=/tmp/cargo CARGO_NET_OFFLINE=true \
  "${pip[@]}" wheel --quiet --no-index --find-links=/tmp/wheels --no-deps --wheel-dir=/tmp/dist /tmp/src
unmount_rust
[ ! -e "$toolchain" ] || { echo "install-kubekeep.sh: $toolchain is still there" >&2; exit 1; }
kubekeep_whl=$(cd "$root/tmp/dist" && ls kubekeep-*.whl)
in_root "${pip[@]}" install --root-user-action=ignore --quiet --no-index --find-links=/tmp/wheels "/tmp/dist/$kubekeep_whl"
in_root "${pip[@]}" check
in_root /opt/kubekeep/bin/kubekeep --version | awk '{print $NF}' >"$out/version"

# what only the build needed, binutils too (python3.11 suggests it: apt keeps suggestions by default)
in_root apt-get purge --quiet --yes --autoremove -o APT::AutoRemove::SuggestsImportant=false \
  -o APT::AutoRemove::RecommendsImportant=false gcc libc6-dev python3-dev >/dev/null
rm -rf "$root"/tmp/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* \
  "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old

echo 'kubekeep:x:65532:65532:kubekeep:/home/kubekeep:/usr/sbin/nologin' >>"$root/etc/passwd"
echo 'kubekeep:x:65532:' >>"$root/etc/group"
install -d -o 65532 -g 65532 -m 0750 "$root/home/kubekeep"
