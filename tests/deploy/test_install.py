"""The README's "Install in a cluster", run as written against the local control plane: the
chart installed with Helm, its manifests CronJob's Job run by hand, the snapshot in a repository
on the local S3 server; then its volumes job, with only the chart's ServiceAccounts (the RBAC is
enough), and what those accounts may not do (it is not more).

The Jobs' pods run on testenv's simulated node (testenv/README.md); the only additions to the
README's lines are the local S3 endpoint and that node's placement, in a values file."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from kubekeep import api
from kubekeep.kube.pods import DEFAULT_IMAGE
from testenv.cluster import Cluster
from testenv.rest import resource_path
from testenv.simcsi import TAINT_KEY, SimCSI
from tests.cli.helpers import RepoSpec, init_fast, open_api, wait_for
from tests.support.jobs import job_from_cronjob, make_claim, run_job
from tests.support.s3server import S3Server

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "kubekeep"  # the README's
PASSWORD = "correct horse battery"


def readme_install() -> list[str]:
    """The shell lines of the README's "Install in a cluster" block (continuations joined)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Install in a cluster", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's install section has a sh block"
    return [line.strip() for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def sim(cluster: Cluster) -> Iterator[SimCSI]:
    with SimCSI(cluster, agent_images=[DEFAULT_IMAGE]) as node:
        yield node


@pytest.fixture
def installed(
    cluster: Cluster, sim: SimCSI, helm_binary: Path, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> Iterator[tuple[RepoSpec, dict[str, str], list[str]]]:
    """The README's lines run in a shell, each checked; yields the repository, the environment
    and the output of the last line (``kubekeep snapshots``)."""
    placement = sim.placement()
    values = {
        "repository": {"s3": {"endpoint": s3_server.endpoint_url, "region": s3_server.region}},
        "jobDefaults": {"nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"]},
        "volumes": {"helper": {"tolerations": [{"key": TAINT_KEY, "operator": "Exists"}]}},
    }
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(values))
    bins = [Path(sys.executable).parent, helm_binary.parent, Path(cluster.binaries["kubectl"]).parent]
    env = {
        **os.environ,
        "PATH": os.pathsep.join([*map(str, bins), os.environ.get("PATH", "")]),
        "KUBECONFIG": str(cluster.kubeconfig),
        "KUBEKEEP_PASSWORD": PASSWORD,
        "KUBEKEEP_S3_ENDPOINT": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": s3_server.region,
    }
    outputs: list[str] = []
    try:
        for line in readme_install():
            command = line.replace("s3://BUCKET/", f"s3://{s3_bucket}/")
            # a Job that failed never becomes complete: fail the test sooner than the README waits
            command = command.replace("--timeout=10m", "--timeout=3m")
            if command.startswith("helm install"):
                command += f" -f {shlex.quote(str(tmp_path / 'local.yaml'))}"
            proc = subprocess.run(
                ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
            )
            assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}\n{_job_logs(cluster)}"
            outputs.append(proc.stdout)
        repo = RepoSpec(f"s3://{s3_bucket}/cluster-a", backend_options=s3_server.backend_options())
        yield repo, env, outputs
    finally:
        subprocess.run([str(helm_binary), "uninstall", "kubekeep", "-n", NAMESPACE], env=env, capture_output=True)
        # the next test installs the README's namespace again: wait until this one is gone
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=90s", check=False)


def _job_logs(cluster: Cluster) -> str:
    return cluster.kubectl("logs", "-n", NAMESPACE, "job/first-backup", "--all-containers", check=False).stdout


def _token(cluster: Cluster, account: str) -> str:
    return cluster.kubectl("create", "token", account, "-n", NAMESPACE).stdout.strip()


def _as(cluster: Cluster, token: str, method: str, path: str) -> int:
    """The status of a request made with ``token`` (the account's own credentials)."""
    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(cluster.ca_file))
    response = http.request(method, cluster.server + path, headers={"Authorization": f"Bearer {token}"})
    return int(response.status)


