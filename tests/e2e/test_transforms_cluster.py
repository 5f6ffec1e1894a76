"""Restore-time transforms against the local control plane: a restore into the cluster applies
them, its dry run and a restore to clean YAML show the same transformed objects, and the report
(the API's results, the CLI's terminal lines and --json) says which transforms changed what."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api, errors
from kubekeep.engine.repository import Repository
from kubekeep.manifests import serialization
from kubekeep.manifests.planning import RESTORED_FROM_LABEL
from testenv import bootstrap
from testenv.cluster import Cluster
from testenv.rest import resource_path
from tests.cli.helpers import KK, RepoSpec
from tests.support.k8s_fixtures import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

OLD_CLASS = bootstrap.STORAGE_CLASS
NEW_CLASS = "kubekeep-transformed"

RULES = """
version: 1
rules:
  - name: scale to zero
    match: {groups: [apps], kinds: [Deployment]}
    jsonPatch:
      - {op: test, path: /spec/replicas, value: 2}
      - {op: replace, path: /spec/replicas, value: 0}
  - name: debug logging
    match: {kinds: [ConfigMap], labelSelector: "app=web"}
    mergePatch:
      data: {LOG_LEVEL: debug, UNUSED: null}
      metadata: {annotations: {kubekeep.test/transformed: "yes"}}
  - name: needs a key the object lacks
    match: {kinds: [ConfigMap], names: ["broken-*"]}
    jsonPatch: [{op: replace, path: /data/missing, value: x}]
