"""The kubekeep image, built once per input: ``scripts/image/build.sh`` into a cache directory
named by a hash of what goes into it (the build scripts, pyproject.toml, setup.py, src/, rust/), then
unpacked with umoci once per session. The first build takes about two minutes (it
downloads Debian packages and wheels); later sessions only unpack it (seconds)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INPUTS = ("scripts/image", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "src", "rust")
CACHE = Path(os.environ.get("KUBEKEEP_IMAGE_CACHE", Path.home() / ".cache" / "kubekeep-image"))
BUILD_TIMEOUT_S = 1200


@dataclass(frozen=True)
class UnpackedImage:
    """An image's root file system and what its config says to run, as umoci unpacked them."""

    rootfs: Path
    archive: Path
    uid: int
    gid: int
    args: list[str]  # entrypoint + cmd
    env: dict[str, str]
    cwd: str


def inputs_digest() -> str:
    digest = hashlib.sha256()
    for top in INPUTS:
        path = REPO / top
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts or "target" in f.parts or f.suffix in (".so", ".pyc"):
                continue
            digest.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def built_image() -> Path:
    """The build's output directory for the current inputs (built now if not cached)."""
    out = CACHE / inputs_digest()
    if (out / "version").exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.iterdir():  # one image is enough: earlier inputs' builds go
        shutil.rmtree(old, ignore_errors=True)
    partial = out.with_suffix(".partial")
    # the wheels are downloaded with this interpreter's pip (and its configuration)
    env = {**os.environ, "OUT": str(partial), "ARCH": "amd64", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(REPO / "scripts/image/build.sh")], env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    assert result.returncode == 0, f"image build failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    partial.rename(out)
    return out


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnpackedImage]:
    missing = [tool for tool in ("mmdebstrap", "umoci", "skopeo", "unshare") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/system-deps.sh installs them)")
    if os.geteuid() != 0:
        pytest.skip("building and running the image's root file system needs root")
    out = built_image()
    version = (out / "version").read_text().strip()
    bundle = tmp_path_factory.mktemp("image") / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{out / 'oci-amd64'}:{version}", str(bundle)], check=True, capture_output=True
    )
    process = json.loads((bundle / "config.json").read_text())["process"]
    yield UnpackedImage(
        rootfs=bundle / "rootfs",
        archive=out / f"kubekeep-{version}-amd64.oci.tar",
        uid=process["user"]["uid"],
        gid=process["user"]["gid"],
        args=process["args"],
        env=dict(item.split("=", 1) for item in process["env"]),
        cwd=process.get("cwd", "/"),
    )
    shutil.rmtree(bundle, ignore_errors=True)
