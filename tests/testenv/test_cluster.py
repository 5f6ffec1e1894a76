"""The real local control plane: API, kubectl, RBAC, etcd, kwok, snapshots, seeding."""

from __future__ import annotations

import json
import ssl
import urllib.request
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from testenv import bootstrap, kwok, seed, versions
from testenv.cluster import Cluster
from testenv.health import tls_context

pytestmark = pytest.mark.cluster


def _kubectl_json(cluster: Cluster, *args: str, readonly: bool = False) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json", readonly=readonly).stdout)


def test_python_client_and_kubectl_see_the_same_objects(
    cluster: Cluster, namespace: str, kube_client: ApiClient
) -> None:
    core = k8s.CoreV1Api(kube_client)
    created = core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="from-python"), data={"k": "v"})
    )
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-kubectl"},
                           "data": {"k": "w"}})  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)

    via_kubectl = _kubectl_json(cluster, "get", "configmap", "from-python", "-n", namespace)
    assert via_kubectl["metadata"]["uid"] == created.metadata.uid
    assert via_kubectl["data"] == {"k": "v"}
    names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
    assert {"from-python", "from-kubectl"} <= names
    listed = _kubectl_json(cluster, "get", "configmaps", "-n", namespace)
    assert {"from-python", "from-kubectl"} <= {i["metadata"]["name"] for i in listed["items"]}

    cluster.kubectl("delete", "configmap", "from-python", "-n", namespace)
    core.delete_namespaced_config_map("from-kubectl", namespace)
    names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
    assert not names & {"from-python", "from-kubectl"}
    assert "from-kubectl" not in cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "name").stdout


def test_versions_match_the_pins(cluster: Cluster) -> None:
    info = _kubectl_json(cluster, "version")
    assert info["clientVersion"]["gitVersion"] == versions.KUBERNETES_VERSION
    assert info["serverVersion"]["gitVersion"] == versions.KUBERNETES_VERSION
    assert cluster.versions == versions.as_dict()
    assert versions.ETCD_VERSION.lstrip("v") in cluster.etcdctl("version").stdout


def test_kwok_nodes_are_ready_and_untainted(kube_client: ApiClient, cluster: Cluster) -> None:
    nodes = {n.metadata.name: n for n in k8s.CoreV1Api(kube_client).list_node().items}
    assert set(cluster.node_names) <= set(nodes)
    for name in cluster.node_names:
        node = nodes[name]
        assert node.metadata.annotations[kwok.NODE_ANNOTATION] == kwok.NODE_ANNOTATION_VALUE
        assert not node.spec.taints
        addresses = {a.type: a.address for a in node.status.addresses}
        assert addresses["InternalIP"].startswith("127.")  # nothing ever dials a non-loopback "kubelet"
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"


def test_readonly_user_cannot_read_secrets(
    namespace: str, kube_client: ApiClient, readonly_kube_client: ApiClient, cluster: Cluster
) -> None:
    admin = k8s.CoreV1Api(kube_client)
    admin.create_namespaced_secret(namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="s"), string_data={"a": "b"}))
    ro = k8s.CoreV1Api(readonly_kube_client)
    assert ro.list_namespaced_config_map(namespace).items is not None
    assert ro.list_config_map_for_all_namespaces(limit=5).items
    assert k8s.AppsV1Api(readonly_kube_client).list_deployment_for_all_namespaces(limit=1) is not None
    for call in (
        lambda: ro.list_namespaced_secret(namespace),
        lambda: ro.list_secret_for_all_namespaces(),
        lambda: ro.read_namespaced_secret("s", namespace),
        lambda: ro.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="x"))),
    ):
        with pytest.raises(ApiException) as info:
            call()
        assert info.value.status == 403
    assert cluster.kubectl("auth", "can-i", "list", "secrets", readonly=True, check=False).stdout.strip() == "no"
    assert cluster.kubectl("auth", "can-i", "watch", "configmaps", readonly=True).stdout.strip() == "yes"


