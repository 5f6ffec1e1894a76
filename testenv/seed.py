"""Fill a test cluster with a realistic mix of objects (and a large one for benchmarks).

Default mode: a handful of application namespaces with Deployments,
StatefulSets, Services (ClusterIP, NodePort, headless), ConfigMaps, Secrets,
ServiceAccounts, Roles/RoleBindings, Ingresses, PVCs and ``Widget`` custom
objects of the ``widgets.example.kubekeep.test`` CRD.

Scale mode (``scale=N``): N namespaces of 101 objects each (N=100 gives 10,100
objects). Requests go out from a thread pool over one pooled connection manager.
Content is deterministic (derived from object names), so two seeds of the same
cluster layout carry identical data.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from testenv import bootstrap, health
from testenv.rest import ApiError, RestClient, resource_path

if TYPE_CHECKING:
    from testenv.cluster import Cluster

Obj = dict[str, Any]
Progress = Callable[[str], None]

WIDGET_GROUP = "example.kubekeep.test"
WIDGET_CRD = f"widgets.{WIDGET_GROUP}"
SEED_LABEL = "kubekeep.test/seeded"
IMAGE = "registry.kubekeep.test/app:1.0"

#: (apiVersion, kind) -> (plural, namespaced)
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Service"): ("services", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("networking.k8s.io/v1", "Ingress"): ("ingresses", True),
    (f"{WIDGET_GROUP}/v1", "Widget"): ("widgets", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
}

#: Default-mode namespaces (application-like names).
DEFAULT_NAMESPACES = ("shop-frontend", "shop-backend", "payments", "analytics", "platform-tools")


class SeedError(RuntimeError):
    """Seeding failed."""


@dataclass
class SeedResult:
    """What :func:`seed` created and how long it took."""

    namespaces: list[str]
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Number of objects created."""
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line for logs and benchmark reports."""
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items()))
        rate = self.total / self.seconds if self.seconds else 0.0
        return (
            f"seeded {self.total} objects in {len(self.namespaces)} namespaces in "
            f"{self.seconds:.1f}s ({rate:.0f} objects/s): {kinds}"
        )


# --------------------------------------------------------------------- builders


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("/".join(parts).encode()).digest()


def _text(seed: str, size: int) -> str:
    """Deterministic, mildly repetitive config-like text of about ``size`` bytes."""
    lines: list[str] = []
    length = n = 0
    while length < size:
        line = f"key_{n % 17} = {_digest(seed, str(n)).hex()[:24]}  # setting {n}"
        lines.append(line)
        length += len(line) + 1
        n += 1
    return "\n".join(lines) + "\n"


def _meta(name: str, ns: str, app: str | None = None, **extra: Any) -> Obj:
    labels = {SEED_LABEL: "true"}
    if app:
        labels["app.kubernetes.io/name"] = app
    meta: Obj = {"name": name, "namespace": ns, "labels": labels}
    meta.update(extra)
    return meta


def widget_crd() -> Obj:
    """Namespaced ``Widget`` CRD with a status subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": WIDGET_CRD},
        "spec": {
            "group": WIDGET_GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 0},
                                        "color": {"type": "string"},
                                        "tags": {"type": "array", "items": {"type": "string"}},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {
                                        "phase": {"type": "string"},
                                        "observedGeneration": {"type": "integer"},
                                    },
                                },
                            },
                        }
                    },
                    "additionalPrinterColumns": [
                        {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    ],
                }
            ],
        },
    }


def _pod_template(app: str, sa: str, cm: str, secret: str) -> Obj:
    return {
        "metadata": {"labels": {"app.kubernetes.io/name": app}},
        "spec": {
            "serviceAccountName": sa,
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [{"name": "APP_NAME", "value": app}],
                    "envFrom": [{"configMapRef": {"name": cm}}],
                    "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds", "readOnly": True}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
            "volumes": [{"name": "creds", "secret": {"secretName": secret}}],
        },
    }


@dataclass(frozen=True)
class Mix:
    """How many objects of each kind one namespace gets."""

    configmaps: int
    secrets: int
    serviceaccounts: int
    roles: int
    deployments: int
    deployment_replicas: int
    statefulsets: int
    services_clusterip: int
    ingresses: int
    pvcs: int
    widgets: int
    configmap_bytes: int


DEFAULT_MIX = Mix(
    configmaps=4, secrets=3, serviceaccounts=2, roles=2, deployments=2, deployment_replicas=2,
    statefulsets=1, services_clusterip=2, ingresses=1, pvcs=2, widgets=5, configmap_bytes=4096,
)  # fmt: skip
#: 101 objects per namespace including the Namespace itself.
SCALE_MIX = Mix(
    configmaps=30, secrets=20, serviceaccounts=5, roles=3, deployments=5, deployment_replicas=1,
    statefulsets=1, services_clusterip=4, ingresses=2, pvcs=5, widgets=20, configmap_bytes=1024,
)  # fmt: skip