def test_readme_install_backs_up_with_the_charts_accounts_only(
    installed: tuple[RepoSpec, dict[str, str], list[str]],
    cluster: Cluster,
    sim: SimCSI,
    namespace: str,
    helm_binary: Path,
) -> None:
    repo, env, outputs = installed
    r = open_api(repo, PASSWORD)
    try:
        [snap] = r.snapshots()
        assert snap.kind == "manifests" and "manifests" in snap.tags and snap.uri == "k8s://in-cluster"
        assert snap.id[:8] in outputs[-1]  # the README's last line lists it
        objects = {p for p, _ in r.walk(bytes.fromhex(snap.tree))}
        assert any(p.startswith("cluster/core/namespaces/") for p in objects)
    finally:
        r.close()

    # the volumes job: a claim with a file, backed up through a helper pod, by the chart's accounts
    rest = cluster.rest()
    try:
        sim.enable(namespace)
        make_claim(rest, namespace)
        claim = resource_path("v1", "persistentvolumeclaims", namespace, "data")
        assert wait_for(lambda: rest.get(claim).get("status", {}).get("phase") == "Bound", timeout=30)
        (sim.volume_path(namespace, "data") / "hello.txt").write_text("hello from a volume\n")
        # this namespace's claims only (the session's cluster holds other tests' claims)
        _helm(env, helm_binary, "--set", f"volumes.includeNamespaces[0]={namespace}")
        result = run_job(cluster, job_from_cronjob(cluster, NAMESPACE, "kubekeep-volumes"), timeout=240)
        assert result.succeeded, result.logs
    finally:
        rest.close()
    r = open_api(repo, PASSWORD)
    try:
        [volumes] = [s for s in r.snapshots() if "volumes" in s.tags]
        files = {p for p, _ in r.walk(bytes.fromhex(volumes.tree))}
        assert f"volumes/{namespace}/data/hello.txt" in files, sorted(files)
    finally:
        r.close()

    # not more: the backup account lists but cannot change or delete; nor can the volumes account
    # touch what is not its own kind of object
    backup = _token(cluster, "kubekeep-backup")
    deployments = resource_path("apps/v1", "deployments", namespace)
    assert _as(cluster, backup, "GET", deployments) == 200
    assert _as(cluster, backup, "DELETE", resource_path("apps/v1", "deployments", namespace, "any")) == 403
    assert _as(cluster, backup, "GET", resource_path("v1", "secrets", namespace, "any")) == 403  # list only
    volumes_account = _token(cluster, "kubekeep-volumes")
    assert _as(cluster, volumes_account, "DELETE", resource_path("apps/v1", "deployments", namespace, "any")) == 403
    assert _as(cluster, volumes_account, "GET", resource_path("v1", "secrets", namespace)) == 403


def test_without_secrets_the_backup_account_cannot_list_them(
    installed: tuple[RepoSpec, dict[str, str], list[str]], cluster: Cluster, helm_binary: Path
) -> None:
    _, env, _ = installed
    _helm(env, helm_binary, "--set", "manifests.secrets=false")
    token = _token(cluster, "kubekeep-backup")
    assert _as(cluster, token, "GET", resource_path("v1", "secrets")) == 403
    assert _as(cluster, token, "GET", resource_path("v1", "configmaps")) == 200
    rendered: Any = json.loads(
        cluster.kubectl("get", "cronjob", "kubekeep-manifests", "-n", NAMESPACE, "-o", "json").stdout
    )
    args = rendered["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "secrets" in args[args.index("--exclude-resource") + 1 :]


def test_the_drill_job_drills_the_newest_manifests_snapshot_with_its_own_account(
    installed: tuple[RepoSpec, dict[str, str], list[str]], cluster: Cluster, namespace: str, helm_binary: Path
) -> None:
    """The chart's drill CronJob, enabled after the install: its Job (on the simulated node,
    k8s://in-cluster, the drill ServiceAccount) restores a namespace of the newest manifests
    snapshot into a scratch namespace, finds its Deployment ready and every object equal, stores
    the report in the repository and removes the scratch namespace."""
    repo, env, _ = installed
    rest = cluster.rest()
    labels = {"app": "web"}
    rest.create(
        resource_path("apps/v1", "deployments", namespace),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                },
            },
        },
    )
    rest.create(
        resource_path("v1", "configmaps", namespace),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"A": "1"}},
    )
    backup = run_job(cluster, job_from_cronjob(cluster, NAMESPACE, "kubekeep-manifests"), timeout=180)
    assert backup.succeeded, backup.logs
    _helm(
        env,
        helm_binary,
        "--set",
        "drill.enabled=true",
        "--set-json",
        f'drill.namespaces=["{namespace}"]',
        "--set",
        "drill.timeout=2m",
    )
    result = run_job(cluster, job_from_cronjob(cluster, NAMESPACE, "kubekeep-drill"), timeout=240)
    assert result.succeeded, result.logs
    assert "passed" in result.logs
    r = open_api(repo, PASSWORD)
    try:
        [report], damaged = api.drills(r)
        newest = max((s for s in r.snapshots() if s.kind == "manifests"), key=lambda s: s.time)
    finally:
        r.close()
    assert damaged == [] and report.ok and report.snapshot == newest.id and report.target == "k8s://in-cluster"
    [ns] = report.namespaces
    assert ns.source == namespace and ns.ready and ns.differences == 0 and ns.rto_s is not None
    assert [(w.kind, w.name, w.state) for w in report.workloads] == [("Deployment", "web", "ready")]
    assert report.cleanup.removed == [f"Namespace {ns.target}"] and report.cleanup.problems == []
    gone = rest.request("GET", resource_path("v1", "namespaces"), params={"labelSelector": "kubekeep.io/purpose=drill"})
    assert ns.target not in {n["metadata"]["name"] for n in gone["items"]}
    rest.close()


