"""A pod sandbox's holder process (the "pause" container), run inside fresh mount and network
namespaces by :mod:`testenv.simcsi.runtime` (without ``--net`` for a host-network pod)::

    unshare --mount --net --propagation private -- python -m testenv.simcsi.sandbox SPEC.json

It brings up the namespace's loopback, builds each container's root filesystem (a tmpfs with
the image's host directories bind-mounted read-only, or a read-only overlay of one when a
volume is mounted inside it, the pod's volumes at their mount paths, a minimal /dev), prints
``ready`` and then holds the namespaces until its stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: top-level symlinks of a merged-/usr system, recreated in every root filesystem
_USR_LINKS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _bind(source: str, target: Path, *, read_only: bool) -> None:
    if Path(source).is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)
    _mount("--bind", source, str(target))
    if read_only:
        _mount("-o", "remount,bind,ro", str(target))


def build_rootfs(root: Path, container: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", str(root))
    layers = Path(str(root) + ".layers")
    layers.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "mode=700", "tmpfs", str(layers))
    for name in _USR_LINKS:
        host = Path("/") / name
        if host.is_symlink():
            os.symlink(os.readlink(host), root / name)
    overlaid = []
    for path in container["image_paths"]:
        target = root / path.lstrip("/")
        if any(_under(m["path"], path) for m in container["mounts"]):
            # a volume mounted inside the image (say at /etc/kubekeep): an overlay gives the
            # mount point somewhere to be, as a container's writable layer does
            overlaid.append(target)
            upper, work = layers / str(len(overlaid)) / "upper", layers / str(len(overlaid)) / "work"
            for d in (upper, work, target):
                d.mkdir(parents=True, exist_ok=True)
            _mount("-t", "overlay", "overlay", "-o", f"lowerdir={path},upperdir={upper},workdir={work}", str(target))
        else:
            _bind(path, target, read_only=True)
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    for name in _DEVICES:
        if Path(f"/dev/{name}").exists():
            _bind(f"/dev/{name}", dev / name, read_only=False)
    _bind("/proc", root / "proc", read_only=True)
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    for mount in container["mounts"]:
        _bind(mount["host"], root / mount["path"].lstrip("/"), read_only=mount["read_only"])
    # an image directory below a volume's mount point (this checkout's venv under /tmp, hidden
    # by an emptyDir at /tmp) is bound again on top: in a real image it would live elsewhere
    for path in container["image_paths"]:
        if any(_under(path, m["path"]) for m in container["mounts"]):
            _bind(path, root / path.lstrip("/"), read_only=True)
    for target in overlaid:  # the image stays read-only, as its plain binds are
        _mount("-o", "remount,ro", str(target))
    if container["read_only_root"]:
        _mount("-o", "remount,ro", str(root))


def _under(path: str, directory: str) -> bool:
    return Path(path) != Path(directory) and Path(directory) in Path(path).parents


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    if not spec.get("host_network"):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
    for container in spec["containers"]:
        build_rootfs(Path(container["rootfs"]), container)
    print("ready", flush=True)
    sys.stdin.read()  # hold the namespaces until the runtime closes our stdin (or kills us)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except subprocess.CalledProcessError as exc:
        print(f"sandbox setup failed: {' '.join(exc.cmd)}: {exc.stderr.decode(errors='replace').strip()}", flush=True)
        sys.exit(1)
