#!/usr/bin/env python3
"""Volume backup benchmark: a claim's files through the agent, against `tar | zstd -1` of the
same directory, same run.

    python bench/bench_volumes.py [--scale 0.5] [--work /var/tmp/kubekeep-bench-volumes] [--keep]

Builds the shared data set (../shared/bench/make_dataset.py) and measures:

* `tar -cf - DIR | zstd -1 > /dev/null`: the baseline a careful admin would script;
* the agent alone (no cluster): `kubekeep agent` on loopback, kubekeep's client and the engine
  in this process, first backup and unchanged re-backup;
* `kubekeep backup pvc://NS/CLAIM` end to end on the local control plane (testenv, with
  testenv.simcsi as the CSI driver and node): snapshot, temporary claim, helper pod, agent,
  repository; through the API server's port-forward and at the pod's address; first backup,
  unchanged re-backup, re-backup after 1 % of the files changed.

For every kubekeep run: wall time, kubekeep's CPU time, the time of the transfer itself, bytes
on the wire (everything the agent sent: chunk lists, metadata, chunk data), bytes the agent read
from the volume. The agent's own CPU time is not in kubekeep's figure (it runs in the helper pod).
A second table sets each unchanged re-backup against its first backup (issue 16's targets: the
agent reads under 1 % of the claim's bytes, the transfer takes under 10 % of the first's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATASET = Path(os.environ.get("KUBEKEEP_BENCH_DATASET", ROOT.parent / "shared" / "bench" / "make_dataset.py"))
PASSWORD = "bench-password"
sys.path.insert(0, str(ROOT))  # testenv


@dataclass
class Row:
    name: str
    wall: float
    cpu: float | None
    transfer: float | None
    total_bytes: int
    wire_bytes: int | None
    note: str = ""
    agent_cpu: float | None = None
    read_bytes: int | None = None  # what the agent read from the volume
    parent_list: float = 0.0  # seconds listing the parent snapshot's files for the agent

    def cells(self) -> list[str]:
        mb = self.total_bytes / 1e6
        speed = f"{mb / self.wall:.0f}"
        data_path = f"{mb / self.transfer:.0f}" if self.transfer else "-"
        wire = f"{self.wire_bytes / 1e6:.2f}" if self.wire_bytes is not None else "-"
        cpu = f"{self.cpu:.2f}" if self.cpu is not None else "-"
        agent = f"{self.agent_cpu:.2f}" if self.agent_cpu is not None else "-"
        read = f"{self.read_bytes / 1e6:.2f}" if self.read_bytes is not None else "-"
        return [self.name, f"{self.wall:.2f}", cpu, agent, speed, data_path, wire, read, self.note]


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def shell(cmd: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd`` under bash; wall seconds, CPU seconds of that process tree (wait4: the
    simulated node's pods, children of this process too, are not counted), stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            ["bash", "-o", "pipefail", "-c", cmd], env={**os.environ, **(env or {})}, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode not in (0, 3):
            raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{err.read()[-3000:]}")
        return wall, usage.ru_utime + usage.ru_stime, out.read()


def tar_zstd(data: Path) -> Row:
    wall, cpu, out = shell(f"tar -cf - -C {data} . | zstd -1 -q -c | wc -c")
    return Row("`tar \\| zstd -1` (to /dev/null)", wall, cpu, None, du(data), None, f"{int(out) / 1e6:.0f} MB out")


def agent_alone(data: Path, work: Path, label: str, *, compress: bool) -> list[Row]:
    """The agent on loopback with kubekeep's client and engine in this process."""
    from kubekeep.agent import protocol
    from kubekeep.agent.client import RemoteBackup, open_session, tcp
    from kubekeep.connectors.pvc.claim_backup import known_files
    from kubekeep.engine.backup import run_backup
    from kubekeep.engine.entries import ChunkSpec, Importer, ParentFiles, SourceInfo
    from kubekeep.engine.repository import Repository
    from kubekeep.storage import open_backend

    class AgentSource(Importer):
        scheme = "agent"

        def __init__(self, port: int, secret: bytes) -> None:
            self.port, self.secret = port, secret
            self.spec: ChunkSpec | None = None
            self.parent: ParentFiles | None = None
            self.remote: RemoteBackup | None = None
            self.transfer = 0.0

        def source(self) -> SourceInfo:
            return SourceInfo("agent:bench", "volume")

        def use_chunking(self, spec: ChunkSpec) -> None:
            self.spec = spec

        def use_parent(self, parent: ParentFiles) -> None:
            self.parent = parent

        def entries(self) -> Any:
            assert self.spec is not None
            channel, _ = open_session(tcp("127.0.0.1", self.port), self.secret, "backup")
            started = time.perf_counter()  # the parent's file list included
            known = known_files(self.parent, "") if self.parent is not None else None
            self.remote = RemoteBackup(channel, self.spec, compress=compress, known=known, reuse_keys=True)
            yield from self.remote.entries()
            self.transfer = time.perf_counter() - started

        def close(self) -> None:
            if self.remote is not None:
                self.remote.close()

    repo_dir = work / f"repo-agent-{label}"
    shutil.rmtree(repo_dir, ignore_errors=True)
    repo = Repository.init(open_backend(str(repo_dir)), PASSWORD, no_cache=True)
    rows = []
    for run in ("first backup", "unchanged re-backup"):
        secret = protocol.new_secret()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        agent = subprocess.Popen(
            [sys.executable, "-m", "kubekeep.agent", "--root", str(data), "--listen", f"127.0.0.1:{port}"],
            env={**os.environ, protocol.SECRET_ENV: secret.hex()},
            stderr=subprocess.DEVNULL,
        )
        source = AgentSource(port, secret)
        cpu0 = time.process_time()
        start = time.perf_counter()
        with repo.lock(), source:
            snap = run_backup(repo, source)
        wall = time.perf_counter() - start
        _, _, usage = os.wait4(agent.pid, 0)
        agent.returncode = 0
        assert source.remote is not None
        stats = source.remote.stats
        rows.append(
            Row(
                f"agent on loopback, {label}: {run}",
                wall,
                time.process_time() - cpu0,
                source.transfer,
                stats.bytes_total,
                source.remote.channel.bytes_received,
                f"{stats.chunks_fetched}/{stats.chunks_total} chunks sent; files {snap.stats['files']}, "
                f"{stats.files_unchanged} unchanged",
                agent_cpu=usage.ru_utime + usage.ru_stime,
                read_bytes=stats.bytes_read,
            )
        )
    repo.close()
    return rows


