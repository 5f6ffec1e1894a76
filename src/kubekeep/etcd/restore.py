"""Turn a snapshot file into an etcd data directory with ``etcdutl snapshot restore``.

Restoring is more than copying the database: etcd rewrites the membership (``members``
bucket) for the new cluster, resets the consistent index, creates a WAL and a raft snapshot
for the new member, and optionally bumps the revision and marks it compacted so that
clients (Kubernetes informers) never see revisions go backwards. Those are etcd-internal
formats, so kubekeep runs etcd's own tool instead of re-implementing them. etcd 3.4 has no
etcdutl; its ``etcdctl snapshot restore`` is the same code and is used when no etcdutl is
found (it cannot bump revisions).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubekeep.errors import ConnectorError, UsageError

from .boltmeta import read_snapshot_info

#: Oldest tool accepted. etcd 3.4's etcdctl is the oldest with this restore code path.
MIN_TOOL_VERSION = (3, 4, 0)


@dataclass(frozen=True, slots=True)
class RestoreTool:
    path: str
    kind: str  # "etcdutl" or "etcdctl"
    version: tuple[int, int, int]
    supports_bump: bool  # has --bump-revision / --mark-compacted

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


@dataclass(slots=True)
class RestoreResult:
    data_dir: str
    command: list[str]
    tool: str
    tool_version: str
    snapshot_revision: int
    snapshot_sha256: str | None
    output: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean_env(kind: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    if kind == "etcdctl":
        env["ETCDCTL_API"] = "3"
    return env


def _probe(path: str) -> RestoreTool | None:
    """Identify an etcdutl/etcdctl binary; None if it is neither or cannot run."""
    try:
        out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=30, env=_clean_env("etcdctl"))
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"(etcdutl|etcdctl) version:\s*(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    if not m:
        return None
    kind = m.group(1)
    version = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    try:
        helptext = subprocess.run(
            [path, "snapshot", "restore", "--help"],
            capture_output=True, text=True, timeout=30, env=_clean_env(kind),
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = helptext.stdout + helptext.stderr
    if "--data-dir" not in text:
        return None  # etcdctl >= 3.6 dropped `snapshot restore`
    return RestoreTool(path, kind, version, "--bump-revision" in text and "--mark-compacted" in text)


def find_restore_tool(etcdutl: str | os.PathLike[str] | None = None) -> RestoreTool:
    """The given binary, else etcdutl on PATH, else etcd 3.4/3.5's etcdctl on PATH."""
    if etcdutl is not None:
        path = shutil.which(os.fspath(etcdutl)) or os.fspath(etcdutl)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise UsageError(f"etcdutl {os.fspath(etcdutl)!r} not found or not executable")
        tool = _probe(path)
        if tool is None:
            raise UsageError(f"{path} is neither etcdutl nor an etcdctl with `snapshot restore`")
        return tool
    for name in ("etcdutl", "etcdctl"):
        found = shutil.which(name)
        if found:
            tool = _probe(found)
            if tool is not None:
                return tool
    raise UsageError(
        "etcdutl not found on PATH: install etcd's etcdutl (same minor version as the snapshot's etcd) or pass its path"
    )


