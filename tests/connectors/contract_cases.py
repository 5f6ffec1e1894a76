"""The connectors the contract suite (``test_contract.py``) runs against: how to open each one
on a throwaway source or destination, and how to read back what an exporter wrote.

Importers: fs, etcd (the real etcd of tests/etcd), k8s (a namespace of the local control
plane). Exporters: fs, s3 (the MinIO test server), k8s (into another namespace) and the
clean-files exporter of manifests restores to a directory. pvc is left out (``LEFT_OUT``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api, connectors
from kubekeep.connectors.k8s.clean_files import CleanFilesExporter
from kubekeep.engine.entries import Entry, EntryType, Exporter, Importer, SourceInfo
from kubekeep.engine.restore import NodeFilter
from kubekeep.engine.tree import Node
from kubekeep.manifests import layout, serialization
from testenv.cluster import Cluster
from testenv.rest import resource_path
from tests.cli.helpers import make_rich_tree, manifest
from tests.support.s3server import S3Server

#: connectors the suite does not run against, and why
LEFT_OUT = {
    "pvc": "needs the simulated CSI node and a helper pod per backup or restore (tests/volumes covers "
    "it end to end); its module is being split into a package at the same time",
}
#: the label of the objects the manifests cases create and compare
LABEL = "kubekeep.test/contract"
FILES_SOURCE = SourceInfo("fs:/contract", "fs")
MANIFESTS_SOURCE = SourceInfo("k8s://contract", "manifests")


@dataclass
class ImporterCase:
    scheme: str  # the registry's key it was opened by
    kind: str  # the SourceInfo.kind it must report
    open: Callable[[], Importer]


@dataclass
class ExporterCase:
    name: str
    takes: SourceInfo  # the kind of snapshot it restores (given to begin())
    open: Callable[[], Exporter]
    #: an importer of the source snapshot the round trip restores, and the part of it restored
    source: Callable[[], Importer]
    include: NodeFilter | None
    #: what the destination holds, and what it must hold after the round trip (same keys)
    written: Callable[[], dict[str, Any]]
    expected: Callable[[], dict[str, Any]]
    #: an entry it writes (``name`` makes it unique), its content, and its key in written()
    sample: Callable[[str], tuple[Entry, bytes, str]]
    #: sets the destination up so that the entry returned cannot be written; None: see ``why``
    blocked: Callable[[], tuple[Entry, bytes]] | None = None
    #: why ``blocked`` is None, or why the case is expected to fail that test
    why: str = ""


# -- sources --------------------------------------------------------------------------------------


@pytest.fixture
def file_tree(tmp_path: Path) -> Path:
    """Nested and empty directories, a multi-chunk file, odd modes and names, symlinks."""
    root = tmp_path / "source"
    make_rich_tree(root, big_mib=3, small_files=20)
    return root


@dataclass
class Objects:
    """Labelled ConfigMaps and a Secret in a namespace of the local control plane."""

    cluster: Cluster
    namespace: str
    data: dict[str, dict[str, str]]  # "Kind/name" -> data as created

    def importer(self) -> Importer:
        return connectors.open_importer(
            "k8s://",
            api.ManifestsSourceOptions(kubeconfig=str(self.cluster.kubeconfig), include_namespaces=(self.namespace,)),
        )

    def include(self, rel: str, node: Node) -> bool:
        """The namespace's objects, its Namespace object, and the directories above them."""
        wanted = (f"namespaces/{self.namespace}", f"cluster/core/namespaces/{self.namespace}.yaml")
        return any(rel == w or rel.startswith(w + "/") or w.startswith(rel + "/") for w in wanted)


PLURALS = {"ConfigMap": "configmaps", "Secret": "secrets"}


@pytest.fixture(scope="module")
def objects(cluster: Cluster) -> Iterator[Objects]:
    ns = f"kc-{uuid.uuid4().hex[:8]}"
    data = {
        "ConfigMap/app-config": {"mode": "blue", "size": "3"},
        "ConfigMap/empty-ish": {"x": ""},
        "Secret/app-token": {"token": "c2VjcmV0"},  # base64 "secret"
    }
    client = cluster.rest()
    client.create(
        resource_path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    try:
        for key, values in data.items():
            kind, name = key.split("/")
            obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "labels": {LABEL: "yes"}}}
            client.create(resource_path("v1", PLURALS[kind], ns), {**obj, "data": values})
        yield Objects(cluster, ns, data)
    finally:
        client.delete(resource_path("v1", "namespaces", name=ns))
        client.close()


