"""Restore-time transforms: the storage-class and image maps, rule files (selection, JSON Patch,
merge patch), their strict checking, failures per object, and their place in the restore plan."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubekeep import errors
from kubekeep.manifests import layout, transforms
from kubekeep.manifests.cleaning import CleanOptions
from kubekeep.manifests.planning import RESTORED_FROM_LABEL, StoredObject, plan
from kubekeep.manifests.transforms import (
    Transforms,
    image_prefix_matches,
    map_image,
    merge_patch,
    parse_image_map,
    parse_rules,
    parse_storage_class_map,
)


def _pod_spec(*images: str, init: str = "", ephemeral: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}
    if init:
        spec["initContainers"] = [{"name": "init", "image": init}]
    if ephemeral:
        spec["ephemeralContainers"] = [{"name": "debug", "image": ephemeral}]
    return spec


def _obj(api_version: str, kind: str, name: str, ns: str = "shop", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": ns} if ns else {})}
    meta.update(extra.pop("meta", {}))
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **extra}


def _pvc(name: str, sc: str | None = "old", **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if sc is not None:
        spec["storageClassName"] = sc
    return _obj("v1", "PersistentVolumeClaim", name, meta=meta, spec=spec)


# -- image map --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "prefix", "matches"),
    [
        ("docker.io/library/nginx:1.27", "docker.io/library", True),
        ("docker.io/library2/x", "docker.io/library", False),  # not a path boundary
        ("docker.io/library", "docker.io/library", True),  # the whole image
        ("nginx:1.27", "nginx", True),  # a tag
        ("nginx@sha256:abcd", "nginx", True),  # a digest
        ("nginx:1.27@sha256:abcd", "nginx", True),
        ("nginx-extra:1", "nginx", False),
        ("nginx/sub:1", "nginx", True),
        ("docker.io/library/nginx", "nginx", False),  # text as written: no normalisation
        ("registry.example.com:5000/app:1", "registry.example.com", False),  # a port is part of the host
        ("registry.example.com:5000/app:1", "registry.example.com:5000", True),
        ("registry.example.com/app", "registry.example.com", True),
        ("nginx:1.25", "nginx:1.25", True),
        ("nginx:1.25.3", "nginx:1.25", False),
        ("nginx:1.25@sha256:abcd", "nginx:1.25", True),
        ("quay.io/org/app:1", "quay.io/", True),  # a prefix ending in / matches all below it
        ("quay.iox/app", "quay.io/", False),
    ],
)
def test_image_prefixes_match_only_on_reference_boundaries(image: str, prefix: str, matches: bool) -> None:
    assert image_prefix_matches(image, prefix) is matches


def test_the_longest_matching_prefix_wins() -> None:
    images = {"docker.io": "mirror.local/hub", "docker.io/library": "mirror.local/lib"}
    assert map_image("docker.io/library/nginx:1", images) == "mirror.local/lib/nginx:1"
    assert map_image("docker.io/bitnami/redis:7", images) == "mirror.local/hub/bitnami/redis:7"
    assert map_image("ghcr.io/x/y", images) == "ghcr.io/x/y"


@pytest.mark.parametrize(
    ("api_version", "kind", "resource", "path"),
    [
        ("v1", "Pod", "pods", ("spec",)),
        ("v1", "PodTemplate", "podtemplates", ("template", "spec")),
        ("v1", "ReplicationController", "replicationcontrollers", ("spec", "template", "spec")),
        ("apps/v1", "Deployment", "deployments", ("spec", "template", "spec")),
        ("apps/v1", "StatefulSet", "statefulsets", ("spec", "template", "spec")),
        ("apps/v1", "DaemonSet", "daemonsets", ("spec", "template", "spec")),
        ("apps/v1", "ReplicaSet", "replicasets", ("spec", "template", "spec")),
        ("batch/v1", "Job", "jobs", ("spec", "template", "spec")),
        ("batch/v1", "CronJob", "cronjobs", ("spec", "jobTemplate", "spec", "template", "spec")),
    ],
)
def test_image_map_reaches_every_container_list_of_every_pod_spec(
    api_version: str, kind: str, resource: str, path: tuple[str, ...]
) -> None:
    spec = _pod_spec(
        "docker.io/library/app:1",
        "ghcr.io/other:2",
        init="docker.io/library/init:3",
        ephemeral="docker.io/library/busybox",
    )
    body: dict[str, Any] = spec
    for key in reversed(path):
        body = {key: body}
    obj = _obj(api_version, kind, "x", **body)
    group = layout.split_api_version(api_version)[0]
    t = Transforms(images=parse_image_map(["docker.io/library=registry.local/lib"]))
    assert t.apply(obj, group, resource) == ["image-map"]
    for key in path:
        obj = obj[key]
    assert [c["image"] for c in obj["containers"]] == ["registry.local/lib/app:1", "ghcr.io/other:2"]
    assert obj["initContainers"][0]["image"] == "registry.local/lib/init:3"
    assert obj["ephemeralContainers"][0]["image"] == "registry.local/lib/busybox"


def test_image_map_leaves_custom_resources_and_malformed_specs_alone() -> None:
    t = Transforms(images={"nginx": "mirror/nginx"})
    widget = _obj("example.com/v1", "Widget", "w", spec={"template": {"spec": _pod_spec("nginx:1")}})
    before = copy.deepcopy(widget)
    assert t.apply(widget, "example.com", "widgets") == [] and widget == before
    broken = _obj(
        "apps/v1",
        "Deployment",
        "d",
        spec={"template": {"spec": {"containers": "nginx", "initContainers": [1, {"image": 5}]}}},
    )
    assert t.apply(broken, "apps", "deployments") == []
    no_match = _obj("v1", "Pod", "p", spec=_pod_spec("nginx-extra:1"))
    assert t.apply(no_match, "", "pods") == []


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["nginx"], "expected OLD_PREFIX=NEW_PREFIX"),
        (["=x"], "expected OLD_PREFIX=NEW_PREFIX"),
        (["a b=c"], "contain no spaces"),
        (["nginx:=x"], "cannot end with ':' or '@'"),
        (["a=b", "a=c"], "'a' is mapped twice"),
    ],
)
def test_bad_image_maps_are_one_line_usage_errors(items: list[str], message: str) -> None:
    with pytest.raises(errors.UsageError, match=message):
        parse_image_map(items)


# -- storage-class map ------------------------------------------------------------------------------


def test_storage_class_map_changes_claims_annotations_and_drops_the_old_binding() -> None:
    t = Transforms(storage_classes=parse_storage_class_map(["old=fast", "legacy=fast"]))
    claim = _pvc("data", "old")
    claim["spec"]["volumeName"] = "pv-1"
    assert t.apply(claim, "", "persistentvolumeclaims") == ["storage-class-map"]
    assert claim["spec"]["storageClassName"] == "fast" and "volumeName" not in claim["spec"]
    annotated = _pvc("data", None, annotations={transforms.STORAGE_CLASS_ANNOTATION: "legacy"})
    assert t.apply(annotated, "", "persistentvolumeclaims") == ["storage-class-map"]
    assert annotated["metadata"]["annotations"][transforms.STORAGE_CLASS_ANNOTATION] == "fast"
    other = _pvc("data", "standard")
    other["spec"]["volumeName"] = "pv-2"
    assert t.apply(other, "", "persistentvolumeclaims") == [] and other["spec"]["volumeName"] == "pv-2"
    default_class = _pvc("data", None)
    assert t.apply(default_class, "", "persistentvolumeclaims") == []


def test_storage_class_map_reaches_claim_templates_but_not_volumes() -> None:
    t = Transforms(storage_classes={"old": "fast"})
    template = {"metadata": {"name": "data"}, "spec": {"storageClassName": "old"}}
    sts = _obj("apps/v1", "StatefulSet", "db", spec={"volumeClaimTemplates": [template], "template": {"spec": {}}})
    assert t.apply(sts, "apps", "statefulsets") == ["storage-class-map"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    ephemeral = {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "old"}}}}
    deploy = _obj("apps/v1", "Deployment", "web", spec={"template": {"spec": {"volumes": [ephemeral]}}})
    assert t.apply(deploy, "apps", "deployments") == ["storage-class-map"]
    assert ephemeral["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "fast"
    pv = _obj("v1", "PersistentVolume", "pv-1", ns="", spec={"storageClassName": "old"})
    assert t.apply(pv, "", "persistentvolumes") == [] and pv["spec"]["storageClassName"] == "old"


@pytest.mark.parametrize(
    ("items", "message"),
    [(["old"], "expected OLD=NEW"), (["old=Fast!"], "not a storage class name"), (["a=b", "a=c"], "mapped twice")],
)
def test_bad_storage_class_maps_are_usage_errors(items: list[str], message: str) -> None:
    with pytest.raises(errors.UsageError, match=message):
        parse_storage_class_map(items)


# -- merge patch ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # the examples of RFC 7386, appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    before = copy.deepcopy(target)
    assert merge_patch(target, patch) == result
    assert target == before


def test_merge_patch_shares_nothing_with_the_patch() -> None:
    patch = {"spec": {"tolerations": [{"key": "a"}]}}
    one, two = merge_patch({}, patch), merge_patch({}, patch)
    one["spec"]["tolerations"].append({"key": "b"})
    assert two["spec"]["tolerations"] == [{"key": "a"}] and patch["spec"]["tolerations"] == [{"key": "a"}]


# -- rule files -------------------------------------------------------------------------------------

RULES = """
version: 1
rules:
  - name: one replica
    match:
      groups: [apps]
      kinds: [Deployment, statefulsets]
      namespaces: ["shop*"]
      names: ["web-*"]
      labelSelector: "tier=front,!legacy"
    jsonPatch:
      - {op: replace, path: /spec/replicas, value: 1}
      - {op: add, path: /metadata/labels/moved, value: "yes"}
  - match: {kinds: ConfigMap, labelSelector: {matchLabels: {app: web}, matchExpressions: [{key: env, operator: In, values: [prod]}]}}
    mergePatch:
      data: {LOG_LEVEL: debug, OLD_KEY: null}
  - name: every object
    mergePatch: {metadata: {annotations: {restored: "true"}}}
