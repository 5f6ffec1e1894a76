"""Where an object lives in a manifests snapshot (docs/manifests.md, "Tree layout").

::

    cluster/<group>/<resource>/<name>.yaml                  cluster-scoped objects
    namespaces/<namespace>/<group>/<resource>/<name>.yaml   namespaced objects
    discovery.json                                          the API's groups and resources
    version.json                                            the API server's /version

``<group>`` is the API group, ``core`` for the legacy group (``""``); ``<resource>`` the plural
resource name. Versions are not part of the path, so an object keeps its path when the cluster
changes the version it prefers. Namespace objects are cluster-scoped:
``cluster/core/namespaces/<name>.yaml``.

Each object's tree node carries ``attrs`` (kind, apiVersion, group, resource, namespace, name,
labels) so that listing, selection and planning work without reading the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CLUSTER_DIR = "cluster"
NAMESPACES_DIR = "namespaces"
CORE_GROUP = "core"
SUFFIX = ".yaml"
DISCOVERY_FILE = "discovery.json"
VERSION_FILE = "version.json"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Identity of one stored object: group, resource, namespace ("" if cluster-scoped), name."""

    group: str
    resource: str
    namespace: str
    name: str

    @property
    def path(self) -> str:
        return object_path(self.group, self.resource, self.namespace, self.name)


def group_dir(group: str) -> str:
    return group or CORE_GROUP


def group_of_dir(name: str) -> str:
    return "" if name == CORE_GROUP else name


def check_name(name: str) -> str:
    """``name`` if it is usable as one path component (the API forbids ``/``, ``.`` and ``..``)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"object name {name!r} cannot be stored as a file name")
    return name


def object_path(group: str, resource: str, namespace: str, name: str) -> str:
    """Snapshot path of an object (relative, no leading slash)."""
    file = check_name(name) + SUFFIX
    if namespace:
        return f"{NAMESPACES_DIR}/{check_name(namespace)}/{group_dir(group)}/{resource}/{file}"
    return f"{CLUSTER_DIR}/{group_dir(group)}/{resource}/{file}"


def parse_path(path: str) -> ObjectRef | None:
    """The object a snapshot path names, or None if it is not an object path."""
    parts = path.strip("/").split("/")
    if not parts[-1].endswith(SUFFIX):
        return None
    name = parts[-1][: -len(SUFFIX)]
    if len(parts) == 4 and parts[0] == CLUSTER_DIR:
        return ObjectRef(group_of_dir(parts[1]), parts[2], "", name)
    if len(parts) == 5 and parts[0] == NAMESPACES_DIR:
        return ObjectRef(group_of_dir(parts[2]), parts[3], parts[1], name)
    return None


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> ``("apps", "v1")``; ``v1`` -> ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


def object_attrs(obj: Mapping[str, Any], group: str, resource: str) -> dict[str, Any]:
    """The tree attributes of a stored object."""
    meta = obj.get("metadata") or {}
    attrs: dict[str, Any] = {
        "kind": obj.get("kind", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "group": group,
        "resource": resource,
        "name": meta.get("name", ""),
    }
    if meta.get("namespace"):
        attrs["namespace"] = meta["namespace"]
    if meta.get("labels"):
        attrs["labels"] = dict(meta["labels"])
    return attrs


def ref_of_attrs(attrs: Mapping[str, Any]) -> ObjectRef | None:
    """The object a node's attrs describe, or None for nodes that are not objects."""
    if "kind" not in attrs or "resource" not in attrs:
        return None
    return ObjectRef(attrs.get("group", ""), attrs["resource"], attrs.get("namespace") or "", attrs.get("name", ""))


def remap_path(path: str, namespace_map: Mapping[str, str]) -> str:
    """``path`` with a mapped namespace: ``namespaces/old/...`` -> ``namespaces/new/...`` and
    ``cluster/core/namespaces/old.yaml`` -> ``.../new.yaml``. Other paths are unchanged."""
    if not namespace_map:
        return path
    parts = path.split("/")
    if len(parts) >= 2 and parts[0] == NAMESPACES_DIR and parts[1] in namespace_map:
        parts[1] = namespace_map[parts[1]]
    elif len(parts) == 4 and parts[:3] == [CLUSTER_DIR, CORE_GROUP, "namespaces"] and parts[3].endswith(SUFFIX):
        old = parts[3][: -len(SUFFIX)]
        if old in namespace_map:
            parts[3] = namespace_map[old] + SUFFIX
    return "/".join(parts)