def namespace_objects(ns: str, mix: Mix) -> tuple[Obj, list[Obj]]:
    """The Namespace object and everything inside it, for one namespace."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {SEED_LABEL: "true", "team": ns.split("-")[0]}},
    }
    objs: list[Obj] = []
    cms = [f"config-{i}" for i in range(mix.configmaps)]
    secrets = [f"credentials-{i}" for i in range(mix.secrets)]
    sas = [f"app-{i}" for i in range(mix.serviceaccounts)]
    for name in cms:
        objs.append({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, ns),
            "data": {
                "app.properties": _text(f"{ns}/{name}", mix.configmap_bytes),
                "LOG_LEVEL": "info", "FEATURE_FLAGS": "a,b,c",
            },
        })  # fmt: skip
    for i, name in enumerate(secrets):
        data = {
            "username": base64.b64encode(f"user-{ns}-{i}".encode()).decode(),
            "password": base64.b64encode(_digest(ns, name, "pw")).decode(),
        }
        secret: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(name, ns),
            "type": "Opaque",
            "data": data,
        }
        if i == 1:
            secret["type"] = "kubernetes.io/tls"
            secret["data"] = {
                "tls.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n" + _digest(ns, "crt") * 8).decode(),
                "tls.key": base64.b64encode(b"-----BEGIN PRIVATE KEY-----\n" + _digest(ns, "key") * 4).decode(),
            }
        objs.append(secret)
    for name in sas:
        objs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, ns)})
    for i in range(mix.roles):
        objs.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(f"reader-{i}", ns),
            "rules": [{"apiGroups": [""], "resources": ["configmaps", "pods"], "verbs": ["get", "list", "watch"]}],
        })  # fmt: skip
        objs.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(f"reader-{i}", ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"reader-{i}"},
            "subjects": [{"kind": "ServiceAccount", "name": sas[i % len(sas)], "namespace": ns}],
        })  # fmt: skip
    apps = [f"web-{i}" for i in range(mix.deployments)]
    for i, app in enumerate(apps):
        objs.append({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(app, ns, app),
            "spec": {
                "replicas": mix.deployment_replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
                "template": _pod_template(app, sas[i % len(sas)], cms[i % len(cms)], secrets[0]),
            },
        })  # fmt: skip
    for i in range(mix.statefulsets):
        app = f"db-{i}"
        objs.append({
            "apiVersion": "v1", "kind": "Service", "metadata": _meta(app, ns, app),
            "spec": {"clusterIP": "None", "selector": {"app.kubernetes.io/name": app},
                     "ports": [{"name": "db", "port": 5432}]},
        })  # fmt: skip
        objs.append({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(app, ns, app),
            "spec": {
                "serviceName": app, "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
                "template": _pod_template(app, sas[0], cms[0], secrets[0]),
            },
        })  # fmt: skip
    services = [(f"{apps[i % len(apps)]}-svc-{i}", apps[i % len(apps)]) for i in range(mix.services_clusterip)]
    for svc, app in services:
        objs.append({
            "apiVersion": "v1", "kind": "Service", "metadata": _meta(svc, ns, app),
            "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": app},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        })  # fmt: skip
    objs.append({
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(f"{apps[0]}-nodeport", ns, apps[0]),
        "spec": {"type": "NodePort", "selector": {"app.kubernetes.io/name": apps[0]},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    })  # fmt: skip
    for i in range(mix.ingresses):
        svc, app = services[i % len(services)]
        objs.append({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": _meta(f"{app}-ingress-{i}", ns, app),
            "spec": {"rules": [{
                "host": f"{app}-{i}.{ns}.kubekeep.test",
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                    "service": {"name": svc, "port": {"number": 80}}}}]},
            }]},
        })  # fmt: skip
    for i in range(mix.pvcs):
        objs.append({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(f"data-{i}", ns),
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": bootstrap.STORAGE_CLASS,
                     "resources": {"requests": {"storage": f"{1 + i % 4}Gi"}}},
        })  # fmt: skip
    colors = ("red", "green", "blue", "yellow")
    for i in range(mix.widgets):
        objs.append({
            "apiVersion": f"{WIDGET_GROUP}/v1", "kind": "Widget", "metadata": _meta(f"widget-{i}", ns),
            "spec": {"size": i, "color": colors[i % len(colors)], "tags": [ns, f"batch-{i % 3}"]},
        })  # fmt: skip
    return namespace, objs


#: Creation order within a seed (as Helm installs): configuration before the
#: workloads that use it, and workloads last so that the controller and kwok
#: activity they cause does not slow down the bulk of the creates.
KIND_ORDER = (
    "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Role", "RoleBinding",
    "Service", "Widget", "Ingress", "StatefulSet", "Deployment",
)  # fmt: skip


def collection_path(obj: Obj) -> str:
    """POST path for ``obj``."""
    plural, namespaced = KINDS[(obj["apiVersion"], obj["kind"])]
    ns = obj["metadata"].get("namespace") if namespaced else None
    return resource_path(obj["apiVersion"], plural, namespace=ns)


def object_path(obj: Obj) -> str:
    """Object path of ``obj``."""
    plural, namespaced = KINDS[(obj["apiVersion"], obj["kind"])]
    ns = obj["metadata"].get("namespace") if namespaced else None
    return resource_path(obj["apiVersion"], plural, namespace=ns, name=obj["metadata"]["name"])


# --------------------------------------------------------------------- seeding


def _create_all(client: RestClient, objs: Iterable[Obj], workers: int) -> Counter[str]:
    """Create objects in parallel (AlreadyExists tolerated); Widgets also get a status."""

    def one(obj: Obj) -> str:
        client.create(collection_path(obj), obj, exist_ok=True)
        if obj["kind"] == "Widget":
            status = {"status": {"phase": "Ready", "observedGeneration": 1}}
            client.request("PATCH", object_path(obj) + "/status", status,
                           content_type="application/merge-patch+json")  # fmt: skip
        return str(obj["kind"])

    counts: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seed") as pool:
        futures = [pool.submit(one, obj) for obj in objs]
        for fut in as_completed(futures):
            try:
                counts[fut.result()] += 1
            except ApiError as err:
                for other in futures:
                    other.cancel()
                raise SeedError(f"seeding failed: {err}") from err
    return counts


def _chunks(items: list[Obj], size: int) -> Iterator[list[Obj]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def seed(
    cluster: Cluster,
    *,
    scale: int = 0,
    workers: int = 16,
    prefix: str = "",
    progress: Progress | None = None,
) -> SeedResult:
    """Seed ``cluster``; ``scale=N`` creates N namespaces of 101 objects each.

    ``prefix`` is prepended to namespace names (to seed several independent sets).
    """
    say = progress or (lambda _msg: None)
    if scale:
        names = [f"{prefix}bench-{i:03d}" for i in range(scale)]
        mix = SCALE_MIX
    else:
        names = [f"{prefix}{n}" for n in DEFAULT_NAMESPACES]
        mix = DEFAULT_MIX
    result = SeedResult(namespaces=names)
    client = cluster.rest(maxsize=workers)
    start = time.monotonic()
    try:
        crd = widget_crd()
        client.apply(object_path(crd), crd)
        health.wait_for(
            f"CRD {WIDGET_CRD} Established",
            lambda: True if bootstrap.crds_established(client, [WIDGET_CRD]) else None,
            timeout=60,
        )
        # The least-privilege user's role enumerates API groups: include the new one.
        bootstrap.sync_readonly_role(client)
        namespaces, contents = [], []
        for ns in names:
            namespace, objs = namespace_objects(ns, mix)
            namespaces.append(namespace)
            contents += objs
        contents.sort(key=lambda o: KIND_ORDER.index(o["kind"]))
        result.counts.update(_create_all(client, namespaces, workers))
        say(f"created {len(namespaces)} namespaces; creating {len(contents)} objects ({workers} workers) ...")
        for chunk in _chunks(contents, 2000):
            result.counts.update(_create_all(client, chunk, workers))
    finally:
        client.close()
    result.seconds = time.monotonic() - start
    return result


def workloads_ready(client: RestClient, namespaces: Iterable[str]) -> tuple[int, int]:
    """(ready, total) seeded Deployments and StatefulSets across ``namespaces``."""
    wanted = set(namespaces)
    ready = total = 0
    # Two cluster-wide lists rather than two per namespace: at scale 300 the per-namespace
    # probe was 600 requests a second against an API server already busy with the pods.
    for plural in ("deployments", "statefulsets"):
        items = client.get(resource_path("apps/v1", plural), labelSelector=SEED_LABEL)["items"]
        for item in items:
            if item["metadata"].get("namespace") not in wanted:
                continue
            total += 1
            want = item["spec"].get("replicas", 1)
            st = item.get("status", {})
            if st.get("readyReplicas", 0) >= want and st.get("observedGeneration", 0) >= item["metadata"]["generation"]:
                ready += 1
    return ready, total


def wait_for_workloads(cluster: Cluster, namespaces: Iterable[str], timeout: float = 300) -> None:
    """Wait until every seeded Deployment and StatefulSet has all replicas ready."""
    names = list(namespaces)
    client = cluster.rest()
    last: list[tuple[int, int]] = [(0, 0)]

    def probe() -> bool | None:
        last[0] = workloads_ready(client, names)
        ready, total = last[0]
        return True if total and ready == total else None

    try:
        health.wait_for("seeded workloads ready", probe, timeout=timeout, interval=1.0)
    except health.NotReadyError as err:
        raise SeedError(f"{err} ({last[0][0]}/{last[0][1]} ready)") from err
    finally:
        client.close()