def pvc_runs(data: Path, work: Path, cluster: Any, sim: Any) -> list[Row]:
    from testenv.rest import resource_path
    from testenv.simcsi import TAINT_KEY

    ns = f"bench-volumes-{os.getpid()}"
    rest = cluster.rest()
    rest.create(
        resource_path("v1", "namespaces"),
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"simcsi.kubekeep.test/enabled": "true"}},
        },
    )
    rows: list[Row] = []
    try:
        rest.create(
            resource_path("v1", "persistentvolumeclaims", ns),
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": ns},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}},
            },
        )
        deadline = time.monotonic() + 60
        while (rest.get(resource_path("v1", "persistentvolumeclaims", ns, "data")).get("status") or {}).get(
            "phase"
        ) != "Bound":
            if time.monotonic() > deadline:
                raise SystemExit("the benchmark claim was not bound")
            time.sleep(0.2)
        volume = sim.volume_path(ns, "data")
        subprocess.run(["cp", "-a", f"{data}/.", str(volume)], check=True)
        env = {
            "KUBECONFIG": str(cluster.kubeconfig),
            "KUBEKEEP_PASSWORD": PASSWORD,
            "KUBEKEEP_CACHE_DIR": str(work / "cache"),
            "KUBEKEEP_HELPER_TOLERATIONS": TAINT_KEY,
        }
        for connect in ("port-forward", "pod-ip"):
            repo = work / f"repo-pvc-{connect}"
            shutil.rmtree(repo, ignore_errors=True)
            shutil.rmtree(work / "cache", ignore_errors=True)
            env["KUBEKEEP_REPOSITORY"] = str(repo)
            shell(f"{sys.executable} -m kubekeep.cli.main init -q", env)
            runs = ["first backup", "unchanged re-backup", "after 1 % changed"]
            for run in runs:
                if run == "after 1 % changed":
                    subprocess.run([sys.executable, str(DATASET), str(volume), "--mutate", "1"], check=True)
                wall, cpu, out = shell(
                    f"{sys.executable} -m kubekeep.cli.main --json backup pvc://{ns}/data --agent-connect {connect}",
                    env,
                )
                snap_id = json.loads(out)["id"]
                _, _, listing = shell(f"{sys.executable} -m kubekeep.cli.main --json snapshots", env)
                meta = next(s for s in json.loads(listing) if s["id"] == snap_id)["metadata"]["volume"]
                t, tr = meta["timings"], meta["transfer"]
                rows.append(
                    Row(
                        f"pvc:// via {connect}: {run}",
                        wall,
                        cpu,
                        t.get("transfer_s"),
                        tr["bytes_total"],
                        tr["bytes_on_wire"],
                        f"{tr['chunks_fetched']}/{tr['chunks_total']} chunks sent; "
                        f"{tr.get('files_unchanged', 0)} files unchanged; snapshot "
                        f"{t.get('snapshot_s', 0):.1f}s, claim {t.get('provision_s', 0):.1f}s, helper "
                        f"{t.get('helper_start_s', 0):.1f}s, parent list {t.get('parent_s', 0):.2f}s",
                        read_bytes=tr.get("bytes_read"),
                        parent_list=t.get("parent_s", 0.0),
                    )
                )
            subprocess.run(["rm", "-rf", str(volume)], check=True)
            subprocess.run(["cp", "-a", str(data), str(volume)], check=True)
    finally:
        rest.delete(resource_path("v1", "namespaces", name=ns))
        rest.close()
    return rows


