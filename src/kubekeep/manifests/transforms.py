"""Restore-time transforms: objects changed on their way back (docs/manifests.md, "Transforms").

Three kinds, applied by ``planning.plan`` to every object the restore creates, after cleaning
(which already mapped namespaces), always in this order:

1. ``--storage-class-map OLD=NEW``: a PersistentVolumeClaim's ``spec.storageClassName`` and its
   legacy annotation ``volume.beta.kubernetes.io/storage-class``, the same two in a StatefulSet's
   ``volumeClaimTemplates`` and in the generic ephemeral volumes of pod specs. A claim whose
   class changes loses ``spec.volumeName``: the volume it was bound to belongs to the old class,
   so the claim is provisioned anew by the new one. PersistentVolumes are not changed.
2. ``--image-map OLD_PREFIX=NEW_PREFIX``: the images of ``containers``, ``initContainers`` and
   ``ephemeralContainers`` in the pod specs of the built-in kinds that hold one (``POD_SPECS``);
   custom resources are not searched (their pod templates are where their CRD says).
   ``image_prefix_matches`` is the exact matching rule; the longest matching prefix wins.
3. ``--transform FILE`` rules (``parse_rules``), files in the order given, rules in file order:
   each selects objects (groups, kinds, namespaces, names, labels) and changes the selected ones
   with a JSON Patch (RFC 6902, the ``jsonpatch`` library) and then a JSON merge patch (RFC 7386,
   ``merge_patch``). Each rule sees the object as the transforms before it left it.

A transform may not change what an object is: its ``apiVersion``, ``kind``, ``metadata.name`` and
``metadata.namespace`` (namespaces move with ``--namespace-map``). Rules that would are refused
when the file is read; a change made anyway (a patch replacing a parent field) fails the object.
A rule whose patch cannot be applied to an object (a path that does not exist, a failed ``test``
operation) fails that object with a one-line reason naming the file and rule, and the restore
goes on with the others. This module does no I/O: the caller reads rule files and passes text.
"""

from __future__ import annotations

import copy
import datetime
import fnmatch
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import jsonpointer
import yaml

from kubekeep import errors
from kubekeep.manifests.selection import LabelSelector, ResourceMatcher, parse_label_selector

STORAGE_CLASS_MAP = "storage-class-map"
IMAGE_MAP = "image-map"
#: the legacy way to name a claim's class (still honoured by the API server)
STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"

#: (group, resource) -> where the pod specs of its objects are (paths of keys)
POD_SPECS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("spec",),
    ("", "podtemplates"): ("template", "spec"),
    ("", "replicationcontrollers"): ("spec", "template", "spec"),
    ("apps", "deployments"): ("spec", "template", "spec"),
    ("apps", "statefulsets"): ("spec", "template", "spec"),
    ("apps", "daemonsets"): ("spec", "template", "spec"),
    ("apps", "replicasets"): ("spec", "template", "spec"),
    ("batch", "jobs"): ("spec", "template", "spec"),
    ("batch", "cronjobs"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")

#: object fields a transform must leave alone (JSON pointers, as parts)
IDENTITY: tuple[tuple[str, ...], ...] = (
    (),
    ("apiVersion",),
    ("kind",),
    ("metadata",),
    ("metadata", "name"),
    ("metadata", "namespace"),
)
PATCH_OPS = ("add", "remove", "replace", "move", "copy", "test")
_OP_KEYS: dict[str, tuple[str, ...]] = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}
RULE_KEYS = ("name", "match", "jsonPatch", "mergePatch")
MATCH_KEYS = ("groups", "kinds", "namespaces", "names", "labelSelector")
FILE_KEYS = ("version", "rules")
_CLASS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")


class TransformFailed(errors.KubekeepError):
    """A transform could not be applied to one object; that object is not restored."""


# -- the storage-class and image maps ---------------------------------------------------------------


