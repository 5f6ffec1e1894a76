"""kubekeep's CLI run by a Job on the simulated node, as a CronJob of the chart would run it:
in-cluster credentials of a service account (mounted by the API server's ServiceAccount
admission, the token from the TokenRequest API), secrets from env and mounted Secrets, the
cache on an emptyDir, a restricted security context, the repository on the local S3 server.
The Job controller of the test control plane decides Complete or Failed from the pod status."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from kubekeep.kube.pods import DEFAULT_IMAGE
from testenv.bootstrap import READONLY_ROLE
from testenv.cluster import Cluster
from testenv.rest import RestClient, resource_path
from testenv.simcsi import TAINT_KEY, SimCSI
from tests.cli.helpers import RepoSpec, init_fast, open_api, wait_for
from tests.support.jobs import job_from_cronjob, make_claim, run_job
from tests.support.s3server import S3Server

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.timeout(300)]

PASSWORD = "correct horse"
ACCOUNT = "kubekeep-backup"
RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture(scope="module")
def sim(cluster: Cluster) -> Iterator[SimCSI]:
    with SimCSI(cluster, agent_images=[DEFAULT_IMAGE]) as node:
        yield node


@pytest.fixture
def rest(cluster: Cluster) -> Iterator[RestClient]:
    client = cluster.rest()
    yield client
    client.close()


@pytest.fixture
def repo(s3_server: S3Server, s3_bucket: str) -> RepoSpec:
    spec = RepoSpec(f"s3://{s3_bucket}/repo", backend_options=s3_server.backend_options())
    init_fast(spec, PASSWORD)
    return spec


def _secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": encoded}


@pytest.fixture
def account(rest: RestClient, namespace: str) -> Iterator[str]:
    """A service account bound to testenv's read-everything-but-Secrets ClusterRole."""
    rest.create(
        resource_path("v1", "serviceaccounts", namespace),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT, "namespace": namespace}},
    )
    binding = f"{ACCOUNT}-{namespace}"
    rest.create(
        resource_path(RBAC, "clusterrolebindings"),
        {
            "apiVersion": RBAC,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READONLY_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
        },
    )
    yield ACCOUNT
    rest.delete(resource_path(RBAC, "clusterrolebindings", name=binding))


def _setup(rest: RestClient, ns: str, s3: S3Server, repo: RepoSpec, password: str = PASSWORD) -> None:
    secrets = resource_path("v1", "secrets", ns)
    rest.create(secrets, _secret("repo-password", ns, {"password": password}))
    rest.create(secrets, _secret("s3", ns, {"access-key": s3.access_key, "secret-key": s3.secret_key}))
    rest.create(
        resource_path("v1", "configmaps", ns),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": ns},
         "data": {"greeting": "hello"}},
    )  # fmt: skip
    rest.create(
        resource_path("apps/v1", "deployments", ns),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]},
                },
            },
        },
    )


def _pod_template(ns: str, s3: S3Server, repo: RepoSpec, args: list[str]) -> dict[str, Any]:
    """A CLI pod as the chart writes one: restricted security context, nothing on the root fs."""
    return {
        "spec": {
            "serviceAccountName": ACCOUNT,
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "fsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "kubekeep",
                    "image": DEFAULT_IMAGE,
                    "command": ["kubekeep"],
                    "args": args,
                    "env": [
                        {"name": "KUBEKEEP_REPOSITORY", "value": repo.location},
                        {"name": "KUBEKEEP_S3_ENDPOINT", "value": s3.endpoint_url},
                        {"name": "AWS_DEFAULT_REGION", "value": s3.region},
                        {
                            "name": "AWS_ACCESS_KEY_ID",
                            "valueFrom": {"secretKeyRef": {"name": "s3", "key": "access-key"}},
                        },
                        {
                            "name": "AWS_SECRET_ACCESS_KEY",
                            "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret-key"}},
                        },
                        {"name": "KUBEKEEP_PASSWORD_FILE", "value": "/etc/kubekeep/password/password"},
                        {"name": "KUBEKEEP_CACHE_DIR", "value": "/cache"},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    ],
                    "volumeMounts": [
                        {"name": "password", "mountPath": "/etc/kubekeep/password", "readOnly": True},
                        {"name": "cache", "mountPath": "/cache"},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            "volumes": [
                {"name": "password", "secret": {"secretName": "repo-password", "defaultMode": 0o440}},
                {"name": "cache", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {}},
            ],
        }
    }


