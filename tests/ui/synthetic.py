"""``synthetic://NAMESPACES[?generation=N&bulk=M]``: an in-test importer of a large manifests
snapshot.

It yields what the k8s:// importer would for a cluster of 3 nodes and ``NAMESPACES``
namespaces of 100 objects each (configuration, RBAC, services, workloads with their
ReplicaSets and Pods, claims, custom objects), plus a namespace ``bulk`` with ``M`` ConfigMaps
(one large directory), without a cluster. ``generation`` changes a few objects of ``team-000``
(an image, a replica count, one deleted and one added ConfigMap) so that two snapshots have
something to compare. Registered for a test through ``connectors.IMPORTERS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubekeep.engine.entries import Entry, EntryType, Importer, SourceInfo, with_directories
from kubekeep.manifests import layout, serialization

CONTEXT = "synthetic"
TIME = "2026-01-01T00:00:00Z"

Obj = dict[str, Any]


def _meta(name: str, ns: str = "", **labels: str) -> Obj:
    meta: Obj = {"name": name, "uid": f"uid-{ns}-{name}", "resourceVersion": "1", "creationTimestamp": TIME}
    if ns:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _pod_spec(app: str, image: str) -> Obj:
    return {
        "containers": [
            {
                "name": "app",
                "image": image,
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": "APP", "value": app}, {"name": "LOG_LEVEL", "value": "info"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ],
        "serviceAccountName": "app-0",
    }


def namespace_objects(ns: str, generation: int) -> list[tuple[str, str, Obj]]:
    """``(group, resource, object)`` for the 100 objects of one namespace."""
    out: list[tuple[str, str, Obj]] = [
        (
            "",
            "namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": _meta(ns),
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )
    ]
    changed = generation > 0 and ns.endswith("000")
    configmaps = [f"config-{i}" for i in range(25)]
    if changed:
        configmaps = configmaps[1:] + ["config-new"]
    for name in configmaps:
        out.append(
            (
                "",
                "configmaps",
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": _meta(name, ns),
                    "data": {"app.properties": f"name={name}\n" + "key=value\n" * 40},
                },
            )
        )
    for i in range(15):
        out.append(
            (
                "",
                "secrets",
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": _meta(f"credentials-{i}", ns),
                    "type": "Opaque",
                    "data": {"password": "bmV3c2VjcmV0" if changed and i == 0 else "c2VjcmV0"},
                },
            )
        )
    for i in range(5):
        out.append(
            ("", "serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(f"app-{i}", ns)})
        )
    for i in range(3):
        out.append(
            (
                "rbac.authorization.k8s.io",
                "roles",
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": _meta(f"reader-{i}", ns),
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
                },
            )
        )
        out.append(
            (
                "rbac.authorization.k8s.io",
                "rolebindings",
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": _meta(f"reader-{i}", ns),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"reader-{i}"},
                    "subjects": [{"kind": "ServiceAccount", "name": "app-0", "namespace": ns}],
                },
            )
        )
    for i in range(5):
        app = f"web-{i}"
        image = "registry.example/web:2.0" if changed and i == 0 else "registry.example/web:1.0"
        replicas = 3 if changed and i == 1 else 1
        ready = 0 if changed and i == 1 else 1
        out.append(
            (
                "apps",
                "deployments",
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": _meta(app, ns, app=app),
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": {"app": app}},
                        "template": {"metadata": {"labels": {"app": app}}, "spec": _pod_spec(app, image)},
                    },
                    "status": {
                        "replicas": replicas,
                        "readyReplicas": ready,
                        "availableReplicas": ready,
                        "updatedReplicas": replicas,
                    },
                },
            )
        )
        out.append(
            (
                "apps",
                "replicasets",
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": _meta(f"{app}-5d8f", ns, app=app),
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": app}},
                        "template": {"metadata": {"labels": {"app": app}}, "spec": _pod_spec(app, image)},
                    },
                },
            )
        )
        out.append(
            (
                "",
                "pods",
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": _meta(f"{app}-5d8f-x{i}", ns, app=app),
                    "spec": {**_pod_spec(app, image), "nodeName": f"node-{i % 3}"},
                    "status": {
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "podIP": f"10.244.{i}.{len(ns)}",
                    },
                },
            )
        )
    out.append(
        (
            "apps",
            "statefulsets",
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": _meta("db", ns, app="db"),
                "spec": {
                    "replicas": 1,
                    "serviceName": "db",
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}}, "spec": _pod_spec("db", "postgres:16")},
                },
                "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1},
            },
        )
    )
    for i in range(2):
        out.append(
            (
                "",
                "pods",
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": _meta(f"job-{i}", ns),
                    "spec": _pod_spec("job", "busybox"),
                    "status": {"phase": "Succeeded" if i else "Pending"},
                },
            )
        )
    for i in range(6):
        out.append(
            (
                "",
                "services",
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": _meta(f"web-{i % 5}-svc-{i}", ns),
                    "spec": {
                        "clusterIP": f"10.96.{i}.{len(ns)}",
                        "selector": {"app": f"web-{i % 5}"},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                    },
                },
            )
        )
    for i in range(2):
        out.append(
            (
                "networking.k8s.io",
                "ingresses",
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "Ingress",
                    "metadata": _meta(f"web-{i}", ns),
                    "spec": {
                        "rules": [
                            {
                                "host": f"web-{i}.{ns}.example",
                                "http": {
                                    "paths": [
                                        {
                                            "path": "/",
                                            "pathType": "Prefix",
                                            "backend": {
                                                "service": {"name": f"web-{i}-svc-{i}", "port": {"number": 80}}
                                            },
                                        }
                                    ]
                                },
                            }
                        ]
                    },
                },
            )
        )
    for i in range(5):
        out.append(
            (
                "",
                "persistentvolumeclaims",
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": _meta(f"data-{i}", ns),
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "standard",
                        "volumeName": f"pv-{ns}-{i}",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                    "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}},
                },
            )
        )
    for i in range(17):
        out.append(
            (
                "example.kubekeep.test",
                "widgets",
                {
                    "apiVersion": "example.kubekeep.test/v1",
                    "kind": "Widget",
                    "metadata": _meta(f"widget-{i}", ns),
                    "spec": {"size": i, "color": "blue"},
                },
            )
        )
    return out


def cluster_objects(namespaces: int, generation: int, bulk: int = 0) -> list[tuple[str, str, Obj]]:
    """Every object of the synthetic cluster."""
    out: list[tuple[str, str, Obj]] = []
    for i in range(3):
        out.append(
            (
                "",
                "nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": _meta(f"node-{i}", "", **{"node-role.kubernetes.io/agent": ""}),
                    "status": {
                        "conditions": [
                            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                            {"type": "MemoryPressure", "status": "False"},
                        ],
                        "nodeInfo": {"kubeletVersion": "v1.34.0"},
                        "allocatable": {"cpu": "8", "memory": "32Gi"},
                    },
                },
            )
        )
    for n in range(namespaces):
        out.extend(namespace_objects(f"team-{n:03d}", generation))
    if bulk:
        out.append(
            (
                "",
                "namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta("bulk"), "status": {"phase": "Active"}},
            )
        )
        out.extend(
            (
                "",
                "configmaps",
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": _meta(f"item-{i:05d}", "bulk"),
                    "data": {"index": str(i)},
                },
            )
            for i in range(bulk)
        )
    return out


class SyntheticImporter(Importer):
    scheme = "synthetic"

    def __init__(self, namespaces: int, generation: int, bulk: int) -> None:
        self.namespaces = namespaces
        self.generation = generation
        self.bulk = bulk
        self.count = 0

    def source(self) -> SourceInfo:
        return SourceInfo(
            uri=f"k8s://{CONTEXT}",
            kind="manifests",
            host=CONTEXT,
            extra={"server": "https://synthetic.invalid", "version": "v1.34.0"},
        )

    def entries(self) -> Iterator[Entry]:
        files = []
        for group, resource, obj in cluster_objects(self.namespaces, self.generation, self.bulk):
            meta = obj["metadata"]
            path = layout.object_path(group, resource, meta.get("namespace", ""), meta["name"])
            data = serialization.dump(obj)
            files.append(
                Entry(path, EntryType.FILE, size=len(data), data=data, attrs=layout.object_attrs(obj, group, resource))
            )
        files.sort(key=lambda e: e.path)
        yield from with_directories(files)
        self.count = len(files)
        version = b'{"gitVersion": "v1.34.0"}\n'
        yield Entry(layout.VERSION_FILE, EntryType.FILE, data=version, size=len(version))

    def metadata(self) -> dict[str, Any]:
        return {"manifests": {"objects": self.count}}


@dataclass(frozen=True)
class SyntheticOptions:
    """The synthetic source takes everything from its URI."""


SOURCE_OPTIONS = SyntheticOptions


def open_importer(uri: str, options: SyntheticOptions) -> SyntheticImporter:
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    return SyntheticImporter(
        int(parts.netloc or "100"), int(query.get("generation", ["0"])[0]), int(query.get("bulk", ["0"])[0])
    )
