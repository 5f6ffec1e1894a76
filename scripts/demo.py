#!/usr/bin/env python3
"""The main job, end to end, on an embedded default: a throwaway local Kubernetes control plane
(testenv: etcd, kube-apiserver, controller-manager, scheduler, kwok nodes) and a local repository.

    make demo            (or: python scripts/demo.py [--keep])

It builds (or reuses) the pinned binaries, starts the cluster, seeds it with a realistic mix of
objects, then tells kubekeep's story with the real CLI: back up each layer, browse, break
something, restore it, verify. Everything it starts is stopped at the end; --keep leaves the
work directory (repository, restored files) for a look.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testenv.cluster import Cluster
from testenv.seed import seed, wait_for_workloads

if TYPE_CHECKING:
    from testenv.simcsi import SimCSI


class Story:
    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.env = {**os.environ, **env}
        self.started = time.monotonic()

    def chapter(self, title: str) -> None:
        print(f"\n\033[1m== {title}\033[0m", flush=True)

    def say(self, text: str) -> None:
        print(f"   {text}", flush=True)

    def kubekeep(self, *args: str, check: bool = True, show: int = 25) -> subprocess.CompletedProcess[str]:
        print(f"\033[36m$ kubekeep {' '.join(shlex.quote(a) for a in args)}\033[0m", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "kubekeep.cli.main", *args], env=self.env, capture_output=True, text=True
        )
        out = (proc.stdout + proc.stderr).rstrip().splitlines()
        for line in out[:show]:
            print(f"   {line}")
        if len(out) > show:
            print(f"   ... ({len(out) - show} more lines)")
        if check and proc.returncode != 0:
            for line in out[show:]:
                if "fail" in line or "error" in line:
                    print(f"   {line}")
            raise SystemExit(f"demo failed: kubekeep {' '.join(args)} exited {proc.returncode}")
        return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubekeep-demo-"))
    env = {
        "KUBEKEEP_REPOSITORY": str(work / "repo"),
        "KUBEKEEP_PASSWORD": "demo-password",
        "KUBEKEEP_CACHE_DIR": str(work / "cache"),
    }
    story = Story(work, env)
    story.chapter("Starting a throwaway local cluster (binaries are built once, then cached)")
    t0 = time.monotonic()
    cluster = Cluster(progress=lambda m: story.say(m)).start()
    try:
        story.say(f"control plane up in {time.monotonic() - t0:.1f} s at {cluster.server}")
        story.env["KUBECONFIG"] = str(cluster.kubeconfig)
        result = seed(cluster, progress=story.say)
        story.say(f"seeded: {result.summary()}")
        wait_for_workloads(cluster, result.namespaces, timeout=180)
        story.say("every seeded Deployment and StatefulSet has its pods Running on the kwok nodes")
        run_story(story, cluster)
    finally:
        cluster.stop()
        if args.keep:
            print(f"\nwork directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n\033[1mdemo finished in {time.monotonic() - story.started:.0f} s\033[0m")


def run_story(story: Story, cluster: Cluster) -> None:
    etcd_uri = "etcd://" + ",".join(e.split("://", 1)[-1] for e in cluster.etcd.endpoints)
    tls = [
        "--cacert",
        str(cluster.etcd.ca_file),
        "--cert",
        str(cluster.etcd.cert_file),
        "--key",
        str(cluster.etcd.key_file),
    ]

    story.chapter("A new encrypted repository")
    story.kubekeep("init")

    story.chapter("Layer 1: etcd, a consistent snapshot streamed over TLS with client certificates")
    etcd_snap = story.kubekeep("backup", etcd_uri, *tls, "--tag", "demo").stdout.split()[1]
    story.kubekeep("etcd", "status", etcd_snap)

    manifests_story(story, cluster)

    volumes_story(story, cluster)

    migration_story(story, cluster)

    story.chapter("Layer 0: a local directory, for comparison")
    data = story.work / "data"
    (data / "conf").mkdir(parents=True)
    (data / "conf" / "app.yaml").write_text("replicas: 3\n")
    os.symlink("conf/app.yaml", data / "current")
    story.kubekeep("backup", str(data), "--tag", "demo")
    (data / "conf" / "app.yaml").write_text("replicas: 5\n")
    story.kubekeep("backup", str(data), "--tag", "demo")
    story.kubekeep("diff", *_last_two(story, f"fs:{data}"))

    story.chapter("What is in the repository")
    story.kubekeep("snapshots")
    story.kubekeep("check", "--read-data")

    story.chapter("Disaster recovery: the etcd snapshot becomes a fresh data directory")
    target = story.work / "etcd-restored"
    # the cluster's own etcdutl: the one on PATH (Debian's etcd 3.4) is older than the snapshot
    story.kubekeep(
        "etcd",
        "restore-dir",
        etcd_snap,
        "--data-dir",
        str(target),
        "--name",
        "restored",
        "--bump-revision",
        "1000000",
        "--mark-compacted",
        "--etcdutl",
        str(cluster.binaries["etcdutl"]),
    )
    story.say(f"data directory ready at {target} (start etcd with --data-dir there)")


def volumes_story(story: Story, cluster: Cluster) -> None:
    """A claim's files: CSI snapshot, a claim made from it, a helper pod running kubekeep's agent,
    the files into the repository; then back into a new claim. This machine has no container
    runtime, so the kubelet and the CSI driver's node side are testenv's simulation (simcsi):
    helper pods run as local processes, volumes are directories. kubekeep is the same."""
    from kubekeep.kube.pods import DEFAULT_IMAGE
    from testenv import bootstrap
    from testenv.rest import resource_path
    from testenv.simcsi import TAINT_KEY, SimCSI
    from testenv.simcsi.simulation import ENABLED_LABEL

    ns = "shop-data"
    story.chapter("Layer 3: volumes, a CSI-backed claim's files through a snapshot and a helper pod")
    story.say("(no container runtime here: the kubelet and the CSI node side are simulated by testenv/simcsi)")
    rest = cluster.rest()
    with SimCSI(cluster, agent_images=[DEFAULT_IMAGE]) as sim:
        story.env["KUBEKEEP_HELPER_TOLERATIONS"] = TAINT_KEY  # the simulated node is tainted
        rest.create(
            resource_path("v1", "namespaces"),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {ENABLED_LABEL: "true"}}},
        )
        rest.create(
            resource_path("v1", "persistentvolumeclaims", ns),
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "orders", "namespace": ns},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": bootstrap.STORAGE_CLASS,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        data = _wait_for_volume(sim, ns, "orders")
        (data / "2026").mkdir()
        for month in range(1, 13):
            rows = "".join(f"{month:02d}-{i:05d},customer-{i % 97},{(i * 37) % 1000}.00\n" for i in range(5000))
            (data / "2026" / f"orders-{month:02d}.csv").write_text("id,customer,total\n" + rows)
        (data / "state.db").write_bytes(os.urandom(4 * 1024 * 1024))
        story.say(
            f"claim {ns}/orders holds 13 files, {sum(f.stat().st_size for f in data.rglob('*') if f.is_file()) // 1024} KiB"
        )
        snap = story.kubekeep("backup", f"pvc://{ns}/orders", "--tag", "demo").stdout.split()[1]
        story.kubekeep("ls", f"{snap}:/2026")
        story.kubekeep("restore", snap, "--to", f"pvc://{ns}/orders-restored")
        restored = sim.volume_path(ns, "orders-restored")
        same = all(
            (restored / f.relative_to(data)).read_bytes() == f.read_bytes() for f in data.rglob("*") if f.is_file()
        )
        story.say(f"the new claim {ns}/orders-restored holds the same files: {same}")
        if not same:
            raise SystemExit("demo failed: the restored claim differs")
        rest.delete(resource_path("v1", "namespaces", name=ns))
    story.env.pop("KUBEKEEP_HELPER_TOLERATIONS", None)
    rest.close()


def migration_story(story: Story, source: Cluster) -> None:
    """A namespace moved with its data to a second cluster of a newer Kubernetes, onto another
    storage class: one backup with --volumes, one restore that writes the claim's files before
    the StatefulSet that mounts it starts (the simulated kubelet records what its first start saw)."""
    from kubekeep.kube.pods import DEFAULT_IMAGE
    from testenv import bootstrap, versions
    from testenv.rest import resource_path
    from testenv.simcsi import SHELL_IMAGE, TAINT_KEY, SimCSI
    from testenv.simcsi.kubelet import volume_listing
    from testenv.simcsi.simulation import ENABLED_LABEL

    ns, claim, new_class = "ledger", "data-ledger-0", "fast-ssd"
    story.chapter(
        f"Migration: a namespace with its data to a second cluster (Kubernetes {versions.NEWER_KUBERNETES_VERSION})"
    )
    story.env["KUBEKEEP_HELPER_TOLERATIONS"] = TAINT_KEY  # the simulated node is tainted
    rest = source.rest()
    with SimCSI(source, agent_images=[DEFAULT_IMAGE]) as sim:
        rest.create(
            resource_path("v1", "namespaces"),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {ENABLED_LABEL: "true"}}},
        )
        claim_template = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": bootstrap.STORAGE_CLASS,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        pod_spec = {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "db", "image": SHELL_IMAGE, "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}
            ],
            **sim.placement(),
        }
        rest.create(
            resource_path("apps/v1", "statefulsets", ns),
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "ledger", "namespace": ns},
                "spec": {
                    "replicas": 1,
                    "serviceName": "ledger",
                    "selector": {"matchLabels": {"app": "ledger"}},
                    "template": {"metadata": {"labels": {"app": "ledger"}}, "spec": pod_spec},
                    "volumeClaimTemplates": [claim_template],
                },
            },
        )
        data = _wait_for_volume(sim, ns, claim)
        for year in (2024, 2025, 2026):
            rows = "".join(f"{year}-{i:06d},acct-{i % 211},{(i * 53) % 10000}.00\n" for i in range(20000))
            (data / f"journal-{year}.csv").write_text("id,account,amount\n" + rows)
        (data / "ledger.db").write_bytes(os.urandom(2 * 1024 * 1024))
        expected = volume_listing(str(data))
        story.say(f"source cluster: StatefulSet {ns}/ledger, claim {claim} ({bootstrap.STORAGE_CLASS}) with 4 files")
        snap = story.kubekeep("backup", "k8s://", "--include-namespace", ns, "--volumes", "--tag", "migrate").stdout
        snap_id = snap.split()[1]
    rest.close()

    story.say("starting a second cluster, of a newer Kubernetes, with its own storage class")
    target = Cluster(nodes=1, progress=lambda m: story.say(m), newer=True).start()
    try:
        target_rest = target.rest()
        target_rest.create(
            resource_path("storage.k8s.io/v1", "storageclasses"),
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": new_class},
                "provisioner": bootstrap.CSI_DRIVER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
            },
        )
        source_kubeconfig = story.env["KUBECONFIG"]
        story.env["KUBECONFIG"] = str(target.kubeconfig)
        with SimCSI(target, agent_images=[DEFAULT_IMAGE]) as target_sim:
            started = time.time()
            map_class = f"{bootstrap.STORAGE_CLASS}={new_class}"
            # the source's pods were pinned to its node; a transform rule pins them to the target's
            rules = story.work / "to-second-cluster.yaml"
            rules.write_text(
                "rules:\n"
                "  - name: the second cluster's storage node\n"
                "    match: {kinds: [StatefulSet], namespaces: [ledger]}\n"
                "    mergePatch:\n"
                f"      spec: {{template: {{spec: {{nodeSelector: {json.dumps(target_sim.placement()['nodeSelector'])}}}}}}}\n"
            )
            story.say(f"{rules.name}:")
            for line in rules.read_text().splitlines():
                story.say(f"  {line}")
            restore = ["restore", snap_id, "-n", ns, "--to", "k8s://", "--storage-class-map", map_class]
            restore += ["--transform", str(rules)]
            story.kubekeep(*restore, "--dry-run", show=20)
            story.kubekeep(*restore, show=20)
            deadline = time.monotonic() + 90
            starts = []
            while not starts:
                starts = [
                    s for s in target_sim.container_starts(ns) if s.pod.startswith("ledger-") and s.time >= started
                ]
                if time.monotonic() > deadline:
                    print(
                        target.kubectl(
                            "-n", ns, "get", "statefulsets,pods,pvc,events", "-o", "wide", check=False
                        ).stdout
                    )
                    raise SystemExit(f"demo failed: no pod of {ns} started on the second cluster")
                time.sleep(0.3)
            pvc = target_rest.get(resource_path("v1", "persistentvolumeclaims", ns, name=claim))
            story.say(f"second cluster: claim {claim} is of storage class {pvc['spec']['storageClassName']}")
            saw = starts[0].claims.get(claim)
            story.say(
                f"pod {starts[0].pod}'s first start saw the claim's {len(saw or {})} entries, as backed up: {saw == expected}"
            )
            if saw != expected:
                raise SystemExit("demo failed: the pod's first start did not see the migrated data")
        target_rest.close()
        story.env["KUBECONFIG"] = source_kubeconfig
    finally:
        target.stop()
        story.env.pop("KUBEKEEP_HELPER_TOLERATIONS", None)


def _wait_for_volume(sim: SimCSI, ns: str, claim: str) -> Path:
    """The directory of ``ns/claim``'s volume, once the simulated provisioner has bound it."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return sim.volume_path(ns, claim)
        except LookupError:
            if time.monotonic() > deadline:
                raise SystemExit(f"demo failed: the claim {ns}/{claim} was not bound") from None
            time.sleep(0.3)