def _job(name: str, ns: str, s3: S3Server, repo: RepoSpec, args: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"backoffLimit": 0, "template": _pod_template(ns, s3, repo, args)},
    }


def test_backup_job_runs_in_cluster_as_its_service_account(
    cluster: Cluster, sim: SimCSI, rest: RestClient, namespace: str, account: str, s3_server: S3Server, repo: RepoSpec
) -> None:
    _setup(rest, namespace, s3_server, repo)
    args = ["backup", "k8s://in-cluster", "--include-namespace", namespace, "--exclude-resource", "secrets"]
    args += ["--tag", "job"]
    result = run_job(cluster, _job("backup", namespace, s3_server, repo, args), place_on=sim)
    assert result.succeeded, result.logs
    assert result.exit_codes == [0]
    print(f"backup job took {result.seconds:.1f}s")

    r = open_api(repo, PASSWORD)
    try:
        [snap] = r.snapshots()
        names = {path for path, _ in r.walk(bytes.fromhex(snap.tree))}
    finally:
        r.close()
    assert snap.uri == "k8s://in-cluster"
    assert snap.tags == ["job"]
    assert any(f"{namespace}/" in p and "web" in p for p in names), sorted(names)[:40]
    assert any("app-config" in p for p in names), sorted(names)[:40]
    assert not any("repo-password" in p for p in names)  # Secrets are not readable to the account

    # the retention job: a second backup, then forget --prune keeps the newest only
    assert run_job(cluster, _job("backup-2", namespace, s3_server, repo, args), place_on=sim).succeeded
    forget = ["forget", "--keep-last", "1", "--prune"]
    result = run_job(cluster, _job("forget", namespace, s3_server, repo, forget), place_on=sim)
    assert result.succeeded, result.logs
    r = open_api(repo, PASSWORD)
    try:
        assert [s.id for s in r.snapshots()] != [snap.id]
        assert len(r.snapshots()) == 1
    finally:
        r.close()


def test_the_service_account_cannot_read_secrets_or_delete(
    cluster: Cluster, sim: SimCSI, rest: RestClient, namespace: str, account: str, s3_server: S3Server, repo: RepoSpec
) -> None:
    _setup(rest, namespace, s3_server, repo)
    args = ["backup", "k8s://in-cluster", "--include-namespace", namespace, "--include-resource", "secrets"]
    result = run_job(cluster, _job("secrets", namespace, s3_server, repo, args), place_on=sim)
    assert not result.succeeded  # an incomplete backup: exit code 3, and the Job controller fails the Job
    assert result.exit_codes == [3]
    assert "cannot list secrets" in result.logs, result.logs
    r = open_api(repo, PASSWORD)
    try:
        [snap] = r.snapshots()
    finally:
        r.close()
    assert any("secrets" in w for w in snap.warnings), snap.warnings

    token = rest.create(
        resource_path("v1", "serviceaccounts", namespace) + f"/{ACCOUNT}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": []}},
    )["status"]["token"]

    def status(method: str, path: str) -> int:
        http = urllib3.PoolManager(ca_certs=str(cluster.ca_file), retries=False)
        answer = http.request(method, cluster.server + path, headers={"Authorization": f"Bearer {token}"})
        return int(answer.status)

    assert status("DELETE", resource_path("apps/v1", "deployments", namespace, "web")) == 403
    assert status("GET", resource_path("v1", "secrets", namespace, "repo-password")) == 403
    assert status("GET", resource_path("apps/v1", "deployments", namespace, "web")) == 200


def test_a_failing_job_ends_failed_with_the_exit_code(
    cluster: Cluster, sim: SimCSI, rest: RestClient, namespace: str, account: str, s3_server: S3Server, repo: RepoSpec
) -> None:
    _setup(rest, namespace, s3_server, repo, password="wrong " + uuid.uuid4().hex)
    args = ["backup", "k8s://in-cluster", "--include-namespace", namespace]
    result = run_job(cluster, _job("wrong-password", namespace, s3_server, repo, args), place_on=sim)
    assert not result.succeeded
    assert [c["reason"] for c in result.conditions if c["type"] == "Failed"] == ["BackoffLimitExceeded"]
    [pod] = result.pods
    assert pod.phase == "Failed"
    assert pod.exit_codes["kubekeep"] not in (0, None)
    assert "password" in pod.logs.lower(), pod.logs