"""


def _rules(text: str = RULES) -> Transforms:
    return Transforms(rules=parse_rules(text, "rules.yaml"))


def test_rules_select_by_group_kind_namespace_name_and_labels() -> None:
    t = _rules()
    web = _obj("apps/v1", "Deployment", "web-1", "shop-eu", meta={"labels": {"tier": "front"}}, spec={"replicas": 3})
    assert t.apply(web, "apps", "deployments") == [
        "rules.yaml rule 1 (one replica)",
        "rules.yaml rule 3 (every object)",
    ]
    assert web["spec"]["replicas"] == 1 and web["metadata"]["labels"] == {"tier": "front", "moved": "yes"}
    assert web["metadata"]["annotations"] == {"restored": "true"}
    for name, ns, labels, group in [
        ("api-1", "shop", {"tier": "front"}, "apps"),  # name
        ("web-1", "other", {"tier": "front"}, "apps"),  # namespace
        ("web-1", "shop", {"tier": "back"}, "apps"),  # labels
        ("web-1", "shop", {"tier": "front", "legacy": ""}, "apps"),  # !legacy
        ("web-1", "shop", {"tier": "front"}, "example.com"),  # group
    ]:
        other = _obj(f"{group}/v1", "Deployment", name, ns, meta={"labels": labels}, spec={"replicas": 3})
        assert t.apply(other, group, "deployments") == ["rules.yaml rule 3 (every object)"], (name, ns, labels)
        assert other["spec"]["replicas"] == 3
    cm = _obj("v1", "ConfigMap", "c", meta={"labels": {"app": "web", "env": "prod"}}, data={"OLD_KEY": "1"})
    assert t.apply(cm, "", "configmaps") == ["rules.yaml rule 2", "rules.yaml rule 3 (every object)"]
    assert cm["data"] == {"LOG_LEVEL": "debug"}
    staging = _obj("v1", "ConfigMap", "c", meta={"labels": {"app": "web", "env": "staging"}}, data={})
    assert t.apply(staging, "", "configmaps") == ["rules.yaml rule 3 (every object)"]


def test_namespaced_rules_never_match_cluster_scoped_objects_and_core_names_the_core_group() -> None:
    t = _rules(
        """
