"""Loading cluster credentials the way kubectl does: ``--kubeconfig``, ``KUBECONFIG``,
``~/.kube/config`` and ``--context``, or the in-cluster service account."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from kubekeep import errors

IN_CLUSTER = "in-cluster"


@dataclass(frozen=True)
class ClusterAccess:
    """A configured API client and what it points at."""

    api_client: client.ApiClient
    context: str  # the kubeconfig context used, or "in-cluster"
    server: str


def _kubeconfig_files(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    default = Path.home() / ".kube" / "config"
    return [str(default)] if default.exists() else []


def connect(
    context: str | None = None, kubeconfig: str | None = None, *, pool_size: int = 16, timeout_s: float = 30.0
) -> ClusterAccess:
    """An API client for ``context`` (or the current context), or in-cluster credentials when
    no kubeconfig exists and we run in a pod (or ``context == "in-cluster"``)."""
    cfg = client.Configuration()
    files = _kubeconfig_files(kubeconfig)
    in_cluster = context == IN_CLUSTER or (not files and "KUBERNETES_SERVICE_HOST" in os.environ)
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=cfg)
            used = IN_CLUSTER
        else:
            if not files:
                raise errors.UsageError("no kubeconfig found: set KUBECONFIG, pass --kubeconfig, or run in a pod")
            missing = [f for f in files if not Path(f).exists()]
            if len(missing) == len(files):
                raise errors.UsageError(f"kubeconfig {missing[0]} does not exist")
            paths = os.pathsep.join(files)  # the client merges a KUBECONFIG-style path list
            config.load_kube_config(config_file=paths, context=context, client_configuration=cfg, persist_config=False)
            used = context or config.list_kube_config_contexts(config_file=paths)[1]["name"]
    except ConfigException as exc:
        raise errors.UsageError(f"cannot load Kubernetes credentials: {exc}") from None
    cfg.connection_pool_maxsize = pool_size
    cfg.retries = 2
    api = client.ApiClient(cfg)
    api.rest_client.pool_manager.connection_pool_kw["timeout"] = timeout_s
    return ClusterAccess(api, used, cfg.host)
