"""The simulated CSI driver's backing store: one directory (or image file, for raw block
volumes) per volume and per snapshot, as the csi-driver-host-path keeps them on its node."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path


class BackingStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.volumes = root / "volumes"
        self.snapshots = root / "snapshots"
        self.volumes.mkdir(parents=True, exist_ok=True)
        self.snapshots.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def volume_path(self, volume_id: str) -> Path:
        block = self.volumes / f"{volume_id}.img"
        return block if block.exists() else self.volumes / volume_id

    def snapshot_path(self, snapshot_id: str) -> Path:
        block = self.snapshots / f"{snapshot_id}.img"
        return block if block.exists() else self.snapshots / snapshot_id

    def create_volume(self, volume_id: str, *, block: bool, size: int, source: Path | None = None) -> Path:
        """A new empty volume, or a copy of ``source`` (a snapshot) when given."""
        target = self.volumes / (f"{volume_id}.img" if block else volume_id)
        if target.exists():
            return target  # idempotent, as CreateVolume must be
        tmp = target.with_name(target.name + ".creating")
        _remove(tmp)
        if source is not None:
            _copy(source, tmp)
            if block and tmp.stat().st_size < size:
                with open(tmp, "r+b") as f:
                    f.truncate(size)
        elif block:
            with open(tmp, "wb") as f:
                f.truncate(size)
        else:
            tmp.mkdir(mode=0o777)
            tmp.chmod(0o777)  # as the hostpath driver creates them: writable by any pod user
        tmp.rename(target)
        return target

    def delete_volume(self, volume_id: str) -> None:
        _remove(self.volume_path(volume_id))

    def create_snapshot(self, snapshot_id: str, volume_id: str) -> tuple[Path, int]:
        """Copy a volume (metadata, owners and links preserved); the copy and its size."""
        source = self.volume_path(volume_id)
        if not source.exists():
            raise FileNotFoundError(f"volume {volume_id} does not exist")
        target = self.snapshots / (snapshot_id + (".img" if source.suffix == ".img" else ""))
        if not target.exists():
            tmp = target.with_name(target.name + ".creating")
            _remove(tmp)
            _copy(source, tmp)
            tmp.rename(target)
        return target, _size(target)

    def delete_snapshot(self, snapshot_id: str) -> None:
        _remove(self.snapshot_path(snapshot_id))


def _copy(source: Path, target: Path) -> None:
    subprocess.run(
        ["cp", "-a", "--reflink=auto", "--sparse=always", str(source), str(target)], check=True, capture_output=True
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
