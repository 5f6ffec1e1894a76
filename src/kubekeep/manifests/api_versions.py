"""Group versions a restore target does not serve: which version each object is sent at.

A snapshot stores every object at the version its cluster preferred when it was taken
(``apps/v1``, ``flowcontrol.apiserver.k8s.io/v1beta3``, a CRD's ``v1alpha1``). A cluster of
another Kubernetes release, or with another revision of a CRD, may no longer serve that
version, or not yet. Before a restore writes anything, :func:`resolve` compares each planned
object with what the target serves (:class:`ServedApis`, from its discovery):

* the target serves the object's kind at its stored version: it is sent as it is;
* the target serves the kind (same group and resource) at other versions only: the object is
  sent at the version the target prefers, with only ``apiVersion`` changed; the API server
  decodes it into that version's schema and converts it as it converts its own objects. The
  tier runner sends such objects with strict field validation, so a field the new version
  does not have is refused with the server's message instead of being dropped silently;
* ``--api-version-map OLD=NEW`` (:func:`parse_api_version_map`) forces objects stored at OLD to
  NEW, which may name another group (``extensions/v1beta1=networking.k8s.io/v1`` moved
  Ingresses); the target must serve the kind there;
* the target serves neither the kind nor its group: the object is not sent, and the report
  says which versions of the group the target does serve.

What the restore itself creates counts as served: the versions of a CustomResourceDefinition
in the plan that the target does not have yet (or that ``--existing update`` applies over it),
and the group versions of APIServices in the plan, which are left alone (their server is not
running yet). Group versions whose discovery failed on the target are left alone as well:
nothing is known about them, and the send reports what the server says.

Owner references follow their owners: a reference to an owner whose kind the target serves at
another version is rewritten to that version, so the garbage collector can resolve it.

Pure logic, no I/O: the exporter passes the target's discovery in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubekeep import errors
from kubekeep.manifests.layout import split_api_version

if TYPE_CHECKING:
    from kubekeep.manifests.planning import PlannedObject

CRD = ("apiextensions.k8s.io", "customresourcedefinitions")
APISERVICE = ("apiregistration.k8s.io", "apiservices")

_KUBE_VERSION = re.compile(r"v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?")
_STAGES = {None: 0, "beta": 1, "alpha": 2}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def version_priority(version: str) -> tuple[int, int, int, int, str]:
    """Sort key putting versions in Kubernetes' order of preference (as for CRDs): GA before
    beta before alpha, higher numbers first, other names last in alphabetical order."""
    m = _KUBE_VERSION.fullmatch(version)
    if m is None:
        return (1, 0, 0, 0, version)
    return (0, _STAGES[m[2]], -int(m[1]), -int(m[3] or 0), "")


def _join(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _valid_group_version(text: str) -> bool:
    group, _, version = text.rpartition("/")
    if not _DNS_LABEL.fullmatch(version) or len(version) > 63:
        return False
    return not group or (bool(_DNS_SUBDOMAIN.fullmatch(group)) and len(group) <= 253)


def parse_api_version_map(items: Iterable[str]) -> dict[str, str]:
    """``["flowcontrol.apiserver.k8s.io/v1beta3=flowcontrol.apiserver.k8s.io/v1", ...]`` ->
    ``{old: new}``; refuses malformed, self-mapped and conflicting pairs."""
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise errors.UsageError(f"bad API version mapping {item!r}: expected OLD_GROUP_VERSION=NEW_GROUP_VERSION")
        for gv in (old, new):
            if not _valid_group_version(gv):
                raise errors.UsageError(
                    f"bad API version mapping {item!r}: {gv!r} is not a group version (GROUP/VERSION, or v1 for core)"
                )
        if old == new:
            raise errors.UsageError(f"bad API version mapping {item!r}: {old} is mapped to itself")
        if mapping.get(old, new) != new:
            raise errors.UsageError(f"API version {old!r} is mapped twice")
        mapping[old] = new
    return mapping


@dataclass(frozen=True, slots=True)
class ServedResource:
    """One resource of the target: its kind and the versions serving it, preferred first."""

    kind: str
    versions: tuple[str, ...]


@dataclass
class ServedApis:
    """What a restore target serves (from its discovery)."""

    #: (group, resource plural) -> kind and versions, preferred first
    resources: dict[tuple[str, str], ServedResource] = field(default_factory=dict)
    #: group -> its versions, preferred first
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: group versions nothing is known about (discovery failed, or an APIService this restore creates)
    unknown: set[str] = field(default_factory=set)
    #: (group, kind) -> resource, built on first use (``add_from_plan`` drops it)
    _kinds: dict[tuple[str, str], str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        resources: Iterable[tuple[str, str, str, Iterable[str]]],
        groups: Mapping[str, Iterable[str]],
        unknown: Iterable[str] = (),
    ) -> ServedApis:
        """From ``(group, resource, kind, versions)`` rows and ``{group: versions}``."""
        return cls(
            {(g, r): ServedResource(k, tuple(v)) for g, r, k, v in resources},
            {g: tuple(v) for g, v in groups.items()},
            set(unknown),
        )

    def find_kind(self, group: str, kind: str) -> tuple[str, ServedResource] | None:
        """The resource serving ``kind`` in ``group``, if any."""
        if self._kinds is None:
            self._kinds = {}
            for g, plural in sorted(self.resources):
                self._kinds.setdefault((g, self.resources[(g, plural)].kind), plural)
        found = self._kinds.get((group, kind))
        return (found, self.resources[(group, found)]) if found is not None else None

    def add_from_plan(self, plan: Iterable[PlannedObject], *, existing: str = "skip") -> None:
        """Count what the restore itself creates (see the module docstring)."""
        for p in plan:
            if p.skip is not None:
                continue
            spec = p.obj.get("spec")
            if not isinstance(spec, dict):
                continue
            if (p.group, p.resource) == CRD:
                self._add_crd(spec, existing)
            elif (p.group, p.resource) == APISERVICE:
                group, version = spec.get("group"), spec.get("version")
                if isinstance(group, str) and isinstance(version, str) and spec.get("service"):
                    self.unknown.add(_join(group, version))

    def _add_crd(self, spec: Mapping[str, Any], existing: str) -> None:
        group, names, declared = spec.get("group"), spec.get("names"), spec.get("versions")
        if not (isinstance(group, str) and isinstance(names, dict) and isinstance(declared, list)):
            return
        plural, kind = names.get("plural"), names.get("kind")
        if not (isinstance(plural, str) and isinstance(kind, str)):
            return
        if (group, plural) in self.resources and existing != "update":
            return  # the target's definition stays, and discovery described it
        served = sorted(
            (v["name"] for v in declared if isinstance(v, dict) and v.get("served") and isinstance(v.get("name"), str)),
            key=version_priority,
        )
        if served:
            self._kinds = None
            self.resources[(group, plural)] = ServedResource(kind, tuple(served))
            self.groups[group] = tuple(sorted({*self.groups.get(group, ()), *served}, key=version_priority))


@dataclass(frozen=True, slots=True)
class VersionChange:
    """An object sent at another version than the stored one, or not sent at all."""

    #: the snapshot's apiVersion
    stored: str
    #: the apiVersion it is sent as; "" when the target serves no version of its kind
    sent: str
    #: why, with the versions the target serves
    reason: str
    #: chosen by --api-version-map
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"stored": self.stored, "sent": self.sent, "reason": self.reason, "forced": self.forced}


def _versions(versions: Iterable[str]) -> str:
    return ", ".join(versions) or "none"


@dataclass(frozen=True, slots=True)
class _Choice:
    group: str
    version: str
    resource: str
    change: VersionChange | None


def _choose(
    served: ServedApis, forced: Mapping[str, str], group: str, version: str, resource: str, kind: str
) -> _Choice:
    """Where an object of ``kind`` stored at ``group/version`` (resource ``resource``) goes."""
    stored = _join(group, version)
    keep = _Choice(group, version, resource, None)
    target = forced.get(stored)
    if target is not None:
        new_group, new_version = split_api_version(target)
        why = f"sent as {target} (stored as {stored}; --api-version-map)"
        if target in served.unknown:
            return _Choice(new_group, new_version, resource, VersionChange(stored, target, why, True))
        found = served.find_kind(new_group, kind)
        if found is not None and new_version in found[1].versions:
            return _Choice(new_group, new_version, found[0], VersionChange(stored, target, why, True))
        if found is not None:
            reason = (
                f"--api-version-map sends {stored} as {target}, but the target serves {kind} at "
                f"{_versions(_join(new_group, v) for v in found[1].versions)} only"
            )
        else:
            reason = (
                f"--api-version-map sends {stored} as {target}, but the target does not serve {kind} "
                f"in {new_group or 'the core group'} (it serves that group at {_versions(served.groups.get(new_group, ()))})"
            )
        return _Choice(group, version, resource, VersionChange(stored, "", reason, True))
    if stored in served.unknown:
        return keep
    entry = served.resources.get((group, resource))
    if entry is None:
        found = served.find_kind(group, kind)  # the same kind under another plural: unusual, but served
        entry = found[1] if found is not None else None
        resource = found[0] if found is not None else resource
    if entry is not None:
        if version in entry.versions or not entry.versions:
            return keep
        preferred = entry.versions[0]
        sent = _join(group, preferred)
        reason = f"sent as {sent} (stored as {stored}; the target serves {kind} at {_versions(entry.versions)} only)"
        return _Choice(group, preferred, resource, VersionChange(stored, sent, reason))
    if group in {split_api_version(gv)[0] for gv in served.unknown}:
        return keep  # part of the group could not be discovered: let the server answer
    group_versions = served.groups.get(group)
    if group_versions:
        reason = (
            f"the target does not serve {kind} (stored as {stored}) at any version; "
            f"it serves {group or 'the core group'} at {_versions(group_versions)}"
        )
    else:
        reason = f"the target does not serve the API group {group} at all ({kind}, stored as {stored})"
    return _Choice(group, version, resource, VersionChange(stored, "", reason))


def resolve(
    plan: Iterable[PlannedObject], served: ServedApis, forced: Mapping[str, str] | None = None
) -> list[VersionChange]:
    """Set each planned object's version for the target (see the module docstring).

    An object sent at another version gets its ``apiVersion`` (and group and resource, for a
    mapping to another group) rewritten and ``version_change`` set; one that cannot be sent
    gets ``version_change`` with an empty ``sent``. Skipped objects are left alone. Returns
    the changes, in plan order.
    """
    forced = dict(forced or {})
    changes: list[VersionChange] = []
    plan = list(plan)
    for p in plan:
        if p.skip is not None:
            continue
        group, version = split_api_version(p.api_version)
        choice = _choose(served, forced, group, version, p.resource, p.kind)
        if choice.change is None:
            continue
        p.version_change = choice.change
        changes.append(choice.change)
        if choice.change.sent:
            p.obj["apiVersion"] = choice.change.sent
            p.group, p.resource = choice.group, choice.resource
    for p in plan:
        if p.skip is None and p.owner_references:
            p.owner_references = [_owner_reference(ref, served, forced) for ref in p.owner_references]
    return changes


def _owner_reference(ref: dict[str, Any], served: ServedApis, forced: Mapping[str, str]) -> dict[str, Any]:
    api_version, kind = ref.get("apiVersion"), ref.get("kind")
    if not (isinstance(api_version, str) and isinstance(kind, str)):
        return ref
    group, version = split_api_version(api_version)
    found = served.find_kind(group, kind)
    if found is None:
        return ref
    choice = _choose(served, forced, group, version, found[0], kind)
    if choice.change is None or not choice.change.sent:
        return ref
    return {**ref, "apiVersion": choice.change.sent}