def parse_storage_class_map(items: Iterable[str]) -> dict[str, str]:
    """``["old=new", ...]`` -> ``{"old": "new"}``; refuses malformed or conflicting pairs."""
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = (s.strip() for s in item.partition("="))
        if not sep or not old or not new:
            raise errors.UsageError(f"bad storage class mapping {item!r}: expected OLD=NEW")
        for name in (old, new):
            if len(name) > 253 or not _CLASS_NAME.match(name):
                raise errors.UsageError(f"bad storage class mapping {item!r}: {name!r} is not a storage class name")
        if mapping.get(old, new) != new:
            raise errors.UsageError(f"storage class {old!r} is mapped twice")
        mapping[old] = new
    return mapping


def parse_image_map(items: Iterable[str]) -> dict[str, str]:
    """``["OLD_PREFIX=NEW_PREFIX", ...]`` -> a mapping; refuses malformed or conflicting pairs."""
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = (s.strip() for s in item.partition("="))
        if not sep or not old or not new:
            raise errors.UsageError(f"bad image mapping {item!r}: expected OLD_PREFIX=NEW_PREFIX")
        if any(ch.isspace() for ch in old + new):
            raise errors.UsageError(f"bad image mapping {item!r}: image prefixes contain no spaces")
        if old.endswith((":", "@")) or new.endswith((":", "@")):
            raise errors.UsageError(f"bad image mapping {item!r}: a prefix cannot end with ':' or '@'")
        if mapping.get(old, new) != new:
            raise errors.UsageError(f"image prefix {old!r} is mapped twice")
        mapping[old] = new
    return mapping


def image_prefix_matches(image: str, prefix: str) -> bool:
    """Whether ``prefix`` is a prefix of ``image`` on a reference boundary: the whole image, or
    followed by ``/`` (a path component), ``@`` (a digest) or ``:`` starting a tag (what follows
    has no ``/``; a ``:`` before a ``/`` is a registry port, part of the host). A prefix ending
    in ``/`` matches everything below it. Text as written: ``nginx`` is not
    ``docker.io/library/nginx``."""
    if not image.startswith(prefix):
        return False
    rest = image[len(prefix) :]
    if not rest or prefix.endswith("/") or rest[0] in "/@":
        return True
    return rest[0] == ":" and "/" not in rest.partition("@")[0]


def map_image(image: str, images: Mapping[str, str]) -> str:
    """``image`` with its longest matching prefix (``image_prefix_matches``) replaced."""
    best = max((old for old in images if image_prefix_matches(image, old)), key=len, default=None)
    return image if best is None else images[best] + image[len(best) :]


