"""kwok: simulated nodes and pod lifecycle for the test cluster.

kwok runs as a plain process against the admin kubeconfig and manages only the
nodes testenv creates (annotation ``kwok.x-k8s.io/node=fake``), using kwok's
default node and pod Stages (extracted from the pinned kwok module by
:mod:`testenv.build`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testenv.processes import ManagedProcess

NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_ANNOTATION_VALUE = "fake"
NODE_NAME_PREFIX = "kwok-node-"


def write_config(path: Path, stages: Path) -> Path:
    """Write kwok's config file: the default Stages as one YAML stream.

    Options go on the command line instead: a KwokConfiguration document in the
    file would replace kwok's defaults wholesale rather than being merged.
    """
    path.write_text(stages.read_text())
    return path


def process(binary: Path, kubeconfig: Path, config: Path, run_dir: Path) -> ManagedProcess:
    """The kwok controller process (not yet started)."""
    home = run_dir / "kwok-home"
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--config={config}",
        "--manage-all-nodes=false",
        # Simulated addresses only (pod IPs; node IPs are set per node): nothing connects to them.
        "--cidr=10.244.0.0/16",
        "--node-lease-duration-seconds=40",
        f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}={NODE_ANNOTATION_VALUE}",
    ]
    # kwok also loads ~/.kwok/kwok.yaml if present: give it an empty HOME.
    return ManagedProcess(
        name="kwok",
        argv=argv,
        log_path=run_dir / "logs" / "kwok.log",
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )


def node_manifest(name: str, index: int = 0) -> dict[str, Any]:
    """A taint-free fake Node that kwok will manage and mark Ready.

    Its InternalIP is a loopback address (127.0.1.<index + 1>) so that anything
    that ever dials a "kubelet" (``kubectl logs`` through the apiserver) stays on
    this machine and is refused at once.
    """
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                NODE_ANNOTATION: NODE_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "topology.kubernetes.io/zone": "zone-a",
            },
        },
        "spec": {},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": f"127.0.1.{index + 1}"},
                {"type": "Hostname", "address": name},
            ],
            # Room for the scale-mode seed (600 pods) on 3 nodes.
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "500", "ephemeral-storage": "1Ti"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "500", "ephemeral-storage": "1Ti"},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "containerRuntimeVersion": "kwok",
            },
        },
    }


def node_names(count: int) -> list[str]:
    """Names of the ``count`` fake nodes."""
    return [f"{NODE_NAME_PREFIX}{i}" for i in range(count)]
