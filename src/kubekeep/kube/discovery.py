"""Which API groups and resources a cluster serves, and in which version.

Uses aggregated discovery (two requests, Kubernetes 1.27+) and falls back to one request per
group version on older servers. Built-in groups, CRDs and aggregated APIs look the same here;
a group version whose discovery fails (an aggregated API server that is down answers 503, or
is marked stale) is recorded in ``errors`` and its resources are missing, nothing else is lost.

For each group the versions are taken in the server's order of preference and each resource
once, at the first version that serves it (as ``kubectl api-resources`` does). ``served`` keeps
every version of each resource, preferred first (a restore sends an object stored at a version
the target does not serve at the one it prefers); it is not part of ``to_json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubekeep import errors
from kubekeep.kube.requesting import Session, api_path

AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


@dataclass(frozen=True, slots=True)
class ApiResource:
    group: str
    version: str
    resource: str  # plural name, as in the URL
    kind: str
    namespaced: bool
    verbs: frozenset[str]
    singular: str = ""
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def listable(self) -> bool:
        return "list" in self.verbs

    @property
    def full_name(self) -> str:
        """``resource.group`` as kubectl writes it (``deployments.apps``, ``configmaps``)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        return api_path(
            self.group, self.version, self.resource, namespace=namespace, name=name, subresource=subresource
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "version": self.version,
            "resource": self.resource,
            "kind": self.kind,
            "namespaced": self.namespaced,
            "verbs": sorted(self.verbs),
            "singular": self.singular,
            "shortNames": list(self.short_names),
            "subresources": list(self.subresources),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApiResource:
        return cls(
            d["group"],
            d["version"],
            d["resource"],
            d["kind"],
            bool(d["namespaced"]),
            frozenset(d.get("verbs", ())),
            d.get("singular", ""),
            tuple(d.get("shortNames", ())),
            tuple(d.get("subresources", ())),
        )


@dataclass
class Discovery:
    resources: list[ApiResource] = field(default_factory=list)  # one per (group, resource)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> versions, preferred first
    errors: dict[str, str] = field(default_factory=dict)  # "group/version" -> what failed
    method: str = "aggregated"
    #: (group, resource) -> every version serving it, preferred first (not in ``to_json``)
    served: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def find(self, group: str, resource: str) -> ApiResource | None:
        for r in self.resources:
            if r.group == group and r.resource == resource:
                return r
        return None

    def to_json(self) -> bytes:
        """Deterministic JSON (the snapshot's ``discovery.json``)."""
        body = {
            "method": self.method,
            "groups": [{"name": g, "versions": v} for g, v in sorted(self.groups.items())],
            "resources": [r.to_dict() for r in sorted(self.resources, key=lambda r: (r.group, r.resource))],
            "errors": dict(sorted(self.errors.items())),
        }
        return orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Discovery:
        body = orjson.loads(data)
        return cls(
            [ApiResource.from_dict(r) for r in body.get("resources", [])],
            {g["name"]: list(g["versions"]) for g in body.get("groups", [])},
            dict(body.get("errors", {})),
            body.get("method", ""),
        )


def discover(session: Session, *, workers: int = 8) -> Discovery:
    """Discover the cluster's resources (see the module docstring)."""
    core = session.request("GET", "/api", accept=AGGREGATED_ACCEPT)
    if not core.ok:
        raise session.error("GET", "/api", core)
    if _is_aggregated(core):
        apis = session.call("GET", "/apis", accept=AGGREGATED_ACCEPT)
        if _is_aggregated(apis):
            return _from_aggregated([*core.json()["items"], *apis.json()["items"]])
    return _legacy(session, core.json(), workers)


def _is_aggregated(response: Any) -> bool:
    return "as=APIGroupDiscoveryList" in response.headers.get("Content-Type", "")


def _from_aggregated(items: Iterable[dict[str, Any]]) -> Discovery:
    d = Discovery(method="aggregated")
    seen: set[tuple[str, str]] = set()
    for item in items:
        group = (item.get("metadata") or {}).get("name", "")
        d.groups[group] = [v["version"] for v in item.get("versions", [])]
        for v in item.get("versions", []):
            version = v["version"]
            if v.get("freshness", "Current") != "Current":
                d.errors[_gv(group, version)] = (
                    "discovery information is stale: the API server behind this group version is not available"
                )
            for r in v.get("resources") or []:
                d.served.setdefault((group, r["resource"]), []).append(version)
                if (group, r["resource"]) in seen:
                    continue
                seen.add((group, r["resource"]))
                kind = (r.get("responseKind") or {}).get("kind", "")
                d.resources.append(
                    ApiResource(
                        group,
                        version,
                        r["resource"],
                        kind,
                        r.get("scope") == "Namespaced",
                        frozenset(r.get("verbs") or ()),
                        r.get("singularResource", ""),
                        tuple(r.get("shortNames") or ()),
                        tuple(s["subresource"] for s in r.get("subresources") or ()),
                    )
                )
    return d


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _legacy(session: Session, core: dict[str, Any], workers: int) -> Discovery:
    d = Discovery(method="legacy")
    d.groups[""] = list(core.get("versions") or ["v1"])
    for g in session.get("/apis").get("groups", []):
        preferred = (g.get("preferredVersion") or {}).get("version")
        versions = [v["version"] for v in g.get("versions", [])]
        d.groups[g["name"]] = sorted(versions, key=lambda v: v != preferred)  # preferred first, stable otherwise
    pairs = [(group, version) for group, versions in d.groups.items() for version in versions]
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="kubekeep-discovery") as pool:
        lists = list(pool.map(lambda gv: _resource_list(session, *gv), pairs))
    seen: set[tuple[str, str]] = set()
    subresources: dict[tuple[str, str, str], list[str]] = {}
    for (group, version), result in zip(pairs, lists, strict=True):
        if isinstance(result, str):
            d.errors[_gv(group, version)] = result
            continue
        for r in result:
            base, _, sub = r["name"].partition("/")
            if sub:
                subresources.setdefault((group, version, base), []).append(sub)
    for (group, version), result in zip(pairs, lists, strict=True):
        if isinstance(result, str):
            continue
        for r in result:
            if "/" not in r["name"]:
                d.served.setdefault((group, r["name"]), []).append(version)
            if "/" in r["name"] or (group, r["name"]) in seen:
                continue
            seen.add((group, r["name"]))
            d.resources.append(
                ApiResource(
                    group,
                    version,
                    r["name"],
                    r.get("kind", ""),
                    bool(r.get("namespaced")),
                    frozenset(r.get("verbs") or ()),
                    r.get("singularName", ""),
                    tuple(r.get("shortNames") or ()),
                    tuple(subresources.get((group, version, r["name"]), ())),
                )
            )
    return d


def _resource_list(session: Session, group: str, version: str) -> list[dict[str, Any]] | str:
    path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    try:
        return list(session.get(path).get("resources") or [])
    except errors.ApiError as exc:
        return str(exc)