rules:
  - match: {namespaces: ["*"]}
    mergePatch: {metadata: {labels: {a: "1"}}}
  - match: {groups: [core], kinds: [namespaces]}
    mergePatch: {metadata: {labels: {b: "1"}}}
"""
    )
    ns = _obj("v1", "Namespace", "shop", ns="")
    assert t.apply(ns, "", "namespaces") == ["rules.yaml rule 2"]
    assert ns["metadata"]["labels"] == {"b": "1"}


def test_rules_apply_in_order_each_seeing_the_one_before() -> None:
    t = _rules(
        """
rules:
  - match: {kinds: [ConfigMap]}
    mergePatch: {metadata: {labels: {stage: one}}}
  - match: {labelSelector: stage=one}
    jsonPatch: [{op: replace, path: /metadata/labels/stage, value: two}]
  - match: {labelSelector: stage=one}
    mergePatch: {data: {never: "1"}}
"""
    )
    cm = _obj("v1", "ConfigMap", "c", data={})
    assert t.apply(cm, "", "configmaps") == ["rules.yaml rule 1", "rules.yaml rule 2"]
    assert cm["metadata"]["labels"] == {"stage": "two"} and cm["data"] == {}


def test_a_rule_that_changes_nothing_is_not_reported() -> None:
    t = _rules("rules: [{mergePatch: {data: {a: '1'}}}]")
    cm = _obj("v1", "ConfigMap", "c", data={"a": "1"})
    assert t.apply(cm, "", "configmaps") == []


def test_the_fixed_order_is_maps_then_rules() -> None:
    rules = parse_rules(
        """
