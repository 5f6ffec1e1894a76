"""Version resolution for a restore target (``manifests.api_versions``), with fake discovery data."""

from __future__ import annotations

from typing import Any

import pytest

from kubekeep import errors
from kubekeep.kube import discovery
from kubekeep.manifests import layout
from kubekeep.manifests.api_versions import ServedApis, parse_api_version_map, resolve, version_priority
from kubekeep.manifests.cleaning import CleanOptions
from kubekeep.manifests.planning import PlannedObject, StoredObject, plan

FLOW = "flowcontrol.apiserver.k8s.io"
EXAMPLE = "example.kubekeep.test"


def _target(**extra: tuple[str, str, tuple[str, ...]]) -> ServedApis:
    """A target serving apps/v1, core v1, flowcontrol v1 and Gadgets at v1 then v1beta1."""
    rows = [
        ("apps", "deployments", "Deployment", ("v1",)),
        ("", "configmaps", "ConfigMap", ("v1",)),
        ("", "services", "Service", ("v1",)),
        (FLOW, "flowschemas", "FlowSchema", ("v1",)),
        (EXAMPLE, "gadgets", "Gadget", ("v1", "v1beta1")),
        ("networking.k8s.io", "ingresses", "Ingress", ("v1",)),
    ]
    rows += [(g, r, k, v) for r, (g, k, v) in extra.items()]
    groups: dict[str, set[str]] = {}
    for g, _, _, versions in rows:
        groups.setdefault(g, set()).update(versions)
    return ServedApis.build(rows, {g: sorted(v, key=version_priority) for g, v in groups.items()})


def _stored(api_version: str, kind: str, resource: str, name: str, ns: str = "ns", **extra: Any) -> StoredObject:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", **extra.pop("meta", {})}
    if ns:
        meta["namespace"] = ns
    obj = {"apiVersion": api_version, "kind": kind, "metadata": meta, **extra}
    group = layout.split_api_version(api_version)[0]
    return StoredObject(layout.object_path(group, resource, ns, name), layout.object_attrs(obj, group, resource), obj)


def _plan(*objects: StoredObject) -> dict[str, PlannedObject]:
    return {p.name: p for p in plan(objects, CleanOptions())}


def test_kubernetes_order_of_preference() -> None:
    names = ["v1alpha1", "foo1", "v2", "v1beta1", "v1", "v10beta3", "v11alpha2", "foo10", "v3beta1", "v1beta2"]
    assert sorted(names, key=version_priority) == [
        "v2",
        "v1",
        "v10beta3",
        "v3beta1",
        "v1beta2",
        "v1beta1",
        "v11alpha2",
        "v1alpha1",
        "foo1",
        "foo10",
    ]


def test_served_versions_are_left_alone() -> None:
    planned = _plan(
        _stored("apps/v1", "Deployment", "deployments", "web"),
        _stored("v1", "ConfigMap", "configmaps", "cfg"),
        _stored(f"{EXAMPLE}/v1beta1", "Gadget", "gadgets", "old-but-served"),
    )
    assert resolve(planned.values(), _target()) == []
    assert all(p.version_change is None for p in planned.values())
    assert planned["old-but-served"].api_version == f"{EXAMPLE}/v1beta1"


def test_an_unserved_version_goes_to_the_one_the_target_prefers() -> None:
    planned = _plan(
        _stored(f"{FLOW}/v1beta3", "FlowSchema", "flowschemas", "fs", ns=""),
        _stored(f"{EXAMPLE}/v1alpha1", "Gadget", "gadgets", "g"),
    )
    changes = resolve(planned.values(), _target())
    assert [(c.stored, c.sent, c.forced) for c in changes] == [
        (f"{FLOW}/v1beta3", f"{FLOW}/v1", False),
        (f"{EXAMPLE}/v1alpha1", f"{EXAMPLE}/v1", False),
    ]
    gadget = planned["g"]
    assert gadget.obj["apiVersion"] == f"{EXAMPLE}/v1" and gadget.api_version == f"{EXAMPLE}/v1"
    assert (gadget.group, gadget.resource) == (EXAMPLE, "gadgets")
    assert gadget.version_change is not None
    assert gadget.version_change.reason == (
        f"sent as {EXAMPLE}/v1 (stored as {EXAMPLE}/v1alpha1; the target serves Gadget at v1, v1beta1 only)"
    )


