"""Choosing objects: label selectors, resource patterns, and the restore selection.

Everything here works on a node's ``attrs`` (see ``layout``), so choosing the objects to
restore from a 10,000-object snapshot reads tree blobs only, never object contents.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubekeep import errors

# -- label selectors ------------------------------------------------------------------------------

_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z"
)
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
_SET_REQ = re.compile(r"\s*(!?)\s*([^\s=!,()]+)\s*(?:(in|notin)\s*\(([^)]*)\)|(==|=|!=)\s*([^\s,()]*))?\s*\Z")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin: also true when the label is absent


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector (``app=web,tier!=db,env in (a,b),!legacy``)."""

    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return self.text


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_label_selector(text: str) -> LabelSelector:
    """Parse kubectl's ``-l`` syntax; raises ``UsageError`` naming the bad part."""
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        if not part.strip():
            raise errors.UsageError(f"bad label selector {text!r}: empty requirement")
        m = _SET_REQ.match(part)
        if not m:
            raise errors.UsageError(f"bad label selector {text!r}: cannot parse {part.strip()!r}")
        neg, key, set_op, set_values, eq_op, eq_value = m.groups()
        if not _LABEL_KEY.match(key):
            raise errors.UsageError(f"bad label selector {text!r}: {key!r} is not a valid label key")
        if neg and (set_op or eq_op):
            raise errors.UsageError(f"bad label selector {text!r}: '!' only applies to a bare key")
        if set_op:
            values = frozenset(v.strip() for v in set_values.split(",") if v.strip())
            reqs.append(Requirement(key, set_op, values))
        elif eq_op:
            value = eq_value or ""
            if not _LABEL_VALUE.match(value):
                raise errors.UsageError(f"bad label selector {text!r}: {value!r} is not a valid label value")
            reqs.append(Requirement(key, "notin" if eq_op == "!=" else "in", frozenset([value])))
        else:
            reqs.append(Requirement(key, "!exists" if neg else "exists"))
    return LabelSelector(text.strip(), tuple(reqs))


# -- resource patterns ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceMatcher:
    """Patterns naming resources as kubectl does: ``deployments``, ``deployments.apps``,
    ``Deployment``, ``deploy`` (a short name), or a glob over ``resource.group``
    (``*.example.com``). Matching is case-insensitive."""

    patterns: tuple[str, ...]

    @classmethod
    def of(cls, patterns: Iterable[str]) -> ResourceMatcher:
        return cls(tuple(p.strip().lower() for p in patterns if p.strip()))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(
        self, group: str, resource: str, kind: str = "", short_names: Iterable[str] = (), singular: str = ""
    ) -> bool:
        full = f"{resource}.{group}" if group else resource
        names = {resource.lower(), full.lower(), kind.lower(), singular.lower(), *(s.lower() for s in short_names)}
        if group:
            names.add(f"{kind}.{group}".lower())
        names.discard("")
        for p in self.patterns:
            if p in names:
                return True
            if any(ch in p for ch in "*?[") and (
                fnmatch.fnmatchcase(full.lower(), p) or fnmatch.fnmatchcase(resource.lower(), p)
            ):
                return True
        return False


# -- the restore selection ------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceNames:
    """Other names of a resource (``deploy``, ``deployment``), from discovery."""

    short_names: tuple[str, ...] = ()
    singular: str = ""


def resource_names(discovery: Mapping[str, Any]) -> dict[tuple[str, str], ResourceNames]:
    """``(group, resource) -> ResourceNames`` from a snapshot's ``discovery.json``."""
    return {
        (r.get("group", ""), r["resource"]): ResourceNames(tuple(r.get("shortNames") or ()), r.get("singular", ""))
        for r in discovery.get("resources") or []
        if "resource" in r
    }


@dataclass(frozen=True)
class ObjectSelector:
    """Which objects of a snapshot a restore takes. Dimensions combine with AND, values within
    one dimension with OR; an empty dimension selects everything.

    ``namespaces`` selects the objects in those namespaces and the Namespace objects
    themselves; other cluster-scoped objects are left out when namespaces are given (the
    CustomResourceDefinitions of selected custom objects are added by ``with_crds``).
    ``kinds`` takes ResourceMatcher patterns; ``names`` globs over object names.
    """

    namespaces: frozenset[str] = frozenset()
    kinds: ResourceMatcher = field(default_factory=lambda: ResourceMatcher(()))
    names: tuple[str, ...] = ()
    labels: LabelSelector | None = None

    @classmethod
    def build(
        cls,
        *,
        namespaces: Iterable[str] = (),
        kinds: Iterable[str] = (),
        names: Iterable[str] = (),
        selector: str | None = None,
    ) -> ObjectSelector:
        return cls(
            frozenset(n for n in namespaces if n),
            ResourceMatcher.of(kinds),
            tuple(n for n in names if n),
            parse_label_selector(selector) if selector else None,
        )

    def empty(self) -> bool:
        return not (self.namespaces or self.kinds or self.names or self.labels)

    def matches(self, attrs: Mapping[str, Any], names: Mapping[tuple[str, str], ResourceNames] | None = None) -> bool:
        """Whether the object with node ``attrs`` is selected; ``names`` adds the short and
        singular names of resources (from the snapshot's discovery data) to ``kinds`` matching."""
        if "kind" not in attrs:
            return False
        name = attrs.get("name", "")
        if self.namespaces:
            ns = attrs.get("namespace")
            if ns:
                if ns not in self.namespaces:
                    return False
            elif not (_is_namespace(attrs) and name in self.namespaces):
                return False
        if self.kinds:
            group, resource = attrs.get("group", ""), attrs.get("resource", "")
            extra = (names or {}).get((group, resource), ResourceNames())
            if not self.kinds.matches(group, resource, attrs.get("kind", ""), extra.short_names, extra.singular):
                return False
        if self.names and not any(fnmatch.fnmatchcase(name, p) for p in self.names):
            return False
        return self.labels is None or self.labels.matches(attrs.get("labels"))


def _is_namespace(attrs: Mapping[str, Any]) -> bool:
    return attrs.get("group", "") == "" and attrs.get("resource") == "namespaces"


def crd_name(group: str, resource: str) -> str:
    """Name of the CustomResourceDefinition that would define ``resource`` in ``group``."""
    return f"{resource}.{group}"


def with_crds(
    selected: Iterable[Mapping[str, Any]], candidates: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """CRD objects among ``candidates`` that define a resource of the ``selected`` objects."""
    wanted = {crd_name(a.get("group", ""), a.get("resource", "")) for a in selected if a.get("group")}
    return [
        a
        for a in candidates
        if a.get("group") == "apiextensions.k8s.io"
        and a.get("resource") == "customresourcedefinitions"
        and a.get("name") in wanted
    ]


def parse_namespace_map(items: Iterable[str]) -> dict[str, str]:
    """``["old=new", ...]`` -> ``{"old": "new"}``; refuses malformed or conflicting pairs."""
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise errors.UsageError(f"bad namespace mapping {item!r}: expected OLD=NEW")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", new) or len(new) > 63:
            raise errors.UsageError(f"bad namespace mapping {item!r}: {new!r} is not a valid namespace name")
        if mapping.get(old, new) != new:
            raise errors.UsageError(f"namespace {old!r} is mapped twice")
        mapping[old] = new
    if len(set(mapping.values())) != len(mapping):
        raise errors.UsageError("two namespaces are mapped to the same new name")
    return mapping