rules:
  - jsonPatch:
      - {op: test, path: /spec/storageClassName, value: fast}
      - {op: add, path: /metadata/labels, value: {checked: "1"}}
  - match: {kinds: [Pod]}
    jsonPatch: [{op: test, path: /spec/containers/0/image, value: "mirror/nginx:1"}]
""",
        "order.yaml",
    )
    t = Transforms(storage_classes={"old": "fast"}, images={"nginx": "mirror/nginx"}, rules=rules[:1])
    claim = _pvc("data")
    assert t.apply(claim, "", "persistentvolumeclaims") == ["storage-class-map", "order.yaml rule 1"]
    pod = _obj("v1", "Pod", "p", spec=_pod_spec("nginx:1"))
    assert Transforms(images={"nginx": "mirror/nginx"}, rules=rules[1:]).apply(pod, "", "pods") == ["image-map"]


def test_json_files_are_read_too() -> None:
    text = json.dumps({"rules": [{"match": {"kinds": ["Secret"]}, "jsonPatch": [{"op": "remove", "path": "/data/x"}]}]})
    t = Transforms(rules=parse_rules(text, "rules.json"))
    secret = _obj("v1", "Secret", "s", data={"x": "eA==", "y": "eQ=="})
    assert t.apply(secret, "", "secrets") == ["rules.json rule 1"] and secret["data"] == {"y": "eQ=="}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "rules.yaml: expected a mapping, not null"),
        ("[1]", "rules.yaml: expected a mapping, not a list"),
        ("{", "rules.yaml: not a readable YAML or JSON file (line 2)"),
        ("rules: [{mergePatch: {}}]\nrules: []", "duplicate key 'rules'"),
        ("rules: []", "rules.yaml: rules: expected a non-empty list of rules"),
        ("rulez: []", "rules.yaml: unknown key 'rulez' (known: version, rules)"),
        ("version: 2\nrules: [{mergePatch: {}}]", "rules.yaml: version: unsupported version 2"),
        ("rules: [x]", "rules.yaml: rule 1: expected a mapping, not a string"),
        ("rules: [{name: a}]", "rules.yaml: rule 1: a rule needs jsonPatch, mergePatch or both"),
        ("rules: [{mergePatch: {}, pacth: []}]", "rules.yaml: rule 1: unknown key 'pacth'"),
        ("rules: [{mergePatch: {}}, {name: 3, mergePatch: {}}]", "rules.yaml: rule 2: name: expected a string"),
        ("rules: [{jsonPatch: []}]", "rule 1: jsonPatch: expected a non-empty list of operations"),
        ("rules: [{jsonPatch: {op: add}}]", "rule 1: jsonPatch: expected a non-empty list of operations"),
        ("rules: [{jsonPatch: [{op: rplace, path: /a}]}]", "rule 1: jsonPatch[0]: unknown op 'rplace'"),
        ("rules: [{jsonPatch: [{path: /a}]}]", "rule 1: jsonPatch[0]: missing key 'op'"),
        ("rules: [{jsonPatch: [{op: add, path: /a}]}]", "rule 1: jsonPatch[0]: missing key 'value'"),
        ("rules: [{jsonPatch: [{op: remove, path: /a, value: 1}]}]", "rule 1: jsonPatch[0]: unknown key 'value'"),
        ("rules: [{jsonPatch: [{op: move, path: /a}]}]", "rule 1: jsonPatch[0]: missing key 'from'"),
        ("rules: [{jsonPatch: [{op: add, path: a, value: 1}]}]", "jsonPatch[0]: path: 'a' is not a JSON pointer"),
        ("rules: [{jsonPatch: [{op: add, path: /a~2, value: 1}]}]", "jsonPatch[0]: path: '/a~2' is not a JSON pointer"),
        ("rules: [{jsonPatch: [{op: add, path: 5, value: 1}]}]", "path: expected a JSON pointer string"),
        ("rules: [{jsonPatch: [{op: add, path: /a, value: 2026-01-01}]}]", "value: 2026-01-01 is a date"),
        ("rules: [{jsonPatch: [{op: add, path: /a, value: {x: .nan}}]}]", "value: x: nan is not a JSON number"),
        ("rules: [{jsonPatch: [{op: add, path: /a, value: {1: x}}]}]", "value: key 1 is not a string"),
        ("rules: [{mergePatch: [1]}]", "rule 1: mergePatch: expected a mapping"),
        ("rules: [{match: {kind: Pod}, mergePatch: {}}]", "rule 1: match: unknown key 'kind'"),
        ("rules: [{match: {kinds: [1]}, mergePatch: {}}]", "match: kinds: expected a string or a list of strings"),
        ("rules: [{match: {labelSelector: 'a in ('}, mergePatch: {}}]", "match: labelSelector: bad label selector"),
        ("rules: [{match: {labelSelector: {}}, mergePatch: {}}]", "labelSelector: an empty selector"),
        (
            "rules: [{match: {labelSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}, mergePatch: {}}]",
            "matchExpressions[0]: operator 'Exists' with 1 values",
        ),
        (
            "rules: [{match: {labelSelector: {matchLabels: {a: 1}}}, mergePatch: {}}]",
            "matchLabels: expected a mapping of label names to string values",
        ),
    ],
)
def test_rule_files_are_checked_strictly_with_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(errors.UsageError) as info:
        parse_rules(text, "rules.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("rules.yaml: ")


@pytest.mark.parametrize(
    "rule",
    [
        "{jsonPatch: [{op: replace, path: /metadata/name, value: x}]}",
        "{jsonPatch: [{op: add, path: /metadata/namespace, value: x}]}",
        "{jsonPatch: [{op: remove, path: /metadata}]}",
        "{jsonPatch: [{op: replace, path: /kind, value: Secret}]}",
        "{jsonPatch: [{op: replace, path: /apiVersion, value: v2}]}",
        "{jsonPatch: [{op: replace, path: '', value: {}}]}",
        "{jsonPatch: [{op: move, from: /metadata/name, path: /metadata/labels/x}]}",
        "{jsonPatch: [{op: copy, from: /metadata/labels/x, path: /metadata/name}]}",
        "{mergePatch: {metadata: {namespace: other}}}",
        "{mergePatch: {metadata: {name: null}}}",
        "{mergePatch: {metadata: null}}",
        "{mergePatch: {kind: Secret}}",
    ],
)
def test_rules_that_would_change_an_objects_identity_are_refused(rule: str) -> None:
    with pytest.raises(errors.UsageError, match=r"rule 1: .*cannot change .* \(namespaces move with --namespace-map\)"):
        parse_rules(f"rules: [{rule}]", "rules.yaml")


def test_reading_identity_fields_is_allowed() -> None:
    t = _rules(
        """