def test_a_kind_or_group_the_target_does_not_serve_is_reported_with_what_it_serves() -> None:
    planned = _plan(
        _stored(f"{EXAMPLE}/v1", "Doohickey", "doohickeys", "d"),
        _stored("gone.example.com/v1", "Thing", "things", "t"),
        _stored("apps/v1", "Deployment", "deployments", "web"),
    )
    changes = resolve(planned.values(), _target())
    assert [c.sent for c in changes] == ["", ""]
    assert planned["d"].version_change is not None and planned["d"].version_change.reason == (
        f"the target does not serve Doohickey (stored as {EXAMPLE}/v1) at any version; "
        f"it serves {EXAMPLE} at v1, v1beta1"
    )
    assert planned["t"].version_change is not None and planned["t"].version_change.reason == (
        "the target does not serve the API group gone.example.com at all (Thing, stored as gone.example.com/v1)"
    )
    assert planned["d"].obj["apiVersion"] == f"{EXAMPLE}/v1"  # unsent objects keep their version
    assert planned["web"].version_change is None


def test_the_map_forces_a_version_even_to_another_group() -> None:
    planned = _plan(
        _stored(f"{EXAMPLE}/v1", "Gadget", "gadgets", "g"),
        _stored("extensions/v1beta1", "Ingress", "ingresses", "in"),
        _stored("apps/v1", "Deployment", "deployments", "web"),
    )
    forced = parse_api_version_map(
        [f"{EXAMPLE}/v1={EXAMPLE}/v1beta1", "extensions/v1beta1=networking.k8s.io/v1", "apps/v1=apps/v2"]
    )
    changes = resolve(planned.values(), _target(), forced)
    assert [(c.stored, c.sent, c.forced) for c in changes] == [
        ("apps/v1", "", True),
        (f"{EXAMPLE}/v1", f"{EXAMPLE}/v1beta1", True),
        ("extensions/v1beta1", "networking.k8s.io/v1", True),
    ]
    ingress = planned["in"]
    assert (ingress.group, ingress.resource, ingress.api_version) == (
        "networking.k8s.io",
        "ingresses",
        "networking.k8s.io/v1",
    )
    assert ingress.version_change is not None
    assert (
        ingress.version_change.reason
        == "sent as networking.k8s.io/v1 (stored as extensions/v1beta1; --api-version-map)"
    )
    web = planned["web"]
    assert web.version_change is not None and web.version_change.reason == (
        "--api-version-map sends apps/v1 as apps/v2, but the target serves Deployment at apps/v1 only"
    )


def test_a_crd_restored_now_counts_as_served_at_its_versions() -> None:
    crd = {
        "spec": {
            "group": "new.example.com",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [
                {"name": "v1alpha1", "served": True, "storage": False},
                {"name": "v1beta1", "served": True, "storage": True},
                {"name": "v1", "served": False, "storage": False},
            ],
        }
    }
    planned = _plan(
        _stored(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "things.new.example.com",
            ns="",
            **crd,
        ),  # fmt: skip
        _stored("new.example.com/v1alpha1", "Thing", "things", "served-as-stored"),
        _stored("new.example.com/v1", "Thing", "things", "not-served"),
    )
    served = _target(customresourcedefinitions=("apiextensions.k8s.io", "CustomResourceDefinition", ("v1",)))
    assert served.find_kind("new.example.com", "Thing") is None
    served.add_from_plan(planned.values())
    assert served.find_kind("new.example.com", "Thing") == ("things", served.resources[("new.example.com", "things")])
    changes = resolve(planned.values(), served)
    assert [(c.stored, c.sent) for c in changes] == [("new.example.com/v1", "new.example.com/v1beta1")]
    assert planned["served-as-stored"].version_change is None


def test_the_targets_own_crd_wins_unless_the_restore_updates_it() -> None:
    crd = {"spec": {"group": EXAMPLE, "names": {"plural": "gadgets", "kind": "Gadget"},
                    "versions": [{"name": "v1alpha1", "served": True, "storage": True}]}}  # fmt: skip
    objects = [
        _stored(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            f"gadgets.{EXAMPLE}",
            ns="",
            **crd,
        ),  # fmt: skip
        _stored(f"{EXAMPLE}/v1alpha1", "Gadget", "gadgets", "g"),
    ]
    kept = _target()
    kept.add_from_plan(_plan(*objects).values())
    assert kept.resources[(EXAMPLE, "gadgets")].versions == ("v1", "v1beta1")
    replaced = _target()
    replaced.add_from_plan(_plan(*objects).values(), existing="update")
    assert replaced.resources[(EXAMPLE, "gadgets")].versions == ("v1alpha1",)


