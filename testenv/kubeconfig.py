"""Kubeconfig files with embedded certificates, and API clients built from them."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from testenv.pki import CertPair

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, client: CertPair, user: str, cluster: str = "kubekeep-testenv"
) -> Path:
    """Write a single-context kubeconfig (certificates embedded, mode 0600)."""
    context = f"{user}@{cluster}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    return path


def api_client(kubeconfig: Path) -> ApiClient:
    """A ``kubernetes`` ApiClient for ``kubeconfig`` (independent of ``$KUBECONFIG``)."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))
