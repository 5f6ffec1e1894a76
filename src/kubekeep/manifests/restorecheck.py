"""Whether a restored object holds what the snapshot holds (restore drills, docs/drills.md).

The expected side is the snapshot's object as the restore sent it: cleaned (``cleaning``) and
namespace-mapped (``planning.plan``). The live side is what the API server returns now. Every
field of the expected object must be in the live object with the same value; fields only the
live object has are the server's and its controllers' (defaults, status, uid, resourceVersion,
managedFields, admission plugins' additions) and are not differences.

Matching follows ``fielddiff``: maps key by key; lists of objects that all carry a distinct
``name`` (containers, ports, env, volumes) or ``type`` (conditions) item by item by that key,
each expected item a subset of its live item; other lists of objects item by item by position
when both have the same length, and otherwise each expected item must be a subset of a
different live item (admission adds tolerations, for instance); lists of scalars as a whole.

A workload that a HorizontalPodAutoscaler of the same restore scales may have another
``spec.replicas`` than the snapshot says as soon as the autoscaler acts: that field is the
autoscaler's, not a difference (``autoscaled``, ``AUTOSCALED``).

Paths read as in ``fielddiff``: ``spec.template.spec.containers[name=app].image``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubekeep.manifests.fielddiff import ADDED, CHANGED, REMOVED, FieldChange, join_path, list_key

#: metadata the server or a restore sets, whatever the snapshot says (cleaning removes most of it
#: from the expected side already; a snapshot taken by hand may still carry it)
SERVER_SET: frozenset[tuple[str, ...]] = frozenset(
    {
        ("metadata", "uid"),
        ("metadata", "resourceVersion"),
        ("metadata", "creationTimestamp"),
        ("metadata", "managedFields"),
        ("metadata", "generation"),
        ("metadata", "selfLink"),
        ("status",),
    }
)
#: the fields an autoscaler owns on the workloads it scales
AUTOSCALED: frozenset[tuple[str, ...]] = frozenset({("spec", "replicas")})
#: what a difference that hides a value shows instead
HIDDEN = "(hidden)"


def differences(
    expected: Mapping[str, Any], live: Mapping[str, Any], *, ignore: Iterable[tuple[str, ...]] = ()
) -> list[FieldChange]:
    """The fields of ``expected`` that ``live`` lacks (``removed``: the snapshot had it, the
    live object does not) or holds with another value (``changed``: old is the snapshot's,
    new the live one). ``ignore``: more paths (tuples of keys) that are not compared."""
    out: list[FieldChange] = []
    _subset(expected, live, (), "", out, SERVER_SET | frozenset(ignore))
    return out


def autoscaled(objects: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """``(kind, namespace, name)`` of the workloads the HorizontalPodAutoscalers among
    ``objects`` scale."""
    out = set()
    for obj in objects:
        if obj.get("kind") != "HorizontalPodAutoscaler":
            continue
        ref = (obj.get("spec") or {}).get("scaleTargetRef")
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        if isinstance(ref, Mapping) and ref.get("kind") and ref.get("name"):
            out.add((str(ref["kind"]), str(namespace), str(ref["name"])))
    return out


def hide_values(changes: list[FieldChange], kind: str) -> list[FieldChange]:
    """``changes`` with a Secret's data values replaced by ``HIDDEN`` (reports are printed and
    stored; a Secret's values have no place in them)."""
    if kind != "Secret":
        return changes
    hidden = []
    for c in changes:
        if c.path.split(".", 1)[0].split("[", 1)[0] in ("data", "stringData"):
            c = FieldChange(c.path, c.op, HIDDEN if c.op != ADDED else None, HIDDEN if c.op != REMOVED else None)
        hidden.append(c)
    return hidden


def _subset(
    a: Any, b: Any, keys: tuple[str, ...], path: str, out: list[FieldChange], skip: frozenset[tuple[str, ...]]
) -> None:
    if keys in skip:
        return
    if isinstance(a, Mapping):
        if not isinstance(b, Mapping):
            out.append(FieldChange(path, CHANGED, old=a, new=b))
            return
        for k, v in a.items():
            k = str(k)
            p = join_path(path, k)
            if (*keys, k) in skip:
                continue
            if k not in b:
                out.append(FieldChange(p, REMOVED, old=v))
            else:
                _subset(v, b[k], (*keys, k), p, out, skip)
        return
    if isinstance(a, list) and a and all(isinstance(x, Mapping) for x in a):
        if not isinstance(b, list) or not all(isinstance(x, Mapping) for x in b):
            out.append(FieldChange(path, CHANGED, old=a, new=b))
            return
        _subset_list(a, b, keys, path, out, skip)
        return
    if a != b:
        out.append(FieldChange(path, CHANGED, old=a, new=b))


def _subset_list(
    a: list[Any],
    b: list[Any],
    keys: tuple[str, ...],
    path: str,
    out: list[FieldChange],
    skip: frozenset[tuple[str, ...]],
) -> None:
    key = list_key(a, b)
    if key is not None:
        live = {x[key]: x for x in b}
        for item in a:
            p = f"{path}[{key}={item[key]}]"
            if item[key] not in live:
                out.append(FieldChange(p, REMOVED, old=item))
            else:
                _subset(item, live[item[key]], (*keys, "*"), p, out, skip)
        return
    if len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _subset(x, y, (*keys, "*"), f"{path}[{i}]", out, skip)
        return
    unused = list(range(len(b)))
    for i, item in enumerate(a):
        match = next((j for j in unused if _matches(item, b[j], (*keys, "*"), skip)), None)
        if match is None:
            out.append(FieldChange(f"{path}[{i}]", REMOVED, old=item))
        else:
            unused.remove(match)


def _matches(a: Any, b: Any, keys: tuple[str, ...], skip: frozenset[tuple[str, ...]]) -> bool:
    found: list[FieldChange] = []
    _subset(a, b, keys, "", found, skip)
    return not found