def test_hostile_crds_in_the_plan_are_ignored() -> None:
    for spec in [None, "x", {"group": 3}, {"group": "a.b", "names": [], "versions": []},
                 {"group": "a.b", "names": {"plural": "xs", "kind": "X"}, "versions": ["v1", {"name": 1}]}]:  # fmt: skip
        served = _target()
        served.add_from_plan(
            _plan(
                _stored(
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    "customresourcedefinitions",
                    "xs.a.b",
                    ns="",
                    spec=spec,
                )
            ).values()  # fmt: skip
        )
        assert ("a.b", "xs") not in served.resources


def test_groups_nothing_is_known_about_are_left_to_the_server() -> None:
    apiservice = {"spec": {"group": "metrics.k8s.io", "version": "v1beta1", "service": {"name": "m", "namespace": "x"}}}
    planned = _plan(
        _stored(
            "apiregistration.k8s.io/v1", "APIService", "apiservices", "v1beta1.metrics.k8s.io", ns="", **apiservice
        ),  # fmt: skip
        _stored("metrics.k8s.io/v1beta1", "PodMetrics", "pods", "m"),
        _stored("custom.example.com/v2", "Thing", "things", "t"),
    )
    served = ServedApis.build(
        [("apiregistration.k8s.io", "apiservices", "APIService", ("v1",))],
        {"apiregistration.k8s.io": ["v1"], "custom.example.com": ["v1"]},
        unknown=["custom.example.com/v1"],  # its aggregated server is down
    )
    served.add_from_plan(planned.values())
    assert resolve(planned.values(), served) == []


def test_owner_references_follow_the_owners_version() -> None:
    owner = _stored(f"{EXAMPLE}/v1alpha1", "Gadget", "gadgets", "owner")
    ref = {"apiVersion": f"{EXAMPLE}/v1alpha1", "kind": "Gadget", "name": "owner", "uid": "uid-owner"}
    other = {"apiVersion": "gone.example.com/v1", "kind": "Thing", "name": "t", "uid": "uid-t"}
    child = _stored("v1", "ConfigMap", "configmaps", "child", meta={"ownerReferences": [ref, other]})
    planned = _plan(owner, child)
    resolve(planned.values(), _target())
    assert planned["child"].owner_references == [{**ref, "apiVersion": f"{EXAMPLE}/v1"}, other]


def test_skipped_objects_are_not_looked_at() -> None:
    planned = _plan(_stored("gone.example.com/v1", "Node", "nodes", "n", ns=""))
    planned["n"].skip = "nodes register themselves"
    assert resolve(planned.values(), _target()) == []


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["apps/v1"], "expected OLD_GROUP_VERSION=NEW_GROUP_VERSION"),
        (["=apps/v1"], "expected OLD_GROUP_VERSION=NEW_GROUP_VERSION"),
        (["apps/v1=Apps/V2"], "'Apps/V2' is not a group version"),
        (["apps/v1=apps/"], "'apps/' is not a group version"),
        (["apps/v1=apps/v1"], "apps/v1 is mapped to itself"),
        (["apps/v1=apps/v2", "apps/v1=apps/v3"], "'apps/v1' is mapped twice"),
    ],
)
def test_bad_mappings_are_one_line_usage_errors(items: list[str], message: str) -> None:
    with pytest.raises(errors.UsageError, match=message):
        parse_api_version_map(items)


def test_good_mappings_parse() -> None:
    assert parse_api_version_map([" v1 = apps/v1 ", f"{FLOW}/v1beta3={FLOW}/v1", f"{FLOW}/v1beta3={FLOW}/v1"]) == {
        "v1": "apps/v1",
        f"{FLOW}/v1beta3": f"{FLOW}/v1",
    }


def test_aggregated_discovery_keeps_every_version_of_a_resource() -> None:
    def resource(name: str, kind: str) -> dict[str, Any]:
        return {"resource": name, "responseKind": {"kind": kind}, "scope": "Namespaced", "verbs": ["create"]}

    found = discovery._from_aggregated(
        [
            {
                "metadata": {"name": ""},
                "versions": [{"version": "v1", "resources": [resource("configmaps", "ConfigMap")]}],
            },
            {
                "metadata": {"name": EXAMPLE},
                "versions": [
                    {"version": "v1", "resources": [resource("gadgets", "Gadget")]},
                    {"version": "v1beta1", "resources": [resource("gadgets", "Gadget"), resource("olds", "Old")]},
                ],
            },
        ]
    )
    assert found.served == {
        ("", "configmaps"): ["v1"],
        (EXAMPLE, "gadgets"): ["v1", "v1beta1"],
        (EXAMPLE, "olds"): ["v1beta1"],
    }
    assert found.find(EXAMPLE, "gadgets") is not None and found.find(EXAMPLE, "gadgets").version == "v1"  # type: ignore[union-attr]
    assert b"served" not in found.to_json()  # the snapshot's discovery.json is unchanged