def test_a_cronjobs_job_runs_from_kubectl_create_job(
    cluster: Cluster, sim: SimCSI, rest: RestClient, namespace: str, account: str, s3_server: S3Server, repo: RepoSpec
) -> None:
    _setup(rest, namespace, s3_server, repo)
    template = _pod_template(namespace, s3_server, repo, ["check"])
    template["spec"].update(sim.placement())
    rest.create(
        resource_path("batch/v1", "cronjobs", namespace),
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "check", "namespace": namespace},
            "spec": {
                "schedule": "0 3 * * *",
                "concurrencyPolicy": "Forbid",
                "jobTemplate": {"spec": {"backoffLimit": 0, "template": template}},
            },
        },
    )
    result = run_job(cluster, job_from_cronjob(cluster, namespace, "check"))
    assert result.succeeded, result.logs


def _cluster_grant(rest: RestClient, name: str, rules: list[dict[str, Any]], account: str, namespace: str) -> None:
    rest.create(
        resource_path(RBAC, "clusterroles"),
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules},
    )
    rest.create(
        resource_path(RBAC, "clusterrolebindings"),
        {
            "apiVersion": RBAC,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )


def _cluster_revoke(cluster: Cluster, name: str) -> None:
    rest = cluster.rest()
    try:
        rest.delete(resource_path(RBAC, "clusterrolebindings", name=name))
        rest.delete(resource_path(RBAC, "clusterroles", name=name))
    finally:
        rest.close()


def test_a_volumes_backup_job_reaches_its_helper_pods_at_their_ip(
    cluster: Cluster,
    sim: SimCSI,
    rest: RestClient,
    namespace: str,
    account: str,
    s3_server: S3Server,
    repo: RepoSpec,
    request: pytest.FixtureRequest,
) -> None:
    _setup(rest, namespace, s3_server, repo)
    sim.enable(namespace)
    verbs = ["get", "list", "watch", "create", "delete", "deletecollection", "patch", "update"]
    rules = [
        {"apiGroups": [""], "resources": ["pods", "secrets", "persistentvolumeclaims"], "verbs": verbs},
        {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshots"], "verbs": verbs},
    ]
    rest.create(
        resource_path(RBAC, "roles", namespace),
        {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "volumes", "namespace": namespace}, "rules": rules},
    )
    rest.create(
        resource_path(RBAC, "rolebindings", namespace),
        {
            "apiVersion": RBAC,
            "kind": "RoleBinding",
            "metadata": {"name": "volumes", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "volumes"},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )
    make_claim(rest, namespace)
    # kubekeep patches the PVs and VolumeSnapshotContents it makes (reclaim and deletion policies)
    cluster_rules = [
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "patch"]},
        {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshotcontents"], "verbs": ["get", "patch"]},
    ]
    _cluster_grant(rest, f"volumes-{namespace}", cluster_rules, account, namespace)
    request.addfinalizer(lambda: _cluster_revoke(cluster, f"volumes-{namespace}"))
    claim = resource_path("v1", "persistentvolumeclaims", namespace, "data")
    assert wait_for(lambda: rest.get(claim).get("status", {}).get("phase") == "Bound", timeout=30)
    (sim.volume_path(namespace, "data") / "hello.txt").write_text("hello from a volume\n")

    args = ["backup", "k8s://in-cluster", "--include-namespace", namespace, "--exclude-resource", "secrets"]
    args += ["--volumes", "--agent-connect", "pod-ip"]
    job = _job("volumes", namespace, s3_server, repo, args)
    job["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "KUBEKEEP_HELPER_TOLERATIONS", "value": TAINT_KEY}
    )
    result = run_job(cluster, job, timeout=180, place_on=sim)
    assert result.succeeded, result.logs
    r = open_api(repo, PASSWORD)
    try:
        snaps = r.snapshots()
        files = {p for snap in snaps for p, _ in r.walk(bytes.fromhex(snap.tree))}
    finally:
        r.close()
    assert any(p.endswith("hello.txt") for p in files), sorted(files)
