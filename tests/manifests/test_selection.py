"""Label selectors, resource patterns and the restore selection over node attrs."""

from __future__ import annotations

import pytest

from kubekeep import errors
from kubekeep.manifests import selection
from kubekeep.manifests.selection import ObjectSelector, ResourceMatcher, parse_label_selector


@pytest.mark.parametrize(
    "text, labels, expected",
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("!app", {}, True),
        ("env in (prod, staging)", {"env": "staging"}, True),
        ("env in (prod,staging)", {}, False),
        ("env notin (prod)", {}, True),
        ("env notin (prod)", {"env": "prod"}, False),
        ("app=web,tier in (a,b),!legacy", {"app": "web", "tier": "b"}, True),
        ("app=web,tier in (a,b),!legacy", {"app": "web", "tier": "b", "legacy": "1"}, False),
        ("app.kubernetes.io/name=web", {"app.kubernetes.io/name": "web"}, True),
    ],
)
def test_label_selector(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["", "app=web,", "=x", "app=we b", "!app=x", "a in (x", "Bad Key=1", "app=-x"])
def test_bad_label_selectors_are_usage_errors(text: str) -> None:
    with pytest.raises(errors.UsageError):
        parse_label_selector(text)


def test_resource_matcher_accepts_kubectl_names() -> None:
    m = ResourceMatcher.of(["deploy", "ConfigMap", "widgets.example.com", "*.k8s.io"])
    assert m.matches("apps", "deployments", "Deployment", short_names=["deploy"])
    assert m.matches("", "configmaps", "ConfigMap")
    assert m.matches("example.com", "widgets", "Widget")
    assert not m.matches("other.com", "widgets", "Widget")
    assert m.matches("networking.k8s.io", "ingresses", "Ingress")
    assert not m.matches("", "secrets", "Secret")
    assert ResourceMatcher.of(["deployments.apps"]).matches("apps", "deployments", "Deployment")
    assert ResourceMatcher.of(["deployment.apps"]).matches("apps", "deployments", "Deployment")
    assert not ResourceMatcher.of([])


def _attrs(kind: str, group: str, resource: str, name: str, ns: str | None = None, **labels: str) -> dict:
    a = {"kind": kind, "apiVersion": "v1", "group": group, "resource": resource, "name": name}
    if ns:
        a["namespace"] = ns
    if labels:
        a["labels"] = labels
    return a


NS_WEB = _attrs("Namespace", "", "namespaces", "web")
NS_DB = _attrs("Namespace", "", "namespaces", "db")
DEPLOY = _attrs("Deployment", "apps", "deployments", "api", "web", app="api")
CM = _attrs("ConfigMap", "", "configmaps", "api-config", "web", app="api")
OTHER_CM = _attrs("ConfigMap", "", "configmaps", "x", "db")
NODE = _attrs("Node", "", "nodes", "n1")
WIDGET = _attrs("Widget", "example.com", "widgets", "w1", "web")
CRD = _attrs("CustomResourceDefinition", "apiextensions.k8s.io", "customresourcedefinitions", "widgets.example.com")
ALL = [NS_WEB, NS_DB, DEPLOY, CM, OTHER_CM, NODE, WIDGET, CRD]


def _pick(sel: ObjectSelector) -> list[str]:
    return [a["name"] for a in ALL if sel.matches(a)]


def test_empty_selector_takes_every_object_but_not_other_nodes() -> None:
    assert ObjectSelector().empty()
    assert _pick(ObjectSelector()) == [a["name"] for a in ALL]
    assert not ObjectSelector().matches({"name": "discovery.json"})


def test_namespace_selection_includes_the_namespace_object_only() -> None:
    assert _pick(ObjectSelector.build(namespaces=["web"])) == ["web", "api", "api-config", "w1"]


def test_dimensions_combine() -> None:
    assert _pick(ObjectSelector.build(namespaces=["web"], kinds=["deployments"])) == ["api"]
    assert _pick(ObjectSelector.build(kinds=["cm"], names=["api-*"])) == []  # cm is not a name we know
    assert _pick(ObjectSelector.build(kinds=["configmap"], names=["api-*"])) == ["api-config"]
    assert _pick(ObjectSelector.build(selector="app=api")) == ["api", "api-config"]
    assert _pick(ObjectSelector.build(selector="app=api", kinds=["Deployment"])) == ["api"]


def test_short_names_from_discovery() -> None:
    names = selection.resource_names(
        {"resources": [{"group": "", "resource": "configmaps", "shortNames": ["cm"], "singular": "configmap"}]}
    )
    sel = ObjectSelector.build(kinds=["cm"])
    assert sel.matches(CM, names) and not sel.matches(CM)
    assert not sel.matches(DEPLOY, names)


def test_with_crds_adds_definitions_of_selected_custom_objects() -> None:
    assert selection.with_crds([WIDGET, DEPLOY], ALL) == [CRD]
    assert selection.with_crds([DEPLOY], ALL) == []


def test_namespace_map_parsing() -> None:
    assert selection.parse_namespace_map(["web=web-copy", "db = db2"]) == {"web": "web-copy", "db": "db2"}
    for bad in (["web"], ["=x"], ["web=Bad_Name"], ["a=x", "a=y"], ["a=x", "b=x"]):
        with pytest.raises(errors.UsageError):
            selection.parse_namespace_map(bad)