rules:
  - jsonPatch:
      - {op: test, path: /metadata/name, value: web}
      - {op: copy, from: /metadata/name, path: /metadata/labels/app}
"""
    )
    obj = _obj("v1", "ConfigMap", "web", meta={"labels": {}})
    assert t.apply(obj, "", "configmaps") == ["rules.yaml rule 1"] and obj["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ("{op: replace, path: /data/b, value: x}", "jsonPatch[0] (replace /data/b): can't replace"),
        (
            "{op: add, path: /spec/template/x, value: 1}",
            "jsonPatch[0] (add /spec/template/x): member 'spec' not found",
        ),
        ("{op: remove, path: /data/x}", "jsonPatch[0] (remove /data/x):"),
        ("{op: test, path: /data/a, value: '2'}", "jsonPatch[0] (test /data/a): test failed: "),
    ],
)
def test_a_patch_that_does_not_apply_fails_that_object_alone(patch: str, reason: str) -> None:
    t = _rules(f"rules: [{{name: r, jsonPatch: [{patch}]}}]")
    obj = _obj("v1", "ConfigMap", "c", data={"a": "1"})
    with pytest.raises(transforms.TransformFailed) as info:
        t.apply(obj, "", "configmaps")
    message = str(info.value)
    assert message.startswith("rules.yaml rule 1 (r): " + reason) and "\n" not in message and len(message) < 260


def test_a_patch_replacing_the_metadata_wholesale_cannot_rename() -> None:
    t = _rules("rules: [{jsonPatch: [{op: replace, path: /metadata/labels, value: {a: b}}]}, "
               "{mergePatch: {metadata: {labels: {c: d}}}}]")  # fmt: skip
    obj = _obj("v1", "ConfigMap", "c")
    obj["metadata"]["labels"] = {}
    assert t.apply(obj, "", "configmaps") == ["rules.yaml rule 1", "rules.yaml rule 2"]
    assert obj["metadata"] == {"name": "c", "namespace": "shop", "labels": {"a": "b", "c": "d"}}
    sneaky = Transforms(
        rules=(
            transforms.Rule(
                "x.yaml", 1, transforms.RuleMatch(), (transforms.PatchOperation("replace", "/metadata/labels", "x"),)
            ),
        )
    )
    with pytest.raises(transforms.TransformFailed, match="metadata.labels is no longer a mapping"):
        sneaky.apply(_obj("v1", "ConfigMap", "c", meta={"labels": {}}), "", "configmaps")


def test_a_patch_value_is_copied_into_each_object() -> None:
    t = Transforms(
        rules=parse_rules("rules: [{jsonPatch: [{op: add, path: /spec/tolerations, value: [{key: a}]}]}]", "r.yaml"),
        images={"nginx": "mirror/nginx"},
    )
    one = _obj("v1", "Pod", "one", spec=_pod_spec("nginx"))
    two = _obj("v1", "Pod", "two", spec=_pod_spec("nginx"))
    t.apply(one, "", "pods")
    t.apply(two, "", "pods")
    one["spec"]["tolerations"].append({"key": "b"})
    assert two["spec"]["tolerations"] == [{"key": "a"}]


def test_build_reads_files_in_the_order_given() -> None:
    t = transforms.build(
        storage_class_map=["a=b"],
        image_map=["x=y"],
        rule_files=[
            ("one.yaml", "rules: [{mergePatch: {}}]"),
            ("two.yaml", b"rules: [{mergePatch: {}}, {mergePatch: {}}]"),
        ],
    )
    assert [r.label for r in t.rules] == ["one.yaml rule 1", "two.yaml rule 1", "two.yaml rule 2"]
    assert t.given() == ["storage_class_map", "image_map", "transform"]
    assert not Transforms() and Transforms().given() == []


# -- in the restore plan ----------------------------------------------------------------------------


def _stored(obj: dict[str, Any], group: str, resource: str) -> StoredObject:
    meta = obj["metadata"]
    meta.setdefault("uid", f"uid-{meta['name']}")
    path = layout.object_path(group, resource, meta.get("namespace", ""), meta["name"])
    return StoredObject(path, layout.object_attrs(obj, group, resource), obj)


def test_the_plan_applies_transforms_after_cleaning_and_reports_them() -> None:
    t = Transforms(
        storage_classes={"old": "fast"},
        images={"nginx": "mirror/nginx"},
        rules=parse_rules(
            """