def manifests_story(story: Story, cluster: Cluster) -> None:
    ns = "shop-frontend"
    story.chapter("Layer 2: manifests, every API object of every resource, with its status")
    before = story.kubekeep("backup", "k8s://", "--tag", "demo").stdout.split()[1]
    story.kubekeep("summary", before, "--namespace", ns)
    story.kubekeep("ls", f"{before}:/namespaces/{ns}/apps/deployments")

    story.chapter("Something happens: a Deployment is scaled, and a whole namespace is deleted")
    cluster.kubectl("-n", "shop-backend", "scale", "deployment/web-0", "--replicas=5")
    cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s")
    story.say(f"kubectl delete namespace {ns}: gone")
    after = story.kubekeep("backup", "k8s://", "--tag", "demo").stdout.split()[1]
    story.kubekeep("diff", before, after, "/namespaces/shop-backend/apps/deployments", show=12)
    story.kubekeep("diff", before, after, f"/namespaces/{ns}", show=6)

    story.chapter("Restore that namespace: a server-side dry run first, then for real")
    story.kubekeep("restore", before, "--namespace", ns, "--to", "k8s://", "--dry-run", show=12)
    story.kubekeep("restore", before, "--namespace", ns, "--to", "k8s://", show=12)
    deployments = cluster.kubectl("-n", ns, "get", "deployments", "-o", "name").stdout.split()
    story.say(f"back in the cluster: {len(deployments)} Deployments in {ns}: {' '.join(deployments)}")

    story.chapter("One Deployment, under a new namespace name, and as clean YAML for GitOps")
    story.kubekeep("restore", before, "--namespace", ns, "--namespace-map", f"{ns}={ns}-copy", "--to", "k8s://", show=8)
    out = story.work / "gitops"
    story.kubekeep("restore", before, "--namespace", ns, "--kind", "Deployment", "--name", "web-0", "--to", str(out))
    for path in sorted(out.rglob("*.yaml"))[:1]:
        story.say(f"{path.relative_to(out)}:")
        for line in path.read_text().splitlines()[:12]:
            story.say(f"  {line}")


def _last_two(story: Story, source: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "kubekeep.cli.main", "snapshots", "--json", "--source", source],
        env=story.env,
        capture_output=True,
        text=True,
        check=True,
    )
    snaps = json.loads(proc.stdout)
    return [snaps[-2]["short_id"], snaps[-1]["short_id"]]


if __name__ == "__main__":
    main()
