"""Snapshot paths of objects, both ways, and namespace remapping of paths."""

from __future__ import annotations

import pytest

from kubekeep.manifests import layout


def test_paths_of_cluster_scoped_and_namespaced_objects() -> None:
    assert layout.object_path("", "namespaces", "", "web") == "cluster/core/namespaces/web.yaml"
    assert layout.object_path("apps", "deployments", "web", "api") == "namespaces/web/apps/deployments/api.yaml"
    assert (
        layout.object_path("rbac.authorization.k8s.io", "clusterroles", "", "system:controller:x")
        == "cluster/rbac.authorization.k8s.io/clusterroles/system:controller:x.yaml"
    )


@pytest.mark.parametrize(
    "path",
    [
        "cluster/core/nodes/n1.yaml",
        "namespaces/web/core/configmaps/a.b.yaml",
        "namespaces/web/example.com/widgets/w.yaml",
    ],
)
def test_parse_path_inverts_object_path(path: str) -> None:
    ref = layout.parse_path(path)
    assert ref is not None and ref.path == path


@pytest.mark.parametrize(
    "path", ["discovery.json", "cluster/core/nodes", "namespaces/web/core/x.yaml", "other/a/b/c.yaml"]
)
def test_parse_path_rejects_other_paths(path: str) -> None:
    assert layout.parse_path(path) is None


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_names_that_cannot_be_file_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        layout.object_path("", "configmaps", "web", name)


def test_attrs_and_ref_of_attrs() -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "web", "labels": {"app": "api"}},
    }
    attrs = layout.object_attrs(obj, "apps", "deployments")
    assert attrs == {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "group": "apps",
        "resource": "deployments",
        "name": "api",
        "namespace": "web",
        "labels": {"app": "api"},
    }
    assert layout.ref_of_attrs(attrs) == layout.ObjectRef("apps", "deployments", "web", "api")
    assert layout.ref_of_attrs({}) is None
    cluster = layout.object_attrs({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n"}}, "", "nodes")
    assert "namespace" not in cluster and "labels" not in cluster


def test_remap_path() -> None:
    m = {"web": "web-copy"}
    assert (
        layout.remap_path("namespaces/web/apps/deployments/a.yaml", m) == "namespaces/web-copy/apps/deployments/a.yaml"
    )
    assert layout.remap_path("cluster/core/namespaces/web.yaml", m) == "cluster/core/namespaces/web-copy.yaml"
    assert layout.remap_path("cluster/core/namespaces/other.yaml", m) == "cluster/core/namespaces/other.yaml"
    assert layout.remap_path("apps/deployments/a.yaml", m) == "apps/deployments/a.yaml"
    assert layout.split_api_version("apps/v1") == ("apps", "v1")
    assert layout.split_api_version("v1") == ("", "v1")