def _helm(env: dict[str, str], helm: Path, *args: str) -> None:
    """``helm upgrade --reuse-values`` of the README's release."""
    command = [str(helm), "upgrade", "kubekeep", str(ROOT / "deploy/helm/kubekeep"), "-n", NAMESPACE, "--reuse-values"]
    proc = subprocess.run([*command, *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_etcd_job_backs_up_etcd_with_a_client_certificate_from_a_secret(
    cluster: Cluster,
    sim: SimCSI,
    helm_binary: Path,
    namespace: str,
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    """The chart's etcd job, for self-managed control planes, against the test cluster's own
    etcd (TLS, client certificate from a Secret), into the repository on the local S3 server."""
    repo = RepoSpec(f"s3://{s3_bucket}/etcd", backend_options=s3_server.backend_options())
    init_fast(repo, PASSWORD)
    etcd = cluster.etcd
    cluster.kubectl(
        "create", "secret", "generic", "etcd-client", "-n", namespace,
        f"--from-file=ca.crt={etcd.ca_file}", f"--from-file=tls.crt={etcd.cert_file}",
        f"--from-file=tls.key={etcd.key_file}",
    )  # fmt: skip
    cluster.kubectl(
        "create", "secret", "generic", "s3", "-n", namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID={s3_server.access_key}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={s3_server.secret_key}",
    )  # fmt: skip
    placement = sim.placement()
    values = {
        "fullnameOverride": "kk",
        "repository": {
            "location": repo.location,
            "password": {"value": PASSWORD},
            "s3": {
                "endpoint": s3_server.endpoint_url,
                "region": s3_server.region,
                "credentials": {"existingSecret": "s3"},
            },
        },
        "manifests": {"enabled": False},
        "metrics": {"enabled": False},
        "etcd": {
            "enabled": True,
            "endpoints": ",".join(e.removeprefix("https://") for e in etcd.endpoints),
            "tls": {"source": "secret", "secretName": "etcd-client", "certFile": "tls.crt", "keyFile": "tls.key"},
            # on the simulated node instead of a control-plane node (null removes the chart's key)
            "nodeSelector": {"node-role.kubernetes.io/control-plane": None, **placement["nodeSelector"]},
            "tolerations": placement["tolerations"],
        },
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    chart = str(ROOT / "deploy/helm/kubekeep")
    install = [str(helm_binary), "install", "kk", chart, "-n", namespace, "-f", str(tmp_path / "values.yaml")]
    proc = subprocess.run(
        install, capture_output=True, text=True, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    )
    assert proc.returncode == 0, proc.stderr
    result = run_job(cluster, job_from_cronjob(cluster, namespace, "kk-etcd"), timeout=180)
    assert result.succeeded, result.logs
    r = open_api(repo, PASSWORD)
    try:
        [snap] = r.snapshots()
        assert snap.kind == "etcd" and "etcd" in snap.tags
        assert snap.metadata["etcd"]["revision"] > 0
        assert api.etcd_status(r, snap.id)["matches_recorded"]  # the stored file hashes as etcd said
    finally:
        r.close()