rules:
  - name: tag
    match: {namespaces: [copy]}
    mergePatch: {metadata: {labels: {moved: "true"}}}
  - match: {kinds: [ConfigMap]}
    jsonPatch: [{op: replace, path: /data/missing, value: x}]
""",
            "r.yaml",
        ),
    )
    deploy = _obj(
        "apps/v1",
        "Deployment",
        "web",
        meta={"resourceVersion": "5", "labels": {RESTORED_FROM_LABEL: "old"}},
        spec={"template": {"spec": _pod_spec("nginx:1")}},
    )
    rs = _obj(
        "apps/v1",
        "ReplicaSet",
        "web-1",
        meta={"ownerReferences": [{"uid": "uid-web", "controller": True, "kind": "Deployment", "name": "web"}]},
        spec={"template": {"spec": _pod_spec("nginx:1")}},
    )
    objects = [
        _stored(deploy, "apps", "deployments"),
        _stored(rs, "apps", "replicasets"),
        _stored(_pvc("data"), "", "persistentvolumeclaims"),
        _stored(_obj("v1", "ConfigMap", "cfg", data={}), "", "configmaps"),
        _stored(_obj("v1", "ServiceAccount", "sa"), "", "serviceaccounts"),
    ]
    planned = {
        p.name: p
        for p in plan(
            objects, CleanOptions(namespace_map={"shop": "copy"}), label=(RESTORED_FROM_LABEL, "s1"), transform=t
        )
    }
    web = planned["web"]
    assert web.transforms == ["image-map", "r.yaml rule 1 (tag)"]
    assert web.report()["transforms"] == ["image-map", "r.yaml rule 1 (tag)"]
    assert web.obj["metadata"]["namespace"] == "copy" and "resourceVersion" not in web.obj["metadata"]
    assert web.obj["metadata"]["labels"] == {"moved": "true", RESTORED_FROM_LABEL: "s1"}  # the label after the rules
    assert web.obj["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror/nginx:1"
    assert planned["web-1"].skip and planned["web-1"].transforms == []  # not restored: not transformed
    assert planned["web-1"].obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    assert planned["data"].transforms == ["storage-class-map", "r.yaml rule 1 (tag)"]
    cfg = planned["cfg"]
    assert cfg.failed is not None and cfg.failed.startswith("r.yaml rule 2: jsonPatch[0] (replace /data/missing)")
    assert RESTORED_FROM_LABEL not in (cfg.obj["metadata"].get("labels") or {})
    assert planned["sa"].transforms == ["r.yaml rule 1 (tag)"] and planned["sa"].failed is None
    assert (
        "transforms" not in plan([_stored(_obj("v1", "ConfigMap", "x"), "", "configmaps")], CleanOptions())[0].report()
    )