# -- importers ------------------------------------------------------------------------------------


#: the importers and exporters run against, by the registry's scheme (clean-files is not in it)
IMPORTER_CASES = ["fs", "etcds", "k8s"]
EXPORTER_CASES = ["fs", "s3", "k8s", "clean-files"]
MARKS = {"k8s": pytest.mark.cluster, "clean-files": pytest.mark.cluster, "s3": pytest.mark.s3}


def _params(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=[MARKS[n]] if n in MARKS else []) for n in names]


@pytest.fixture(params=_params(IMPORTER_CASES))
def importer_case(request: pytest.FixtureRequest) -> ImporterCase:
    if request.param == "fs":
        root: Path = request.getfixturevalue("file_tree")
        return ImporterCase("fs", "fs", lambda: connectors.open_importer(str(root)))
    if request.param == "etcds":
        server = request.getfixturevalue("loaded").server
        tls = api.EtcdSourceOptions(
            cacert=str(server.pki.ca), cert=str(server.pki.client_cert), key=str(server.pki.client_key)
        )
        return ImporterCase("etcds", "etcd", lambda: connectors.open_importer(f"etcds://{server.endpoint}", tls))
    source: Objects = request.getfixturevalue("objects")
    return ImporterCase("k8s", "manifests", source.importer)


# -- exporters ------------------------------------------------------------------------------------


def _file_sample(name: str) -> tuple[Entry, bytes, str]:
    content = f"the {name} file\n".encode()
    path = f"{name}.txt"
    return Entry(path, EntryType.FILE, mode=0o640, size=len(content), mtime_ns=1_700_000_000 * 10**9), content, path


def _fs_case(tmp_path: Path, tree: Path) -> ExporterCase:
    dest = tmp_path / "restored"

    def blocked() -> tuple[Entry, bytes]:
        (dest / "blocked.txt" / "inside").mkdir(parents=True)  # a directory where the file goes
        return Entry("blocked.txt", EntryType.FILE, size=1), b"x"

    return ExporterCase(
        "fs",
        FILES_SOURCE,
        lambda: connectors.open_exporter(str(dest)),
        lambda: connectors.open_importer(str(tree)),
        None,
        lambda: manifest(dest) if dest.exists() else {},
        lambda: manifest(tree),
        _file_sample,
        blocked,
    )


