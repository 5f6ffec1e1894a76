"""A pod sandbox's holder process (the "pause" container), run inside fresh mount and network
namespaces by :mod:`testenv.simcsi.runtime`::

    unshare --mount --net --propagation private -- python -m testenv.simcsi.sandbox SPEC.json

It brings up the namespace's loopback, builds each container's root filesystem (a tmpfs with
the image's host directories bind-mounted read-only, the pod's volumes at their mount paths,
a minimal /dev), prints ``ready`` and then holds the namespaces until its stdin closes.
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
    for name in _USR_LINKS:
        host = Path("/") / name
        if host.is_symlink():
            os.symlink(os.readlink(host), root / name)
    for path in container["image_paths"]:
        _bind(path, root / path.lstrip("/"), read_only=True)
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    for name in _DEVICES:
        if Path(f"/dev/{name}").exists():
            _bind(f"/dev/{name}", dev / name, read_only=False)
    _bind("/proc", root / "proc", read_only=True)
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    for mount in container["mounts"]:
        _bind(mount["host"], root / mount["path"].lstrip("/"), read_only=mount["read_only"])
    if container["read_only_root"]:
        _mount("-o", "remount,ro", str(root))


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
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
