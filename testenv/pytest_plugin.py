"""pytest fixtures for tests that need the local control plane.

Load with ``pytest_plugins = ["testenv.pytest_plugin"]`` in the top-level
``tests/conftest.py``.

* ``cluster`` (session): reuses the cluster ``$KUBEKEEP_TESTENV_STATE`` points at
  if it is running, otherwise starts one (building binaries on first use) and
  stops it at session end. A build or start failure fails the test with the
  error; nothing is skipped.
* ``namespace`` (function): a fresh namespace, deleted afterwards.
* ``kube_client`` / ``readonly_kube_client`` (session): ``kubernetes`` ApiClients
  for the admin and the least-privilege kubeconfig.
* ``helm_binary`` (session): the pinned ``helm``, built on first use.
* ``minio_binaries`` (session): the pinned ``minio`` and ``minio-users``, built on first use
  (tests.support.s3_fixtures starts the S3 server from them).
* ``newer_cluster`` (session): a second cluster running ``versions.NEWER_KUBERNETES_VERSION``
  (the migration tests), started only when a test asks for it; reused from
  ``$KUBEKEEP_TESTENV_NEWER_STATE`` if that names a running one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testenv import build, versions
from testenv.cluster import STATE_ENV, Cluster, running_cluster
from testenv.rest import resource_path

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def _progress_printer(config: pytest.Config) -> Callable[[str], None]:
    """Print build/start progress to the terminal even while output is captured."""
    capman = config.pluginmanager.getplugin("capturemanager")

    def say(msg: str) -> None:
        ctx = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with ctx:
            print(f"\n[testenv] {msg}", file=sys.stderr, flush=True)

    return say


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """The session's test cluster (reused from ``$KUBEKEEP_TESTENV_STATE`` if running)."""
    state = os.environ.get(STATE_ENV)
    if state:
        existing = running_cluster(Path(state))
        if existing is not None:
            yield existing
            return
    say = _progress_printer(pytestconfig)
    started = Cluster(progress=say).start()
    say(f"test cluster up in {started.timings['total']:.1f}s: {started.server} (run dir {started.run_dir})")
    try:
        yield started
    finally:
        started.stop()


#: Environment variable naming the state file of a running newer cluster for ``newer_cluster``.
NEWER_STATE_ENV = "KUBEKEEP_TESTENV_NEWER_STATE"


@pytest.fixture(scope="session")
def newer_cluster(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """A second test cluster of ``versions.NEWER_KUBERNETES_VERSION`` (its kube-apiserver,
    kube-controller-manager and kube-scheduler built on first use; etcd and kwok pinned)."""
    state = os.environ.get(NEWER_STATE_ENV)
    if state:
        existing = running_cluster(Path(state))
        if existing is not None and existing.versions.get("kubernetes") == versions.NEWER_KUBERNETES_VERSION:
            yield existing
            return
    say = _progress_printer(pytestconfig)
    started = Cluster(progress=say, newer=True).start()
    say(
        f"Kubernetes {versions.NEWER_KUBERNETES_VERSION} test cluster up in {started.timings['total']:.1f}s: "
        f"{started.server} (run dir {started.run_dir})"
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def helm_binary(pytestconfig: pytest.Config) -> Path:
    """The pinned ``helm`` (``versions.HELM_VERSION``), built into its cache directory on first use."""
    return build.ensure_helm(_progress_printer(pytestconfig))


@pytest.fixture(scope="session")
def minio_binaries(pytestconfig: pytest.Config) -> dict[str, Path]:
    """``{"minio": path, "minio-users": path}`` (``versions.MINIO_VERSION``), built into their
    cache directory on first use."""
    return build.ensure_minio(_progress_printer(pytestconfig))


@pytest.fixture(scope="session")
def kube_client(cluster: Cluster) -> Iterator[ApiClient]:
    """``kubernetes`` ApiClient with the admin (system:masters) credentials."""
    client = cluster.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def readonly_kube_client(cluster: Cluster) -> Iterator[ApiClient]:
    """``kubernetes`` ApiClient for the least-privilege user (no Secrets)."""
    client = cluster.api_client(readonly=True)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, uniquely named namespace; deleted (without waiting) after the test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    client = cluster.rest()
    try:
        client.create(
            resource_path("v1", "namespaces"),
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": name, "labels": {"kubekeep.test/test-namespace": "true"}}},
        )  # fmt: skip
        yield name
    finally:
        try:
            client.delete(resource_path("v1", "namespaces", name=name))
        finally:
            client.close()