def _s3_case(tree: Path, server: S3Server, bucket: str, admin: Any) -> ExporterCase:
    prefix = "exports/contract"

    def written() -> dict[str, Any]:
        out = {}
        for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for item in page.get("Contents", ()):
                obj = admin.get_object(Bucket=bucket, Key=item["Key"])
                meta = obj["Metadata"]
                out[item["Key"][len(prefix) + 1 :]] = (
                    hashlib.sha256(obj["Body"].read()).hexdigest(),
                    int(meta["kubekeep-mode"], 8),
                    int(meta["kubekeep-uid"]),
                    int(meta["kubekeep-gid"]),
                    int(meta["kubekeep-mtime-ns"]),
                )
        return out

    def expected() -> dict[str, Any]:  # files only: S3 has no directories, symlinks are reported
        return {p: (m.digest, m.mode, m.uid, m.gid, m.mtime_ns) for p, m in manifest(tree).items() if m.type == "file"}

    writer = [server]  # whose credentials the exporter writes with: the root's, or blocked()'s user

    def blocked() -> tuple[Entry, bytes]:
        """An exporter user whose IAM policy refuses the one object ``blocked.txt``."""
        arn = f"arn:aws:s3:::{bucket}"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:*"], "Resource": [arn, f"{arn}/{prefix}/*"]},
                {"Effect": "Deny", "Action": ["s3:PutObject"], "Resource": [f"{arn}/{prefix}/blocked.txt"]},
            ],
        }
        writer[0] = server.with_user(f"exp-{bucket}", policy)
        entry, content, _key = _file_sample("blocked")
        return entry, content

    return ExporterCase(
        "s3",
        FILES_SOURCE,
        lambda: connectors.open_exporter(
            f"s3://{bucket}/{prefix}", api.S3DestinationOptions(**writer[0].backend_options())
        ),
        lambda: connectors.open_importer(str(tree)),
        None,
        written,
        expected,
        _file_sample,
        blocked,  # an IAM policy denies that one key: EntryFailed, the rest goes on
    )


def _object_sample(namespace: str, name: str) -> tuple[Entry, bytes]:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL: "yes"}},
        "data": {"sample": name},
    }
    content = serialization.dump(obj)
    path = f"namespaces/{namespace}/core/configmaps/{name}.yaml"
    entry = Entry(path, EntryType.FILE, size=len(content), attrs=layout.object_attrs(obj, "", "configmaps"))
    return entry, content


def _k8s_case(source: Objects, target: str) -> ExporterCase:
    """Restores ``source`` into the namespace ``target`` (--namespace-map)."""
    kubeconfig = str(source.cluster.kubeconfig)

    def written() -> dict[str, Any]:
        client = source.cluster.rest()
        try:
            return {
                f"{kind}/{item['metadata']['name']}": item.get("data")
                for kind, plural in PLURALS.items()
                for item in client.get(resource_path("v1", plural, target), labelSelector=LABEL)["items"]
            }
        finally:
            client.close()

    def sample(name: str) -> tuple[Entry, bytes, str]:
        return (*_object_sample(source.namespace, name), f"ConfigMap/{name}")

    return ExporterCase(
        "k8s",
        MANIFESTS_SOURCE,
        lambda: connectors.open_exporter(
            "k8s://",
            api.ManifestsDestinationOptions(kubeconfig=kubeconfig, namespace_map={source.namespace: target}),
        ),
        source.importer,
        source.include,
        written,
        lambda: dict(source.data),
        sample,
        why="it writes in finish(): an object the cluster refuses is a 'failed' result, not an exception",
    )


def _clean_files_case(tmp_path: Path, source: Objects) -> ExporterCase:
    dest = tmp_path / "yaml"
    ns = source.namespace

    def written() -> dict[str, Any]:
        out = {}
        for path in dest.rglob("*.yaml") if dest.exists() else ():
            obj = serialization.load(path.read_bytes())
            if LABEL in ((obj.get("metadata") or {}).get("labels") or {}):
                out[path.relative_to(dest).as_posix()] = obj.get("data")
        return out

    def expected() -> dict[str, Any]:
        out = {}
        for key, data in source.data.items():
            kind, name = key.split("/")
            out[f"namespaces/{ns}/core/{PLURALS[kind]}/{name}.yaml"] = data
        return out

    def sample(name: str) -> tuple[Entry, bytes, str]:
        entry, content = _object_sample(ns, name)
        return entry, content, entry.path

    def blocked() -> tuple[Entry, bytes]:
        entry, content = _object_sample(ns, "blocked")
        (dest / entry.path / "inside").mkdir(parents=True)  # a directory where the file goes
        return entry, content

    return ExporterCase(
        "clean-files",
        MANIFESTS_SOURCE,
        lambda: CleanFilesExporter(connectors.open_exporter(str(dest), api.FsDestinationOptions(private=True))),
        source.importer,
        source.include,
        written,
        expected,
        sample,
        blocked,
        why="it writes in finish(): an entry the fs exporter refuses there raises EntryFailed out of "
        "finish() and ends the restore",
    )


@pytest.fixture(params=_params(EXPORTER_CASES))
def exporter_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ExporterCase]:
    if request.param == "fs":
        yield _fs_case(tmp_path, request.getfixturevalue("file_tree"))
    elif request.param == "s3":
        yield _s3_case(
            request.getfixturevalue("file_tree"),
            request.getfixturevalue("s3_server"),
            request.getfixturevalue("s3_bucket"),
            request.getfixturevalue("s3_admin"),
        )
    elif request.param == "clean-files":
        yield _clean_files_case(tmp_path, request.getfixturevalue("objects"))
    else:
        source: Objects = request.getfixturevalue("objects")
        target = f"{source.namespace}-to-{uuid.uuid4().hex[:4]}"
        client = source.cluster.rest()
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}}
        client.create(resource_path("v1", "namespaces"), namespace)
        try:
            yield _k8s_case(source, target)
        finally:
            client.delete(resource_path("v1", "namespaces", name=target))
            client.close()