def test_volume_snapshot_api_is_served(namespace: str, kube_client: ApiClient) -> None:
    storage = k8s.StorageV1Api(kube_client).read_storage_class(bootstrap.STORAGE_CLASS)
    assert storage.provisioner == bootstrap.CSI_DRIVER
    custom = k8s.CustomObjectsApi(kube_client)
    group, version = "snapshot.storage.k8s.io", "v1"
    vsc = custom.get_cluster_custom_object(group, version, "volumesnapshotclasses", bootstrap.SNAPSHOT_CLASS)
    assert vsc["driver"] == bootstrap.CSI_DRIVER
    snapshot = {
        "apiVersion": f"{group}/{version}",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "snap-1"},
        "spec": {
            "volumeSnapshotClassName": bootstrap.SNAPSHOT_CLASS,
            "source": {"persistentVolumeClaimName": "data"},
        },
    }
    custom.create_namespaced_custom_object(group, version, namespace, "volumesnapshots", snapshot)
    got = custom.get_namespaced_custom_object(group, version, namespace, "volumesnapshots", "snap-1")
    assert got["spec"]["source"]["persistentVolumeClaimName"] == "data"
    assert custom.list_cluster_custom_object(group, version, "volumesnapshotcontents")["items"] == []


def test_service_account_tokens_work(cluster: Cluster, namespace: str, kube_client: ApiClient) -> None:
    core = k8s.CoreV1Api(kube_client)
    sa = core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="robot"))
    )
    token = core.create_namespaced_service_account_token(
        "robot", namespace, k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[]))
    ).status.token
    request = urllib.request.Request(
        f"{cluster.server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(cluster.ca_file))) as resp:
        review = json.load(resp)
    user = review["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:robot"
    assert user["uid"] == sa.metadata.uid


def test_etcd_requires_client_certificates(cluster: Cluster, namespace: str) -> None:
    endpoint = cluster.etcd.endpoints[0]
    assert endpoint.startswith("https://127.0.0.1:")
    keys = cluster.etcdctl("get", "--prefix", "--keys-only", "/registry/namespaces/").stdout.split()
    assert f"/registry/namespaces/{namespace}" in keys
    with urllib.request.urlopen(f"{endpoint}/health", context=tls_context(cluster.etcd.ca_file,
                                cluster.etcd.cert_file, cluster.etcd.key_file)) as resp:  # fmt: skip
        assert json.load(resp)["health"] == "true"
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"{endpoint}/health", context=tls_context(cluster.etcd.ca_file), timeout=5).read()


def test_seeded_deployments_run_on_kwok_nodes(cluster: Cluster, kube_client: ApiClient) -> None:
    result = seed.seed(cluster, prefix="t-seed-")
    assert result.total == sum(result.counts.values()) > 100
    seed.wait_for_workloads(cluster, result.namespaces, timeout=120)

    core = k8s.CoreV1Api(kube_client)
    ns = result.namespaces[0]
    pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=web-0").items
    assert len(pods) == seed.DEFAULT_MIX.deployment_replicas
    for pod in pods:
        assert pod.status.phase == "Running"
        assert pod.spec.node_name in cluster.node_names
        assert pod.status.pod_ip
    widgets = k8s.CustomObjectsApi(kube_client).list_namespaced_custom_object(seed.WIDGET_GROUP, "v1", ns, "widgets")
    assert len(widgets["items"]) == seed.DEFAULT_MIX.widgets
    assert all(w["status"]["phase"] == "Ready" for w in widgets["items"])
    services = {s.spec.type for s in core.list_namespaced_service(ns).items}
    assert {"ClusterIP", "NodePort"} <= services
    # The least-privilege role covers the new CRD group too, still without secrets.
    listed = cluster.kubectl("get", "widgets", "-n", ns, "-o", "name", readonly=True).stdout.split()
    assert len(listed) == seed.DEFAULT_MIX.widgets
    assert cluster.kubectl("get", "secrets", "-n", ns, readonly=True, check=False).returncode != 0
    # Re-seeding the same layout is idempotent.
    again = seed.seed(cluster, prefix="t-seed-")
    assert again.counts == result.counts


def test_proxy_to_simulated_addresses_is_denied(cluster: Cluster, namespace: str) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(svc))
    proxied = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/services/web:80/proxy/", check=False)
    assert proxied.returncode != 0
    assert bootstrap.NO_PROXY_POLICY in proxied.stderr
