"""The Helm chart (deploy/helm/kubekeep) with the pinned Helm: lint, render, schema, RBAC, and the
local control plane accepting every rendered object (server-side dry run), admitting the CLI pods
under Pod Security "restricted", and installing the chart for real.

The value sets are the chart's ci/*-values.yaml (defaults, everything enabled, S3 + IRSA,
existing Secrets, etcd with a hostPath and with a Secret, the etcd follower alone)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testenv.cluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "kubekeep"
VALUE_SETS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
#: value maps whose keys are the user's (labels, selectors), not chart values to document
FREE_FORM = {"nodeSelector", "resources", "annotations", "labels", "podAnnotations", "podLabels", "affinity"}
#: the exit codes a run cannot fix by trying again (docs in templates/_cronjob.tpl)
NO_RETRY_EXIT_CODES = [2, 3, 10, 12, 13, 18]

Obj = dict[str, Any]


def values_file(value_set: str) -> Path:
    return CHART / "ci" / f"{value_set}-values.yaml"


def value_set_values(value_set: str) -> Obj:
    loaded: Obj = yaml.safe_load(values_file(value_set).read_text())
    return loaded


def helm(helm_binary: Path, tmp: Path, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm with its config, cache and data under ``tmp`` (never the user's)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "HELM_CACHE_HOME": str(tmp / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp / "helm-config"),
        "HELM_DATA_HOME": str(tmp / "helm-data"),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run([str(helm_binary), *args], capture_output=True, text=True, env=env, timeout=120)


@dataclass
class Rendered:
    """The objects ``helm template`` made, with ways to find the parts the tests look at."""

    text: str
    objects: list[Obj]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, suffix: str) -> Obj:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"].endswith(f"-{suffix}")]
        assert len(found) == 1, f"{kind} *-{suffix}: {[o['metadata']['name'] for o in self.of_kind(kind)]}"
        return found[0]

    def components(self, kind: str) -> set[str]:
        return {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in self.of_kind(kind)}

    def pod_spec(self, component: str) -> Obj:
        if component in self.components("Deployment"):
            spec: Obj = self.named("Deployment", component)["spec"]["template"]["spec"]
        else:
            spec = self.named("CronJob", component)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec

    def container(self, component: str) -> Obj:
        container: Obj = self.pod_spec(component)["containers"][0]
        return container

    def args(self, component: str) -> list[str]:
        return [str(a) for a in self.container(component)["args"]]

    def env(self, component: str) -> dict[str, Obj]:
        return {e["name"]: e for e in self.container(component)["env"]}

    def workloads(self) -> list[str]:
        """Components with a kubekeep pod: the CronJobs, the exporter and the etcd follower."""
        return sorted(self.components("CronJob")) + sorted(self.components("Deployment"))

    def rules(self) -> list[tuple[str, Obj]]:
        return [(o["metadata"]["name"], rule) for o in self.of_kind("ClusterRole") for rule in o["rules"]]


def render(helm_binary: Path, tmp: Path, *args: str, namespace: str = "kubekeep", release: str = "kk") -> Rendered:
    proc = helm(helm_binary, tmp, "template", release, str(CHART), "--namespace", namespace, *args)
    assert proc.returncode == 0, proc.stderr
    objects = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return Rendered(proc.stdout, objects)


def render_set(
    helm_binary: Path, tmp: Path, value_set: str, *args: str, namespace: str = "kubekeep", release: str = "kk"
) -> Rendered:
    return render(helm_binary, tmp, "-f", str(values_file(value_set)), *args, namespace=namespace, release=release)


def pair_args(args: list[str], flag: str) -> list[str]:
    """The values given to a repeatable ``--flag VALUE``."""
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


# --- lint, render, schema (helm alone) -------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(helm_binary: Path, tmp_path: Path, value_set: str) -> None:
    proc = helm(helm_binary, tmp_path, "lint", "--strict", str(CHART), "-f", str(values_file(value_set)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_cronjob_is_bounded_and_restricted(helm_binary: Path, tmp_path: Path, value_set: str) -> None:
    r = render_set(helm_binary, tmp_path, value_set)
    etcd_tls = (value_set_values(value_set).get("etcd") or {}).get("tls") or {}
    etcd_as_root = etcd_tls.get("source", "hostPath") == "hostPath"
    for component in r.components("CronJob"):
        cron = r.named("CronJob", component)["spec"]
        assert cron["concurrencyPolicy"] == "Forbid"
        assert cron["successfulJobsHistoryLimit"] >= 0 and cron["failedJobsHistoryLimit"] >= 0
        job = cron["jobTemplate"]["spec"]
        assert job["backoffLimit"] >= 0 and job["activeDeadlineSeconds"] > 0
        failing = [rule for rule in job["podFailurePolicy"]["rules"] if rule["action"] == "FailJob"]
        assert failing[0]["onExitCodes"]["values"] == NO_RETRY_EXIT_CODES
        assert job["template"]["spec"]["restartPolicy"] == "Never"
    for component in r.workloads():
        pod, container = r.pod_spec(component), r.container(component)
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        if component in ("etcd", "etcd-follow") and etcd_as_root:
            assert sc["runAsUser"] == 0  # reads the node's root-only key files; documented
        else:
            assert pod["securityContext"]["runAsNonRoot"] is True and sc["runAsUser"] == 65532
        assert container["command"] == ["kubekeep"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/cache"]]
        env = r.env(component)
        assert env["KUBEKEEP_CACHE_DIR"]["value"] == "/cache"
        assert env["KUBEKEEP_REPOSITORY"]["value"] == value_set_values(value_set)["repository"]["location"]
        password = env["KUBEKEEP_PASSWORD_FILE"]["value"]
        assert volumes[mounts[str(Path(password).parent)]]["secret"]["items"][0]["path"] == Path(password).name
        # only the jobs that call the Kubernetes API carry a token
        assert pod["automountServiceAccountToken"] is (component in ("manifests", "volumes", "drill"))


def test_defaults(helm_binary: Path, tmp_path: Path) -> None:
    r = render_set(helm_binary, tmp_path, "minimal")
    assert r.components("CronJob") == {"manifests", "retention", "check"}
    assert r.components("Deployment") == {"metrics"}  # no etcd follower unless asked for
    assert r.args("manifests") == ["backup", "k8s://in-cluster", "--tag", "manifests", "--concurrency", "8"]
    forget = r.args("retention")
    assert forget[0] == "forget" and forget[-1] == "--prune"
    assert pair_args(forget, "--keep-daily") == ["7"] and pair_args(forget, "--group-by") == ["host,source,tags"]
    assert r.args("check") == ["check", "--read-data-subset", "5%"]
    assert r.args("metrics") == ["metrics", "--listen", ":9464", "--interval", "60s"]
    assert r.container("metrics")["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert r.named("Service", "metrics")["spec"]["ports"][0]["targetPort"] == "metrics"
    assert r.container("manifests")["image"] == "ghcr.io/kubekeep/kubekeep:0.1.0"  # appVersion
    secret = r.named("Secret", "password")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not r.of_kind("ServiceMonitor") and not r.of_kind("PrometheusRule")
    assert not r.of_kind("ClusterRoleBinding") or all(
        not b["metadata"]["name"].endswith("-restore") for b in r.of_kind("ClusterRoleBinding")
    )  # the restore role exists but is not bound
    assert r.named("ClusterRole", "restore")


def test_everything(helm_binary: Path, tmp_path: Path) -> None:
    r = render_set(helm_binary, tmp_path, "everything")
    assert r.components("CronJob") == {"manifests", "volumes", "etcd", "retention", "check", "drill"}
    manifests = r.args("manifests")
    assert pair_args(manifests, "--exclude-resource") == ["replicasets.apps", "secrets"]
    assert pair_args(manifests, "--tag") == ["manifests", "cluster-a"] and "--include-noisy" in manifests
    assert manifests[-1] == "--quiet"  # jobDefaults.extraArgs
    volumes = r.args("volumes")
    assert volumes[:3] == ["backup", "k8s://in-cluster", "--volumes"]
    assert pair_args(volumes, "--include-namespace") == ["shop", "billing"]
    assert pair_args(volumes, "--agent-connect") == ["port-forward"] and pair_args(volumes, "--volume-parallel") == [
        "3"
    ]
    assert pair_args(volumes, "--exclude-resource") == ["secrets"]  # takes every manifest, Secrets left out
    assert pair_args(volumes, "--agent-image") == ["ghcr.io/kubekeep/kubekeep:0.1.0-test"]
    assert json.loads(pair_args(volumes, "--helper-toleration")[0]) == {"key": "dedicated", "operator": "Exists"}
    assert "--no-annotation-hooks" not in volumes
    cron = r.named("CronJob", "volumes")["spec"]
    assert cron["timeZone"] == "Europe/Berlin" and cron["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 43200
    assert r.named("CronJob", "manifests")["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 21600
    # maps merge: the job's memory limit over jobDefaults' requests
    assert r.container("manifests")["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "2Gi"},
    }
    assert pair_args(r.args("retention"), "--tag") == ["cluster-a"]
    assert r.args("check") == ["check", "--read-data-subset", "1/7", "--quiet"]
    env = r.env("check")
    assert env["KUBEKEEP_S3_ENDPOINT"]["value"] == "https://s3.storage.example:9000"
    assert env["AWS_REGION"]["value"] == "eu-central-1"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "kubekeep-s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "AWS_SESSION_TOKEN"
    assert env["AWS_CA_BUNDLE"]["value"] == env["SSL_CERT_FILE"]["value"] == "/etc/kubekeep/ca/ca.crt"
    assert {v["name"]: v for v in r.pod_spec("check")["volumes"]}["ca"]["secret"]["secretName"] == "storage-ca"
    for sa in r.of_kind("ServiceAccount"):
        assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith("kubekeep@")
    monitor = r.named("ServiceMonitor", "metrics")["spec"]
    assert monitor["endpoints"][0]["port"] == "metrics" and monitor["endpoints"][0]["scrapeTimeout"] == "30s"
    alerts = [rule for group in r.named("PrometheusRule", "metrics")["spec"]["groups"] for rule in group["rules"]]
    exprs = [a["expr"] for a in alerts]
    assert 'time() - kubekeep_last_success_timestamp_seconds{tags=~"(.*,)?manifests(,.*)?"} > 7200' in exprs
    assert 'time() - kubekeep_last_success_timestamp_seconds{tags=~"(.*,)?volumes(,.*)?"} > 93600' in exprs
    assert 'time() - kubekeep_last_success_timestamp_seconds{tags=~"(.*,)?etcd(,.*)?"} > 25200' in exprs
    assert (
        'time() - max without (source, host) (kubekeep_last_success_timestamp_seconds{kind="etcd-delta"}) > 900'
        in exprs
    )
    assert "kubekeep_last_check_success == 0" in exprs
    assert "kubekeep_last_run_success == 0" in exprs and "kubekeep_up == 0" in exprs
    # every metric an alert names is one kubekeep metrics serves (docs/deploy.md lists them)
    served = set(re.findall(r"`(kubekeep_[a-z_]+)`", (ROOT / "docs" / "deploy.md").read_text()))
    assert {m for e in exprs for m in re.findall(r"kubekeep_[a-z_]+", e)} <= served


def test_drill(helm_binary: Path, tmp_path: Path) -> None:
    assert "drill" not in render_set(helm_binary, tmp_path, "minimal").components("CronJob")  # off by default
    r = render_set(helm_binary, tmp_path, "everything")
    args = r.args("drill")
    assert args[:4] == ["drill", "latest", "--to", "k8s://in-cluster"]
    assert pair_args(args, "--timeout") == ["15m"] and pair_args(args, "--concurrency") == ["8"]
    assert pair_args(args, "--tag") == ["manifests", "cluster-a"]
    assert pair_args(args, "--namespace") == ["shop", "billing"]
    assert r.named("CronJob", "drill")["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 3600
    account = r.pod_spec("drill")["serviceAccountName"]
    assert account.endswith("-drill") and r.pod_spec("drill")["automountServiceAccountToken"] is True
    binding = r.named("ClusterRoleBinding", "drill")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "kubekeep"}]
    assert binding["roleRef"]["name"] == r.named("ClusterRole", "drill")["metadata"]["name"]
    rules = r.named("ClusterRole", "drill")["rules"]
    assert _grants(rules, "apps", "deployments", "create") and _grants(rules, "", "namespaces", "delete")
    assert not _grants(rules, "apps", "deployments", "delete") and not _grants(rules, "", "nodes", "delete")
    proc = helm(
        helm_binary,
        tmp_path,
        "template",
        "kk",
        str(CHART),
        "-f",
        str(values_file("minimal")),
        "--set",
        "drill.enabled=true",
    )
    assert proc.returncode != 0 and "/drill/namespaces" in proc.stderr, proc.stderr  # the schema asks for one


def test_s3_with_irsa(helm_binary: Path, tmp_path: Path) -> None:
    r = render_set(helm_binary, tmp_path, "s3-irsa")
    accounts = r.of_kind("ServiceAccount")
    assert {a["metadata"]["name"].rsplit("-", 1)[1] for a in accounts} == {"backup", "volumes", "repository"}
    for sa in accounts:
        assert sa["metadata"]["annotations"] == {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/kubekeep-backup"
        }
    for component in r.workloads():
        env = r.env(component)
        assert env["AWS_REGION"]["value"] == "eu-west-1"
        assert "AWS_ACCESS_KEY_ID" not in env and "KUBEKEEP_S3_ENDPOINT" not in env
    assert not r.of_kind("Secret")  # the password is an existing Secret
    volumes = r.args("volumes")
    assert pair_args(volumes, "--agent-connect") == ["pod-ip"] and "--no-annotation-hooks" in volumes
    assert pair_args(volumes, "--include-resource") == ["persistentvolumeclaims"]


def test_existing_secrets(helm_binary: Path, tmp_path: Path) -> None:
    r = render_set(helm_binary, tmp_path, "existing-secrets")
    assert not r.of_kind("Secret")
    for component in r.workloads():
        env = r.env(component)
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "kubekeep-s3", "key": "access-key"}
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "kubekeep-s3", "key": "secret-key"}
        assert env["KUBEKEEP_S3_ENDPOINT"]["value"] == "https://minio.storage.svc:9000"
        volumes = {v["name"]: v for v in r.pod_spec(component)["volumes"]}
        assert volumes["password"]["secret"]["secretName"] == "kubekeep-repository"
        assert volumes["password"]["secret"]["items"] == [{"key": "repository-password", "path": "password"}]
        assert volumes["ca"]["configMap"] == {
            "name": "storage-ca",
            "defaultMode": 0o444,
            "items": [{"key": "ca.pem", "path": "ca.crt"}],
        }
    assert pair_args(r.args("manifests"), "--exclude-resource") == ["secrets"]


def test_oci_registry(helm_binary: Path, tmp_path: Path) -> None:
    """The registry's credentials as S3's are given: a Secret (a Docker config) in every pod."""
    r = render_set(helm_binary, tmp_path, "oci-registry")
    assert not r.of_kind("Secret")
    for component in r.workloads():
        env = r.env(component)
        assert env["KUBEKEEP_REPOSITORY"]["value"] == "oci://registry.example.com/backups/cluster-a"
        assert env["DOCKER_CONFIG"]["value"] == "/etc/kubekeep/docker"
        assert env["KUBEKEEP_REGISTRY_CA"]["value"] == "/etc/kubekeep/ca/ca.crt"
        assert "KUBEKEEP_INSECURE_REGISTRY" not in env and "AWS_ACCESS_KEY_ID" not in env
        volumes = {v["name"]: v for v in r.pod_spec(component)["volumes"]}
        assert volumes["docker-config"]["secret"]["secretName"] == "kubekeep-registry"
        assert volumes["docker-config"]["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]
        mounts = {m["name"]: m for c in r.pod_spec(component)["containers"] for m in c.get("volumeMounts", [])}
        assert mounts["docker-config"]["mountPath"] == "/etc/kubekeep/docker" and mounts["docker-config"]["readOnly"]


@pytest.mark.parametrize("value_set", ["etcd-hostpath", "etcd-secret"])
def test_etcd(helm_binary: Path, tmp_path: Path, value_set: str) -> None:
    r = render_set(helm_binary, tmp_path, value_set)
    args, pod = r.args("etcd"), r.pod_spec("etcd")
    hostpath = value_set == "etcd-hostpath"
    assert args[1] == ("etcd://$(HOST_IP):2379" if hostpath else "etcd://10.0.0.11:2379,10.0.0.12:2379,10.0.0.13:2379")
    assert r.env("etcd")["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    certs = {v["name"]: v for v in pod["volumes"]}["etcd-certs"]
    if hostpath:
        assert pair_args(args, "--key") == ["/etc/kubekeep/etcd/healthcheck-client.key"]
        assert certs["hostPath"] == {"path": "/etc/kubernetes/pki/etcd", "type": "Directory"}
    else:
        assert pair_args(args, "--cert") == ["/etc/kubekeep/etcd/tls.crt"]
        assert pair_args(args, "--etcd-server-name") == ["etcd.cluster.local"]
        assert certs["secret"] == {"secretName": "etcd-backup-client", "defaultMode": 0o440}
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert pod["tolerations"][0]["key"] == "node-role.kubernetes.io/control-plane"
    mount = next(m for m in r.container("etcd")["volumeMounts"] if m["name"] == "etcd-certs")
    assert mount["readOnly"] is True


@pytest.mark.parametrize("value_set", ["etcd-follow", "everything"])
def test_etcd_follow(helm_binary: Path, tmp_path: Path, value_set: str) -> None:
    r = render_set(helm_binary, tmp_path, value_set)
    hostpath = value_set == "etcd-follow"
    deployment = r.named("Deployment", "etcd-follow")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod, container = r.pod_spec("etcd-follow"), r.container("etcd-follow")
    args = r.args("etcd-follow")
    assert args[:3] == ["etcd", "follow", "etcd://$(HOST_IP):2379"]
    assert r.env("etcd-follow")["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    certs = {v["name"]: v for v in pod["volumes"]}["etcd-certs"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "etcd-certs")
    assert mount == {"name": "etcd-certs", "mountPath": "/etc/kubekeep/etcd", "readOnly": True}
    if hostpath:
        assert "etcd" not in r.components("CronJob")  # the follower runs without the etcd job
        assert pair_args(args, "--tag") == ["etcd"]
        flags = {f: pair_args(args, f) for f in ("--interval", "--segment-size", "--full-every", "--full-ratio")}
        assert flags == {
            "--interval": ["10s"],
            "--segment-size": ["8MiB"],
            "--full-every": ["1h"],
            "--full-ratio": ["1"],
        }
        assert pair_args(args, "--idle-every") == ["5m"]
        assert pair_args(args, "--key") == ["/etc/kubekeep/etcd/healthcheck-client.key"]
        assert certs["hostPath"] == {"path": "/etc/kubernetes/pki/etcd", "type": "Directory"}
        assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
        assert pod["tolerations"][0]["key"] == "node-role.kubernetes.io/control-plane"
        assert pod["securityContext"]["runAsUser"] == 0 and container["securityContext"]["runAsUser"] == 0
        assert container["resources"] == {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    else:
        # the same endpoints, certificates and checks as the etcd job
        etcd_args = r.args("etcd")
        assert args[2] == etcd_args[1]
        for flag in ("--cacert", "--cert", "--key", "--etcd-server-name"):
            assert pair_args(args, flag) == pair_args(etcd_args, flag)
        assert certs == {v["name"]: v for v in r.pod_spec("etcd")["volumes"]}["etcd-certs"]
        assert certs["secret"]["secretName"] == "etcd-backup-client"
        assert pair_args(args, "--tag") == ["etcd", "cluster-a"]
        assert pair_args(args, "--interval") == ["5s"] and pair_args(args, "--segment-size") == ["4MiB"]
        assert pair_args(args, "--full-every") == ["30m"] and pair_args(args, "--full-ratio") == ["0.5"]
        assert pair_args(args, "--idle-every") == ["1m"]
        assert "--quiet" not in args  # jobDefaults are the CronJobs'
        assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"} and "tolerations" not in pod
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["resources"] == {
            "requests": {"cpu": "50m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        }
    assert pod["serviceAccountName"].endswith("-repository") and pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] == 60
    # nothing answers a probe: a follower that cannot go on exits, and the kubelet restarts it
    assert "livenessProbe" not in container and "readinessProbe" not in container and "ports" not in container
    assert r.env("etcd-follow")["KUBEKEEP_REPOSITORY"]["value"] == value_set_values(value_set)["repository"]["location"]


def test_etcd_follow_segment_size_in_bytes(helm_binary: Path, tmp_path: Path) -> None:
    r = render_set(helm_binary, tmp_path, "etcd-follow", "--set", "etcdFollow.segmentSize=4194304")
    assert pair_args(r.args("etcd-follow"), "--segment-size") == ["4194304"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rbac_has_no_wildcard_verb(helm_binary: Path, tmp_path: Path, value_set: str) -> None:
    r = render_set(helm_binary, tmp_path, value_set)
    assert r.rules()
    for name, rule in r.rules():
        assert "*" not in rule["verbs"], (name, rule)


def _grants(rules: list[Obj], group: str, resource: str, verb: str) -> bool:
    return any(
        verb in rule["verbs"]
        and (group in rule["apiGroups"] or "*" in rule["apiGroups"])
        and (resource in rule["resources"] or "*" in rule["resources"])
        for rule in rules
    )


def test_backup_role_lists_only_and_leaves_secrets_out(helm_binary: Path, tmp_path: Path) -> None:
    with_secrets = render_set(helm_binary, tmp_path, "minimal").named("ClusterRole", "backup")["rules"]
    assert with_secrets == [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["list"]}]
    without = render_set(helm_binary, tmp_path, "existing-secrets").named("ClusterRole", "backup")["rules"]
    assert all(rule["verbs"] == ["list"] for rule in without)
    assert not _grants(without, "", "secrets", "list")
    assert "*" not in {g for rule in without for g in rule["apiGroups"]}
    assert _grants(without, "apps", "deployments", "list") and _grants(without, "", "configmaps", "list")
    assert not _grants(without, "", "events", "list")  # noisy: not taken unless manifests.includeNoisy


def test_volumes_roles_are_what_the_runs_request(helm_binary: Path, tmp_path: Path) -> None:
    r = render_set(helm_binary, tmp_path, "s3-irsa")
    namespaced = {
        (g, res): rule["verbs"]
        for rule in r.named("ClusterRole", "volumes")["rules"]
        for g in rule["apiGroups"]
        for res in rule["resources"]
    }
    assert namespaced == {
        ("", "persistentvolumeclaims"): ["get", "list", "create", "delete"],
        ("", "pods"): ["get", "list", "create", "delete"],
        ("", "pods/log"): ["get"],
        ("", "secrets"): ["create", "delete"],
        ("", "events"): ["list"],
        ("snapshot.storage.k8s.io", "volumesnapshots"): ["get", "create", "delete"],
    }  # no pods/exec (no hooks), no pods/portforward (pod-ip)
    clusterwide = {
        (g, res): rule["verbs"]
        for rule in r.named("ClusterRole", "volumes-cluster")["rules"]
        for g in rule["apiGroups"]
        for res in rule["resources"]
    }
    assert clusterwide == {
        ("", "persistentvolumes"): ["get", "patch"],
        ("", "namespaces"): ["get"],
        ("storage.k8s.io", "storageclasses"): ["get", "list"],
        ("snapshot.storage.k8s.io", "volumesnapshotclasses"): ["list"],
        ("snapshot.storage.k8s.io", "volumesnapshotcontents"): ["patch"],
    }
    # the default volumes snapshot records claim manifests only: no backup role for its account
    subjects = [s["name"] for s in r.named("ClusterRoleBinding", "backup")["subjects"]]
    assert subjects == ["kk-kubekeep-backup"]
    everything = render_set(helm_binary, tmp_path, "everything")
    rules = everything.named("ClusterRole", "volumes")["rules"]
    assert _grants(rules, "", "pods/exec", "create") and _grants(rules, "", "pods/portforward", "get")
    bindings = everything.of_kind("RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["billing", "shop"]
    assert not [b for b in everything.of_kind("ClusterRoleBinding") if b["metadata"]["name"].endswith("-volumes")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "volumes.agentConnect=ssh"], "/volumes/agentConnect"),
        (["--set", "manifests.schedul=@daily"], "schedul"),
        (["--set", "bogus=1"], "bogus"),
        (["--set", "retention.keepDaily=-1"], "/retention/keepDaily"),
        (["--set", "check.readDataSubset=five"], "/check/readDataSubset"),
        (["--set", "manifests.schedule=hourly"], "/manifests/schedule"),
        (["--set", "etcd.tls.source=disk"], "/etcd/tls/source"),
        (["--set", "repository.location=ftp://x"], "/repository/location"),
        (["--set", "jobDefaults.concurrencyPolicy=Sometimes"], "/jobDefaults/concurrencyPolicy"),
        (["--set", "volumes.helper.user=root"], "/volumes/helper/user"),
        (["--set", "metrics.port=70000"], "/metrics/port"),
        (["--set", "drill.timeout=ten minutes"], "/drill/timeout"),
        (["--set-json", 'drill.namespaces=["Not_A_Name"]'], "/drill/namespaces"),
        (["--set", "etcdFollow.interval=10 seconds"], "/etcdFollow/interval"),
        (["--set", "etcdFollow.fullEvery=1d"], "/etcdFollow/fullEvery"),
        (["--set", "etcdFollow.fullRatio=0"], "/etcdFollow/fullRatio"),
        (["--set", "etcdFollow.segmentSize=lots"], "/etcdFollow/segmentSize"),
        (["--set", "etcdFollow.replicas=2"], "replicas"),
    ],
)
def test_schema_rejects_bad_values(helm_binary: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = helm(helm_binary, tmp_path, "template", "kk", str(CHART), "-f", str(values_file("minimal")), *args)
    assert proc.returncode != 0
    assert "schema" in proc.stderr and message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "repository.location=s3://b/p"], "repository.password"),
        (["--set", "repository.location=/repository/kk", "--set", "repository.password.value=x"], "pvc.claimName"),
        (
            ["-f", str(values_file("minimal")), "--set", "etcd.enabled=true,etcd.tls.source=secret"],
            "etcd.tls.secretName",
        ),
        (
            ["-f", str(values_file("minimal")), "--set", "etcdFollow.enabled=true,etcd.tls.source=secret"],
            "etcd.tls.secretName",
        ),
        (
            [
                "-f",
                str(values_file("minimal")),
                "--set",
                "retention.keepHourly=0,retention.keepDaily=0,retention.keepWeekly=0,retention.keepMonthly=0",
            ],
            "retention",
        ),
    ],
)
def test_incomplete_values_fail_with_a_reason(helm_binary: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = helm(helm_binary, tmp_path, "template", "kk", str(CHART), *args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def _value_paths(values: Obj, prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in FREE_FORM:
            yield from _value_paths(value, path + ".")
        else:
            yield path


def test_every_value_is_documented() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [p for p in _value_paths(values) if f"`{p}`" not in readme]
    assert not missing, f"values missing from the chart's README.md: {missing}"


# --- the local control plane -----------------------------------------------------------------

#: the two Prometheus Operator kinds the chart can make, with schemas for exactly the fields it
#: writes (unknown fields are refused by strict field validation, so a typo still fails)
_STR = {"type": "string"}
_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
MONITORING_CRDS = {
    "servicemonitors": (
        "ServiceMonitor",
        {
            "selector": {"type": "object", "properties": {"matchLabels": _MAP}},
            "namespaceSelector": {"type": "object", "properties": {"matchNames": {"type": "array", "items": _STR}}},
            "endpoints": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"port": _STR, "path": _STR, "interval": _STR, "scrapeTimeout": _STR},
                },
            },
        },
    ),
    "prometheusrules": (
        "PrometheusRule",
        {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "properties": {
                        "name": _STR,
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["expr"],
                                "properties": {
                                    "alert": _STR,
                                    "expr": _STR,
                                    "for": _STR,
                                    "labels": _MAP,
                                    "annotations": _MAP,
                                },
                            },
                        },
                    },
                },
            }
        },
    ),
}


def _crd(plural: str, kind: str, spec: Obj) -> Obj:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "required": list(spec)[:1], "properties": spec}},
                        }
                    },
                }
            ],
        },
    }


def kubectl_apply(cluster: Cluster, objects: list[Obj], *extra: str) -> subprocess.CompletedProcess[str]:
    docs = "\n".join("---\n" + yaml.safe_dump(o) for o in objects)
    return cluster.kubectl(
        "apply", "--server-side", "--field-manager=kubekeep-chart-test", *extra, "-f", "-", input=docs, check=False
    )


def _wait(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Cluster) -> Iterator[None]:
    """Minimal ServiceMonitor and PrometheusRule CRDs, removed (and gone from discovery) after."""
    crds = [_crd(plural, kind, spec) for plural, (kind, spec) in MONITORING_CRDS.items()]
    proc = kubectl_apply(cluster, crds)
    assert proc.returncode == 0, proc.stderr
    names = [c["metadata"]["name"] for c in crds]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", *[f"crd/{n}" for n in names])
    try:
        yield
    finally:
        cluster.kubectl("delete", "--wait=true", "--timeout=60s", *[f"crd/{n}" for n in names], check=False)
        _wait(
            lambda: "monitoring.coreos.com" not in cluster.kubectl("api-versions").stdout,
            "the monitoring.coreos.com group to leave discovery",
        )


def _cluster_values(value_set: str, namespace: str) -> list[str]:
    """Value overrides so a value set fits the test cluster: the claims' namespaces are the test's."""
    overrides = []
    if (value_set_values(value_set).get("volumes") or {}).get("includeNamespaces"):
        overrides += ["--set-json", f'volumes.includeNamespaces=["{namespace}"]']
    return overrides


@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.usefixtures("monitoring_crds")
def test_every_object_is_accepted_by_the_api_server(
    helm_binary: Path, tmp_path: Path, cluster: Cluster, namespace: str, value_set: str
) -> None:
    r = render_set(
        helm_binary,
        tmp_path,
        value_set,
        "--kube-version",
        cluster.versions["kubernetes"],
        *_cluster_values(value_set, namespace),
        namespace=namespace,
        release=f"kk-{namespace[-6:]}",  # cluster-scoped names of its own
    )
    proc = kubectl_apply(cluster, r.objects, "--dry-run=server")
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    assert proc.stdout.count("(server dry run)") == len(r.objects), proc.stdout


def _pods(r: Rendered, namespace: str) -> list[Obj]:
    """Each kubekeep workload's pod, as its controller would create it."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"kubekeep-{component}-{uuid.uuid4().hex[:5]}", "namespace": namespace},
            "spec": r.pod_spec(component),
        }
        for component in r.workloads()
    ]


