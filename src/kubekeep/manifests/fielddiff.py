"""Field-level differences between two versions of an object.

Paths read like ``spec.template.spec.containers[name=app].image`` or
``metadata.labels["app.kubernetes.io/name"]``: list items that carry a ``name`` (containers,
ports, env, volumes) or a ``type`` (conditions) are matched by it, so inserting a container does
not report every later container as changed; other lists of objects are compared by position,
lists of scalars as a whole.

By default churn is ignored: what changes without anyone changing the object's meaning
(``resourceVersion``, ``managedFields``, ``generation``, ``observedGeneration``, heartbeat and
probe times, the last-applied-configuration copy of the spec, a Lease's renew time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"

#: Exact paths (as tuples of keys) that are churn.
CHURN_PATHS: frozenset[tuple[str, ...]] = frozenset(
    {
        ("metadata", "resourceVersion"),
        ("metadata", "managedFields"),
        ("metadata", "generation"),
        ("metadata", "selfLink"),
        ("metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"),
        ("spec", "renewTime"),
    }
)
#: Keys that are churn wherever they appear.
CHURN_KEYS: frozenset[str] = frozenset({"observedGeneration", "lastHeartbeatTime", "lastProbeTime", "lastUpdateTime"})
_LIST_KEYS = ("name", "type")
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    op: str  # added, removed, changed
    old: Any = None
    new: Any = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "op": self.op}
        if self.op != ADDED:
            d["old"] = self.old
        if self.op != REMOVED:
            d["new"] = self.new
        return d


def diff_objects(old: dict[str, Any], new: dict[str, Any], *, churn: bool = False) -> list[FieldChange]:
    """What changed from ``old`` to ``new``; churn included only if ``churn``."""
    changes: list[FieldChange] = []
    _diff(old, new, (), "", changes, churn)
    return changes


def _join(path: str, key: str) -> str:
    if _SIMPLE_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def _diff(a: Any, b: Any, keys: tuple[str, ...], path: str, out: list[FieldChange], churn: bool) -> None:
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            sub = (*keys, k)
            if not churn and (k in CHURN_KEYS or sub in CHURN_PATHS):
                continue
            p = _join(path, k)
            if k not in b:
                out.append(FieldChange(p, REMOVED, old=a[k]))
            elif k not in a:
                out.append(FieldChange(p, ADDED, new=b[k]))
            else:
                _diff(a[k], b[k], sub, p, out, churn)
        return
    if isinstance(a, list) and isinstance(b, list) and (a or b) and all(isinstance(x, dict) for x in a + b):
        key = _list_key(a, b)
        if key is not None:
            old = {x[key]: x for x in a}
            new = {x[key]: x for x in b}
            for name in list(old) + [n for n in new if n not in old]:
                p = f"{path}[{key}={name}]"
                if name not in new:
                    out.append(FieldChange(p, REMOVED, old=old[name]))
                elif name not in old:
                    out.append(FieldChange(p, ADDED, new=new[name]))
                else:
                    _diff(old[name], new[name], (*keys, "*"), p, out, churn)
            return
        for i in range(max(len(a), len(b))):
            p = f"{path}[{i}]"
            if i >= len(b):
                out.append(FieldChange(p, REMOVED, old=a[i]))
            elif i >= len(a):
                out.append(FieldChange(p, ADDED, new=b[i]))
            else:
                _diff(a[i], b[i], (*keys, "*"), p, out, churn)
        return
    out.append(FieldChange(path, CHANGED, old=a, new=b))


def _list_key(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str | None:
    for key in _LIST_KEYS:
        for items in (a, b):
            values = [x.get(key) for x in items]
            if any(not isinstance(v, str) for v in values) or len(set(values)) != len(values):
                break
        else:
            return key
    return None


#: the path of ``key`` below ``path``, as the changes name it
join_path = _join
#: the key (``name`` or ``type``) by which two lists of objects are matched item by item, or None
list_key = _list_key
