"""Which claims a workload's pods mount: what a data-first restore holds a workload back for.

A workload mounts a claim through a ``persistentVolumeClaim`` volume of its pod spec (a bare
Pod's own spec, the template of a Deployment, ReplicaSet, ReplicationController, DaemonSet,
StatefulSet or Job, a CronJob's job template), and a StatefulSet also through its
``volumeClaimTemplates``: template ``data`` of StatefulSet ``web`` makes the claims
``data-web-0``, ``data-web-1`` ... Everything here reads the objects only (no I/O), and treats
them as hostile: a field of the wrong type is ignored, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

#: (group, resource) -> the path to the pod spec in objects of that resource
POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("spec",),
    ("", "replicationcontrollers"): ("spec", "template", "spec"),
    ("apps", "deployments"): ("spec", "template", "spec"),
    ("apps", "replicasets"): ("spec", "template", "spec"),
    ("apps", "daemonsets"): ("spec", "template", "spec"),
    ("apps", "statefulsets"): ("spec", "template", "spec"),
    ("batch", "jobs"): ("spec", "template", "spec"),
    ("batch", "cronjobs"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
STATEFULSETS = ("apps", "statefulsets")


def _dig(obj: Any, path: Iterable[str]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def makes_pods(group: str, resource: str) -> bool:
    """Whether objects of this resource are pods or make them (the kinds this module knows)."""
    return (group, resource) in POD_SPEC_PATHS


def mounted_claims(obj: Mapping[str, Any], group: str, resource: str) -> set[str]:
    """The claim names the pod spec's ``persistentVolumeClaim`` volumes name."""
    path = POD_SPEC_PATHS.get((group, resource))
    if path is None:
        return set()
    volumes = _dig(obj, (*path, "volumes"))
    if not isinstance(volumes, list):
        return set()
    names = set()
    for volume in volumes:
        claim = _dig(volume, ("persistentVolumeClaim", "claimName"))
        if isinstance(claim, str) and claim:
            names.add(claim)
    return names


def claim_templates(obj: Mapping[str, Any]) -> list[str]:
    """The names of a StatefulSet's ``volumeClaimTemplates``."""
    templates = _dig(obj, ("spec", "volumeClaimTemplates"))
    if not isinstance(templates, list):
        return []
    names = [_dig(t, ("metadata", "name")) for t in templates]
    return [n for n in names if isinstance(n, str) and n]


def template_claim_pattern(obj: Mapping[str, Any]) -> re.Pattern[str] | None:
    """The names of the claims a StatefulSet's templates make (``<template>-<name>-<ordinal>``)."""
    name = _dig(obj, ("metadata", "name"))
    templates = claim_templates(obj)
    if not isinstance(name, str) or not name or not templates:
        return None
    alternatives = "|".join(re.escape(t) for t in templates)
    return re.compile(rf"(?:{alternatives})-{re.escape(name)}-(?:0|[1-9][0-9]*)")


def claims_needed(obj: Mapping[str, Any], group: str, resource: str, claims: Iterable[str]) -> set[str]:
    """Of ``claims`` (names in the object's namespace), those the object's pods will mount: the
    claims its pod spec names, and for a StatefulSet those its claim templates make."""
    wanted = set(claims)
    needed = mounted_claims(obj, group, resource) & wanted
    if (group, resource) == STATEFULSETS:
        pattern = template_claim_pattern(obj)
        if pattern is not None:
            needed |= {c for c in wanted if pattern.fullmatch(c)}
    return needed