"""


def _pod_spec(image: str) -> dict[str, Any]:
    return {
        "initContainers": [{"name": "init", "image": "docker.io/library/busybox:1.36"}],
        "containers": [{"name": "app", "image": image}],
    }


def _objects(ns: str) -> list[tuple[str, str, dict[str, Any]]]:
    labels = {"app": "web"}
    template = {"metadata": {"labels": labels}, "spec": _pod_spec("docker.io/library/nginx:1.27")}
    return [
        ("v1", "configmaps", {"metadata": {"name": "web-config", "labels": labels},
                              "data": {"LOG_LEVEL": "info", "UNUSED": "1"}}),
        ("v1", "configmaps", {"metadata": {"name": "broken-config"}, "data": {"a": "1"}}),
        ("v1", "persistentvolumeclaims", {"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": OLD_CLASS,
            "resources": {"requests": {"storage": "1Gi"}}}}),
        ("apps/v1", "deployments", {"metadata": {"name": "web"}, "spec": {
            "replicas": 2, "selector": {"matchLabels": labels}, "template": template}}),
        ("apps/v1", "statefulsets", {"metadata": {"name": "db"}, "spec": {
            "replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": _pod_spec("ghcr.io/example/postgres:16")},
            "volumeClaimTemplates": [{"metadata": {"name": "pgdata"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": OLD_CLASS,
                "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        ("batch/v1", "cronjobs", {"metadata": {"name": "report"}, "spec": {
            "schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", **_pod_spec("docker.io/library/python:3.12")}}}}}}),
    ]  # fmt: skip


@pytest.fixture
def source(cluster: Cluster, namespace: str) -> str:
    client = cluster.rest()
    for api_version, plural, obj in _objects(namespace):
        kind = {"configmaps": "ConfigMap", "persistentvolumeclaims": "PersistentVolumeClaim",
                "deployments": "Deployment", "statefulsets": "StatefulSet", "cronjobs": "CronJob"}[plural]  # fmt: skip
        client.create(
            resource_path(api_version, plural, namespace=namespace), {"apiVersion": api_version, "kind": kind, **obj}
        )
    return namespace


@pytest.fixture
def target(cluster: Cluster, source: str) -> Iterator[str]:
    name = f"{source[:50]}-tx"
    yield name
    cluster.rest().delete(resource_path("v1", "namespaces", name=name))


def _by_object(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["kind"], r["name"]): r for r in results}


def _contains(live: Any, expected: Any, where: str = "") -> None:
    """Every field of ``expected`` is in ``live`` with the same value (the server adds defaults)."""
    if isinstance(expected, dict):
        assert isinstance(live, dict), where
        for k, v in expected.items():
            assert k in live, f"{where}.{k} missing"
            _contains(live[k], v, f"{where}.{k}")
    elif isinstance(expected, list):
        assert isinstance(live, list) and len(live) == len(expected), where
        for i, (a, b) in enumerate(zip(live, expected, strict=True)):
            _contains(a, b, f"{where}[{i}]")
    else:
        assert live == expected, f"{where}: {live!r} != {expected!r}"


def test_restore_dry_run_and_clean_yaml_apply_the_same_transforms(
    cluster: Cluster, manifests_repo: Repository, source: str, target: str, tmp_path: Path
) -> None:
    kubeconfig = str(cluster.kubeconfig)
    snap = api.backup(
        manifests_repo,
        "k8s://",
        options=api.ManifestsSourceOptions(kubeconfig=kubeconfig, include_namespaces=(source,)),
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    transforms = api.load_transforms(
        storage_class_map=[f"{OLD_CLASS}={NEW_CLASS}"],
        image_map=["docker.io/library=registry.local/mirror"],
        files=[str(rules)],
    )
    select = api.ObjectSelector.build(namespaces=[source])
    common: dict[str, Any] = {"namespace_map": {source: target}, "transforms": transforms}

    def restore(destination: str, **options: Any) -> dict[tuple[str, str], dict[str, Any]]:
        opts = api.ManifestsDestinationOptions(**common, **options)
        return _by_object(api.restore(manifests_repo, snap.id, destination, select=select, options=opts).results)

    dry = restore("k8s://", kubeconfig=kubeconfig, dry_run=True)
    out = tmp_path / "yaml"
    files = restore(f"fs:{out}")
    live = restore("k8s://", kubeconfig=kubeconfig)

    rule = f"{rules} rule {{}}".format  # a rule file is named as given
    expected = {
        ("Deployment", "web"): ["image-map", rule("1 (scale to zero)")],
        ("StatefulSet", "db"): ["storage-class-map", "image-map"],  # its postgres image is not below the prefix
        ("CronJob", "report"): ["image-map"],
        ("PersistentVolumeClaim", "data"): ["storage-class-map"],
        ("ConfigMap", "web-config"): [rule("2 (debug logging)")],
    }
    for report, done in ((dry, "would create"), (files, "written"), (live, "created")):
        changed = {k: r["transforms"] for k, r in report.items() if r.get("transforms")}
        claims = {k for k in changed if k[1].startswith("pgdata-db-")}  # the StatefulSet's, if made by then
        assert {k: changed.pop(k) for k in claims} == {k: ["storage-class-map"] for k in claims}
        assert changed == expected
        assert {k for k, r in report.items() if r["action"] == done} >= set(expected) | {("Namespace", target)}
        broken = report[("ConfigMap", "broken-config")]
        assert broken["action"] == ("would fail" if done == "would create" else "failed")
        assert broken["reason"] == (
            f"{rules} rule 3 (needs a key the object lacks): jsonPatch[0] (replace /data/missing): "
            "can't replace a non-existent object 'missing'"
        )

    client = cluster.rest()
    for path in sorted(out.rglob("*.yaml")):
        written = serialization.load(path.read_bytes())
        meta = written["metadata"]
        assert meta.get("namespace", target) == target
        api_version, kind = written["apiVersion"], written["kind"]
        plural = {"ConfigMap": "configmaps", "PersistentVolumeClaim": "persistentvolumeclaims", "Namespace": "namespaces",
                  "Deployment": "deployments", "StatefulSet": "statefulsets", "CronJob": "cronjobs",
                  "ServiceAccount": "serviceaccounts"}[kind]  # fmt: skip
        obj = client.get(resource_path(api_version, plural, namespace=meta.get("namespace"), name=meta["name"]))
        label = obj["metadata"].get("labels", {}).pop(RESTORED_FROM_LABEL, None)
        assert label == (snap.short_id if live[(kind, meta["name"])]["action"] == "created" else None)
        _contains(obj, written, f"{kind} {meta['name']}")  # the cluster holds what the clean YAML says
    assert not (out / f"namespaces/{target}/core/configmaps/broken-config.yaml").exists()

    deploy = client.get(resource_path("apps/v1", "deployments", namespace=target, name="web"))
    assert deploy["spec"]["replicas"] == 0
    pod = deploy["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["initContainers"] + pod["containers"]] == [
        "registry.local/mirror/busybox:1.36",
        "registry.local/mirror/nginx:1.27",
    ]
    sts = client.get(resource_path("apps/v1", "statefulsets", namespace=target, name="db"))
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == NEW_CLASS
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/example/postgres:16"  # no match
    cron = client.get(resource_path("batch/v1", "cronjobs", namespace=target, name="report"))
    job_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["image"] == "registry.local/mirror/python:3.12"
    claim = client.get(resource_path("v1", "persistentvolumeclaims", namespace=target, name="data"))
    assert claim["spec"]["storageClassName"] == NEW_CLASS
    config = client.get(resource_path("v1", "configmaps", namespace=target, name="web-config"))
    assert config["data"] == {"LOG_LEVEL": "debug"}
    assert config["metadata"]["annotations"] == {"kubekeep.test/transformed": "yes"}
    with pytest.raises(Exception) as missing:  # testenv's ApiError
        client.get(resource_path("v1", "configmaps", namespace=target, name="broken-config"))
    assert getattr(missing.value, "status", None) == 404
    original = client.get(resource_path("apps/v1", "deployments", namespace=source, name="web"))
    assert original["spec"]["replicas"] == 2  # the source namespace is untouched

    raw = api.ManifestsDestinationOptions(raw=True, transforms=transforms)
    with pytest.raises(errors.UsageError, match="--storage-class-map, --image-map, --transform apply"):
        api.restore(manifests_repo, snap.id, f"fs:{tmp_path / 'raw'}", options=raw)


def test_cli_flags_reach_the_report(cluster: Cluster, source: str, target: str, tmp_path: Path) -> None:
    kk = KK(
        RepoSpec(str(tmp_path / "repo")),
        cache_dir=tmp_path / "cache",
        extra_env={"KUBECONFIG": str(cluster.kubeconfig)},
    )
    kk.run("init")
    snap = kk.json("backup", "k8s://", "--include-namespace", source)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    flags = [
        "--namespace-map", f"{source}={target}",
        "--storage-class-map", f"{OLD_CLASS}={NEW_CLASS}",
        "--image-map", "docker.io/library=registry.local/mirror",
        "--transform", str(rules),
    ]  # fmt: skip
    dry = kk.run("restore", snap["id"], "--to", "k8s://", "-n", source, *flags, "--dry-run", expect=16)
    text = dry.stdout.decode()
    assert f"would create  Deployment {target}/web (transformed: image-map, {rules} rule 1 (scale to zero))" in text
    assert f"would fail    ConfigMap {target}/broken-config: {rules} rule 3" in text
    assert b"1 of " in dry.stderr and b"could not be restored" in dry.stderr
    report = json.loads(
        kk.run("--json", "restore", snap["id"], "--to", "k8s://", "-n", source, *flags, expect=16).stdout
    )
    results = _by_object(report["results"])
    assert results[("PersistentVolumeClaim", "data")]["transforms"] == ["storage-class-map"]
    assert results[("PersistentVolumeClaim", "data")]["action"] == "created"
    wait_for("the claim", lambda: cluster.rest().get(
        resource_path("v1", "persistentvolumeclaims", namespace=target, name="data"))["spec"]["storageClassName"] == NEW_CLASS)  # fmt: skip

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - match: {kinds: [Deployment]}\n    jsonPatch: [{op: replace, path: /metadata/name, value: x}]\n"
    )
    refused = kk.run("restore", snap["id"], "--to", "k8s://", "--transform", str(bad), expect=2)
    message = refused.stderr.decode().strip()
    assert f"{bad}: rule 1: jsonPatch[0]: replace /metadata/name: a transform cannot change" in message
    assert message.count("\n") == 0