def _minor(text: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def build_command(
    tool: RestoreTool,
    snapshot_path: str,
    data_dir: str,
    name: str,
    initial_cluster: str,
    initial_advertise_peer_urls: str,
    initial_cluster_token: str,
    bump_revision: int | None,
    mark_compacted: bool,
) -> list[str]:
    """The exact restore command line (no other flags, no hash check skipping)."""
    cmd = [
        tool.path, "snapshot", "restore", snapshot_path,
        "--data-dir", data_dir,
        "--name", name,
        "--initial-cluster", initial_cluster,
        "--initial-cluster-token", initial_cluster_token,
        "--initial-advertise-peer-urls", initial_advertise_peer_urls,
    ]  # fmt: skip
    if bump_revision:
        cmd += ["--bump-revision", str(bump_revision)]
    if mark_compacted:
        cmd.append("--mark-compacted")
    return cmd


def _error_line(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.lower().startswith("error"):
            return ln
    return lines[-1] if lines else "(no output)"


def check_request(
    data_dir: str | os.PathLike[str],
    name: str,
    initial_cluster: str,
    initial_advertise_peer_urls: str,
    initial_cluster_token: str,
    bump_revision: int | None = None,
    mark_compacted: bool = False,
) -> None:
    """Refuse a restore request that etcdutl would refuse, before any data is written:
    empty names, a member missing from ``initial_cluster``, a lone ``bump_revision`` or
    ``mark_compacted``, or a ``data_dir`` that exists and is not an empty directory."""
    target = Path(data_dir)
    for label, value in (
        ("name", name),
        ("initial_cluster", initial_cluster),
        ("initial_advertise_peer_urls", initial_advertise_peer_urls),
        ("initial_cluster_token", initial_cluster_token),
    ):
        if not value or not value.strip():
            raise UsageError(f"etcd restore needs a non-empty {label}")
    if f"{name}=" not in initial_cluster:
        raise UsageError(f"initial_cluster {initial_cluster!r} has no entry for member {name!r}")
    if bump_revision is not None and bump_revision < 0:
        raise UsageError("bump_revision must be positive")
    if bool(bump_revision) != bool(mark_compacted):
        raise UsageError(
            "bump_revision and mark_compacted go together: etcdutl requires --mark-compacted "
            "with --bump-revision > 0 and refuses it otherwise"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"etcd restore target {target} exists and is not an empty directory")


def restore_data_dir(
    snapshot_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    name: str,
    initial_cluster: str,
    initial_advertise_peer_urls: str,
    initial_cluster_token: str,
    bump_revision: int | None = None,
    mark_compacted: bool = False,
    etcdutl: str | os.PathLike[str] | None = None,
    *,
    timeout: float = 3600.0,
) -> RestoreResult:
    """Create ``data_dir`` for member ``name`` from a snapshot file via etcdutl.

    The snapshot's SHA-256 trailer is verified first (IntegrityError on mismatch). A non-empty
    ``data_dir`` is refused. ``bump_revision`` and ``mark_compacted`` go together, as etcdutl
    requires. The tool's minor version must be at least the snapshot's cluster version.
    """
    snap = Path(snapshot_path)
    target = Path(data_dir)
    if not snap.is_file():
        raise UsageError(f"etcd snapshot {snap} does not exist")
    check_request(
        target, name, initial_cluster, initial_advertise_peer_urls, initial_cluster_token,
        bump_revision, mark_compacted,
    )  # fmt: skip

    info = read_snapshot_info(snap, check_hash=True)
    if not info.has_hash:
        raise UsageError(
            f"{snap} has no SHA-256 trailer (a copied member/snap/db?); etcdutl would need "
            "--skip-hash-check, which kubekeep does not pass"
        )
    tool = find_restore_tool(etcdutl)
    if tool.version < MIN_TOOL_VERSION:
        raise UsageError(f"{tool.kind} {tool.version_text} is too old; etcd 3.4 or newer is needed")
    need = _minor(info.storage_version) or _minor(info.cluster_version)
    if need is not None and tool.version[:2] < need:
        raise UsageError(
            f"the snapshot comes from etcd {'.'.join(map(str, need))}; "
            f"{tool.kind} {tool.version_text} at {tool.path} is older: use a matching etcdutl"
        )
    if bump_revision and not tool.supports_bump:
        raise UsageError(
            f"{tool.kind} {tool.version_text} cannot bump revisions "
            "(needs etcdutl 3.5.10+ with --bump-revision/--mark-compacted)"
        )

    cmd = build_command(
        tool, str(snap), str(target), name, initial_cluster, initial_advertise_peer_urls,
        initial_cluster_token, bump_revision, mark_compacted,
    )  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_clean_env(tool.kind))
    except subprocess.TimeoutExpired:
        raise ConnectorError(f"{tool.kind} snapshot restore did not finish in {timeout:g}s") from None
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        raise ConnectorError(f"{tool.kind} snapshot restore failed (exit {proc.returncode}): {_error_line(output)}")
    if not (target / "member" / "snap" / "db").is_file() or not (target / "member" / "wal").is_dir():
        raise ConnectorError(f"{tool.kind} snapshot restore succeeded but {target}/member has no snap/db or wal")
    return RestoreResult(
        data_dir=str(target),
        command=cmd,
        tool=tool.kind,
        tool_version=tool.version_text,
        snapshot_revision=info.revision,
        snapshot_sha256=info.sha256,
        output=output,
    )