def unchanged_table(rows: list[Row]) -> None:
    """Each unchanged re-backup against the first backup of the same path (issue 16's targets)."""
    print(
        "\n| path | claim MB | MB read: first / unchanged | read | transfer s: first / unchanged "
        "(with the parent's file list) | transfer | met |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    first = {r.name.rsplit(": ", 1)[0]: r for r in rows if r.name.endswith(": first backup")}
    for row in rows:
        path = row.name.rsplit(": ", 1)[0]
        base = first.get(path)
        if not row.name.endswith(": unchanged re-backup") or base is None:
            continue
        if None in (row.read_bytes, base.read_bytes, row.transfer, base.transfer):
            continue
        assert row.read_bytes is not None and base.read_bytes is not None
        assert row.transfer is not None and base.transfer
        read = row.read_bytes / row.total_bytes
        transfer = (row.transfer + row.parent_list) / base.transfer
        met = "yes" if read < 0.01 and transfer < 0.10 else "no"
        print(
            f"| {path} | {row.total_bytes / 1e6:.0f} | {base.read_bytes / 1e6:.1f} / {row.read_bytes / 1e6:.2f} "
            f"| {read:.2%} | {base.transfer:.2f} / {row.transfer + row.parent_list:.3f} | {transfer:.1%} | {met} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.5, help="data set scale (1.0 is about 880 MB)")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/kubekeep-bench-volumes"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-cluster", action="store_true", help="only the baseline and the agent on loopback")
    args = parser.parse_args()
    if not DATASET.exists():
        raise SystemExit(f"missing {DATASET}")
    if not shutil.which("zstd"):
        raise SystemExit("zstd is not installed (apt-get install zstd)")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not data.exists():
        print(f"building the data set (scale {args.scale}) ...", file=sys.stderr)
        subprocess.run([sys.executable, str(DATASET), str(data), "--scale", str(args.scale)], check=True)
    files = sum(1 for _ in data.rglob("*") if _.is_file())
    print(
        f"data set: {du(data) / 1e6:.0f} MB in {files} files; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )

    rows = [tar_zstd(data)]
    rows += agent_alone(data, work, "zstd on the wire", compress=True)
    rows += agent_alone(data, work, "no wire compression", compress=False)
    rows.append(tar_zstd(data))  # again, to see the machine's drift during the run
    if not args.no_cluster:
        from kubekeep.kube.pods import DEFAULT_IMAGE
        from testenv.cluster import STATE_ENV, Cluster, running_cluster
        from testenv.simcsi import SimCSI

        state = os.environ.get(STATE_ENV)
        cluster = running_cluster(Path(state)) if state else None
        owned = cluster is None
        if cluster is None:
            cluster = Cluster().start()
        try:
            with SimCSI(cluster, agent_images=[DEFAULT_IMAGE]) as sim:
                rows += pvc_runs(data, work, cluster, sim)
        finally:
            if owned:
                cluster.stop()

    head = [
        "run",
        "wall s",
        "kubekeep CPU s",
        "agent CPU s",
        "MB/s (wall)",
        "MB/s (transfer)",
        "MB on the wire",
        "MB read by the agent",
        "notes",
    ]
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * 7 + ["---"]) + " |")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    unchanged_table(rows)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