def _dig(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _items(value: Any) -> list[dict[str, Any]]:
    """The mappings in ``value`` if it is a list (snapshot content is not trusted to be well formed)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _pod_spec(obj: dict[str, Any], group: str, resource: str) -> dict[str, Any] | None:
    path = POD_SPECS.get((group, resource))
    spec = _dig(obj, path) if path is not None else None
    return spec if isinstance(spec, dict) else None


def map_images(obj: dict[str, Any], group: str, resource: str, images: Mapping[str, str]) -> bool:
    """Apply the image map to ``obj`` in place; whether anything changed."""
    spec = _pod_spec(obj, group, resource)
    changed = False
    if spec is None or not images:
        return False
    for key in CONTAINER_LISTS:
        for container in _items(spec.get(key)):
            image = container.get("image")
            if isinstance(image, str):
                new = map_image(image, images)
                if new != image:
                    container["image"] = new
                    changed = True
    return changed


def _map_claim(claim: Any, classes: Mapping[str, str]) -> bool:
    """A claim (or claim template): class and legacy annotation mapped in place."""
    if not isinstance(claim, dict):
        return False
    changed = False
    spec = claim.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("storageClassName"), str):
        new = classes.get(spec["storageClassName"])
        if new is not None:
            spec["storageClassName"] = new
            changed = True
    annotations = _dig(claim, ("metadata", "annotations"))
    if isinstance(annotations, dict) and isinstance(annotations.get(STORAGE_CLASS_ANNOTATION), str):
        new = classes.get(annotations[STORAGE_CLASS_ANNOTATION])
        if new is not None:
            annotations[STORAGE_CLASS_ANNOTATION] = new
            changed = True
    return changed


def map_storage_classes(obj: dict[str, Any], group: str, resource: str, classes: Mapping[str, str]) -> bool:
    """Apply the storage-class map to ``obj`` in place; whether anything changed."""
    if not classes:
        return False
    if (group, resource) == ("", "persistentvolumeclaims"):
        changed = _map_claim(obj, classes)
        if changed and isinstance(obj.get("spec"), dict):
            obj["spec"].pop("volumeName", None)  # bound to a volume of the old class
        return changed
    changed = False
    if (group, resource) == ("apps", "statefulsets"):
        for template in _items(_dig(obj, ("spec", "volumeClaimTemplates"))):
            changed = _map_claim(template, classes) or changed
    spec = _pod_spec(obj, group, resource)
    if spec is not None:
        for volume in _items(spec.get("volumes")):
            changed = _map_claim(_dig(volume, ("ephemeral", "volumeClaimTemplate")), classes) or changed
    return changed


# -- rules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleMatch:
    """Which objects a rule changes. Dimensions combine with AND, values within one with OR; an
    empty dimension matches everything. ``groups``: API groups (``""`` or ``core`` for the core
    group; globs). ``kinds``: kinds or resources as ``--kind`` takes them (``Deployment``,
    ``deployments.apps``, globs over ``resource.group``). ``namespaces`` and ``names``: globs;
    a rule with ``namespaces`` never matches cluster-scoped objects. ``labels``: a selector."""

    groups: tuple[str, ...] = ()
    kinds: ResourceMatcher = field(default_factory=lambda: ResourceMatcher(()))
    namespaces: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    labels: LabelSelector | None = None

    def matches(self, obj: Mapping[str, Any], group: str, resource: str) -> bool:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        if self.groups and not any(fnmatch.fnmatchcase(group, "" if g == "core" else g) for g in self.groups):
            return False
        if self.kinds and not self.kinds.matches(group, resource, str(obj.get("kind", ""))):
            return False
        namespace = meta.get("namespace")
        if self.namespaces and not (
            isinstance(namespace, str) and namespace and any(fnmatch.fnmatchcase(namespace, p) for p in self.namespaces)
        ):
            return False
        name = meta.get("name")
        if self.names and not (isinstance(name, str) and any(fnmatch.fnmatchcase(name, p) for p in self.names)):
            return False
        labels = meta.get("labels")
        return self.labels is None or self.labels.matches(labels if isinstance(labels, dict) else {})


@dataclass(frozen=True)
class PatchOperation:
    """One JSON Patch (RFC 6902) operation, validated."""

    op: str
    path: str
    value: Any = None
    from_: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "path": self.path}
        if "value" in _OP_KEYS[self.op]:
            out["value"] = copy.deepcopy(self.value)
        if "from" in _OP_KEYS[self.op]:
            out["from"] = self.from_
        return out

    def describe(self) -> str:
        return f"{self.op} {self.path}" + (f" from {self.from_}" if self.from_ else "")


@dataclass(frozen=True)
class Rule:
    """One rule of a ``--transform`` file: ``source`` and ``number`` (from 1) say where it is."""

    source: str
    number: int
    match: RuleMatch
    json_patch: tuple[PatchOperation, ...] = ()
    merge_patch: Mapping[str, Any] | None = None
    name: str = ""

    @property
    def label(self) -> str:
        """How reports and errors name this rule."""
        return f"{self.source} rule {self.number}" + (f" ({self.name})" if self.name else "")

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A changed copy of ``obj``; raises TransformFailed naming the rule and operation."""
        doc = copy.deepcopy(obj)
        for i, op in enumerate(self.json_patch):
            try:
                doc = jsonpatch.apply_patch(doc, [op.to_json()], in_place=True)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                failed = ("test failed: " if isinstance(exc, jsonpatch.JsonPatchTestFailed) else "") + _short(exc)
                raise TransformFailed(f"{self.label}: jsonPatch[{i}] ({op.describe()}): {failed}") from None
        if self.merge_patch is not None:
            doc = merge_patch(doc, self.merge_patch)
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            raise TransformFailed(f"{self.label}: the patch left no object with metadata")
        if not isinstance(doc["metadata"].get("labels", {}), dict):
            raise TransformFailed(f"{self.label}: metadata.labels is no longer a mapping")
        changed = _identity(obj) != _identity(doc)
        if changed:
            raise TransformFailed(f"{self.label}: changes the object's apiVersion, kind, name or namespace: refused")
        return doc


def _identity(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return obj.get("apiVersion"), obj.get("kind"), meta.get("name"), meta.get("namespace")


def _short(exc: Exception) -> str:
    """An exception's message on one short line (jsonpointer quotes whole documents)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"^(member '.*?' not found) in .*", r"\1", text)
    return text if len(text) <= 160 else text[:157] + "..."


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with the JSON merge patch ``patch`` (RFC 7386, section 2) applied; neither
    argument is changed, and nothing of ``patch`` is shared with the result."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- the set of transforms a restore applies ----------------------------------------------------------


@dataclass(frozen=True)
class Transforms:
    """What a restore changes in the objects it creates, in this order: ``storage_classes``
    (``--storage-class-map``), ``images`` (``--image-map``), ``rules`` (``--transform``)."""

    storage_classes: Mapping[str, str] = field(default_factory=dict)
    images: Mapping[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.storage_classes or self.images or self.rules)

    def given(self) -> list[str]:
        """The option names (``storage_class_map``, ``image_map``, ``transform``) that are set."""
        parts = (("storage_class_map", self.storage_classes), ("image_map", self.images), ("transform", self.rules))
        return [name for name, value in parts if value]

    def apply(self, obj: dict[str, Any], group: str, resource: str) -> list[str]:
        """Transform ``obj`` in place; the names of the transforms that changed it, in order
        (``storage-class-map``, ``image-map``, rule labels). Raises TransformFailed, and then
        ``obj`` may be half transformed: it must not be restored."""
        changed = []
        if map_storage_classes(obj, group, resource, self.storage_classes):
            changed.append(STORAGE_CLASS_MAP)
        if map_images(obj, group, resource, self.images):
            changed.append(IMAGE_MAP)
        for rule in self.rules:
            if not rule.match.matches(obj, group, resource):
                continue
            new = rule.apply(obj)
            if new != obj:
                obj.clear()
                obj.update(new)
                changed.append(rule.label)
        return changed


# -- reading a rule file -----------------------------------------------------------------------------


class _StrictLoader(yaml.CSafeLoader):
    """YAML's safe loader refusing duplicate keys (the last would silently win)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a string", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


class _Where:
    """Builds the one-line errors of one file: ``FILE: rule N: KEY: problem``."""

    def __init__(self, source: str, *parts: str) -> None:
        self.source = source
        self.parts = parts

    def at(self, part: str) -> _Where:
        return _Where(self.source, *self.parts, part)

    def error(self, problem: str) -> errors.UsageError:
        return errors.UsageError(": ".join((self.source, *self.parts, problem)))


def _keys(value: Any, where: _Where, known: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"expected a mapping, not {_type(value)}")
    unknown = [k for k in value if k not in known]
    if unknown:
        raise where.error(f"unknown key {unknown[0]!r} (known: {', '.join(known)})")
    missing = [k for k in required if k not in value]
    if missing:
        raise where.error(f"missing key {missing[0]!r}")
    return value


def _type(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _strings(value: Any, where: _Where) -> tuple[str, ...]:
    """A string or a list of strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise where.error("expected a string or a list of strings")
    return tuple(items)


def _json_value(value: Any, where: _Where) -> Any:
    """``value`` if it is JSON (what YAML parses but JSON lacks, dates say, is refused)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise where.error(f"key {k!r} is not a string")
            _json_value(v, where.at(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _json_value(v, where.at(str(i)))
    elif isinstance(value, datetime.date | datetime.datetime):
        raise where.error(f"{value} is a date, not a JSON value (quote it)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise where.error(f"{value} is not a JSON number")
    elif not isinstance(value, str | int | float | bool | type(None)):
        raise where.error(f"{_type(value)} is not a JSON value")
    return value


def _pointer(value: Any, where: _Where) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise where.error(f"expected a JSON pointer string, not {_type(value)}")
    try:
        return tuple(jsonpointer.JsonPointer(value).parts)
    except jsonpointer.JsonPointerException as exc:
        raise where.error(f"{value!r} is not a JSON pointer: {exc}") from None


def _identity_field(parts: tuple[str, ...]) -> bool:
    return parts in IDENTITY


_IDENTITY_HINT = (
    "a transform cannot change apiVersion, kind, metadata.name or metadata.namespace "
    "(namespaces move with --namespace-map)"
)


def _operation(value: Any, where: _Where) -> PatchOperation:
    op = _keys(value, where, ("op", "path", "value", "from"), ("op",)).get("op")
    if op not in PATCH_OPS:
        raise where.error(f"unknown op {op!r} (one of {', '.join(PATCH_OPS)})")
    _keys(value, where, ("op", *_OP_KEYS[op]), ("op", *_OP_KEYS[op]))
    path = _pointer(value["path"], where.at("path"))
    writes = [path] if op != "test" else []
    if op == "move":
        source = _pointer(value["from"], where.at("from"))
        writes.append(source)
    elif op == "copy":
        _pointer(value["from"], where.at("from"))
    if any(_identity_field(p) for p in writes):
        raise where.error(f"{op} {value['path']}: {_IDENTITY_HINT}")
    data = _json_value(value["value"], where.at("value")) if "value" in value else None
    return PatchOperation(op, value["path"], data, value.get("from", ""))


def _merge(value: Any, where: _Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"expected a mapping (the fields to change), not {_type(value)}")
    _json_value(value, where)
    meta = value.get("metadata", {})
    if "apiVersion" in value or "kind" in value or not isinstance(meta, dict) or "name" in meta or "namespace" in meta:
        raise where.error(_IDENTITY_HINT)
    return value


def _selector(value: Any, where: _Where) -> LabelSelector:
    """kubectl's ``-l`` text, or a Kubernetes LabelSelector mapping (matchLabels, matchExpressions)."""
    if isinstance(value, str):
        text = value
    else:
        spec = _keys(value, where, ("matchLabels", "matchExpressions"))
        parts = []
        labels = spec.get("matchLabels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise where.at("matchLabels").error("expected a mapping of label names to string values")
        parts += [f"{k}={v}" for k, v in labels.items()]
        expressions = spec.get("matchExpressions") or []
        if not isinstance(expressions, list):
            raise where.at("matchExpressions").error(f"expected a list, not {_type(expressions)}")
        for i, e in enumerate(expressions):
            at = where.at(f"matchExpressions[{i}]")
            e = _keys(e, at, ("key", "operator", "values"), ("key", "operator"))
            key, operator = e["key"], e["operator"]
            values = _strings(e.get("values", []), at.at("values"))
            if not isinstance(key, str):
                raise at.at("key").error("expected a string")
            if operator in ("In", "NotIn") and values:
                parts.append(f"{key} {operator.lower()} ({','.join(values)})")
            elif operator in ("Exists", "DoesNotExist") and not values:
                parts.append(key if operator == "Exists" else f"!{key}")
            else:
                raise at.error(
                    f"operator {operator!r} with {len(values)} values "
                    "(In and NotIn take values, Exists and DoesNotExist none)"
                )
        if not parts:
            raise where.error("an empty selector (leave labelSelector out to match every object)")
        text = ",".join(parts)
    try:
        return parse_label_selector(text)
    except errors.UsageError as exc:
        raise where.error(str(exc)) from None


def _match(value: Any, where: _Where) -> RuleMatch:
    spec = _keys(value, where, MATCH_KEYS)
    labels = spec.get("labelSelector")
    return RuleMatch(
        groups=_strings(spec.get("groups", []), where.at("groups")),
        kinds=ResourceMatcher.of(_strings(spec.get("kinds", []), where.at("kinds"))),
        namespaces=_strings(spec.get("namespaces", []), where.at("namespaces")),
        names=_strings(spec.get("names", []), where.at("names")),
        labels=None if labels is None else _selector(labels, where.at("labelSelector")),
    )


def _rule(value: Any, source: str, number: int) -> Rule:
    where = _Where(source, f"rule {number}")
    spec = _keys(value, where, RULE_KEYS)
    if "jsonPatch" not in spec and "mergePatch" not in spec:
        raise where.error("a rule needs jsonPatch, mergePatch or both")
    name = spec.get("name", "")
    if not isinstance(name, str):
        raise where.at("name").error(f"expected a string, not {_type(name)}")
    ops = spec.get("jsonPatch", [])
    if not isinstance(ops, list) or ("jsonPatch" in spec and not ops):
        raise where.at("jsonPatch").error("expected a non-empty list of operations")
    return Rule(
        source=source,
        number=number,
        name=name,
        match=_match(spec.get("match", {}), where.at("match")),
        json_patch=tuple(_operation(op, where.at(f"jsonPatch[{i}]")) for i, op in enumerate(ops)),
        merge_patch=_merge(spec["mergePatch"], where.at("mergePatch")) if "mergePatch" in spec else None,
    )


def parse_rules(text: str | bytes, source: str) -> tuple[Rule, ...]:
    """The rules of a ``--transform`` file (YAML, or JSON: the YAML reader reads both), checked
    strictly; ``UsageError`` names ``source``, the rule and the key that is wrong::

        version: 1             # optional
        rules:
          - name: scale down   # optional, shown in reports
            match: {groups: [apps], kinds: [Deployment], namespaces: [shop], names: ["web-*"],
                    labelSelector: "tier=front"}      # each optional
            jsonPatch: [{op: replace, path: /spec/replicas, value: 1}]
            mergePatch: {metadata: {annotations: {restored: "yes"}}}
    """
    where = _Where(source)
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # CSafeLoader with duplicate keys refused
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise where.error(f"not a readable YAML or JSON file{at}: {' '.join(str(problem).split())}") from None
    spec = _keys(doc, where, FILE_KEYS, ("rules",))
    if "version" in spec and spec["version"] != 1:
        raise where.at("version").error(f"unsupported version {spec['version']!r} (this kubekeep reads 1)")
    rules = spec["rules"]
    if not isinstance(rules, list) or not rules:
        raise where.at("rules").error("expected a non-empty list of rules")
    return tuple(_rule(r, source, i) for i, r in enumerate(rules, 1))


def build(
    *,
    storage_class_map: Iterable[str] = (),
    image_map: Iterable[str] = (),
    rule_files: Iterable[tuple[str, str | bytes]] = (),
) -> Transforms:
    """The transforms of a restore from its flags: ``OLD=NEW`` pairs and ``(source, text)`` of
    each rule file, in command-line order."""
    rules: list[Rule] = []
    for source, text in rule_files:
        rules.extend(parse_rules(text, source))
    return Transforms(parse_storage_class_map(storage_class_map), parse_image_map(image_map), tuple(rules))