def _can(cluster: Cluster, account: str, namespace: str, *request: str) -> bool:
    who = f"--as=system:serviceaccount:{namespace}:kk-{namespace[-6:]}-kubekeep-{account}"
    proc = cluster.kubectl("auth", "can-i", who, *request, check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stdout + proc.stderr
    return proc.stdout.strip() == "yes"


@pytest.mark.usefixtures("monitoring_crds")
def test_install_into_a_restricted_namespace(
    helm_binary: Path, tmp_path: Path, cluster: Cluster, namespace: str
) -> None:
    """helm install (every part enabled) into a namespace enforcing Pod Security "restricted": the
    CLI pods are admitted, the accounts can do what the runs need and no more; uninstall."""
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    release = f"kk-{namespace[-6:]}"
    install = helm(
        helm_binary,
        tmp_path,
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "-f",
        str(values_file("everything")),
        *_cluster_values("everything", namespace),
        "--wait",
        "--timeout",
        "90s",
        kubeconfig=cluster.kubeconfig,
    )
    assert install.returncode == 0, install.stderr
    try:
        manifest = helm(
            helm_binary, tmp_path, "get", "manifest", release, "-n", namespace, kubeconfig=cluster.kubeconfig
        )
        r = Rendered(manifest.stdout, [d for d in yaml.safe_load_all(manifest.stdout) if d])
        assert r.components("CronJob") == {"manifests", "volumes", "etcd", "retention", "check", "drill"}
        pods = kubectl_apply(cluster, _pods(r, namespace), "--dry-run=server")
        assert pods.returncode == 0 and "Warning" not in pods.stderr, pods.stderr
        # the etcd job reading the node's certificates (hostPath, root) is refused here, as documented
        hostpath = render_set(
            helm_binary,
            tmp_path,
            "etcd-hostpath",
            "--set",
            "etcdFollow.enabled=true",
            namespace=namespace,
            release=release,
        )
        etcd_pod = [p for p in _pods(hostpath, namespace) if p["metadata"]["name"].startswith("kubekeep-etcd-")]
        assert len(etcd_pod) == 2  # the job's and the follower's
        refused = kubectl_apply(cluster, etcd_pod, "--dry-run=server")
        assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr, refused.stderr
        assert "hostPath" in refused.stderr

        def can(account: str, *request: str) -> bool:
            return _can(cluster, account, namespace, *request)

        # backup (Secrets left out by the value set): lists, nothing else
        assert can("backup", "list", "deployments.apps", "--all-namespaces")
        assert can("backup", "list", "customresourcedefinitions.apiextensions.k8s.io")
        assert not can("backup", "get", "deployments.apps", "-n", "default")
        assert not can("backup", "delete", "deployments.apps", "-n", "default")
        assert not can("backup", "list", "secrets", "--all-namespaces")
        assert not can("backup", "get", "nodes", "--subresource=proxy")
        # volumes: its namespaces only, hooks (exec) and port-forward because the value set asks
        assert can("volumes", "create", "pods", "-n", namespace)
        assert can("volumes", "create", "pods", "--subresource=exec", "-n", namespace)
        assert can("volumes", "create", "volumesnapshots.snapshot.storage.k8s.io", "-n", namespace)
        assert not can("volumes", "create", "pods", "-n", "default")
        assert not can("volumes", "list", "secrets", "-n", namespace)
        assert not can("volumes", "delete", "persistentvolumes")
        # the repository jobs (etcd, retention, check, metrics, the etcd follower) may do nothing in the cluster
        assert not can("repository", "list", "pods", "-n", namespace)
        # restore: bound by the value set
        assert can("restore", "create", "deployments.apps", "-n", "default")
        assert not can("restore", "delete", "deployments.apps", "-n", "default")
        # drill: the restore's breadth, and deleting (scratch) namespaces, nothing else deleted
        assert can("drill", "create", "namespaces")
        assert can("drill", "create", "deployments.apps", "-n", "default")
        assert can("drill", "list", "statefulsets.apps", "-n", "default")
        assert can("drill", "delete", "namespaces")
        assert not can("drill", "delete", "deployments.apps", "-n", "default")
        assert not can("drill", "delete", "customresourcedefinitions.apiextensions.k8s.io")
    finally:
        uninstall = helm(
            helm_binary, tmp_path, "uninstall", release, "-n", namespace, "--wait", kubeconfig=cluster.kubeconfig
        )
    assert uninstall.returncode == 0, uninstall.stderr
    left = cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-o", "name", "-l", f"app.kubernetes.io/instance={release}"
    )
    assert left.stdout.strip() == ""


def test_the_retention_job_can_run_with_its_own_prune_credentials(helm_binary: Path, tmp_path: Path) -> None:
    r = render_set(
        helm_binary,
        tmp_path,
        "existing-secrets",
        "--set",
        "retention.s3Credentials.existingSecret=kubekeep-s3-prune",
    )
    prune = r.env("retention")
    assert prune["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "kubekeep-s3-prune", "key": "access-key"}
    assert prune["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "kubekeep-s3-prune"
    assert prune["KUBEKEEP_S3_ENDPOINT"]["value"] == "https://minio.storage.svc:9000"
    for component in r.workloads():  # the backups keep the append-only credentials
        if component != "retention":
            assert r.env(component)["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "kubekeep-s3"
