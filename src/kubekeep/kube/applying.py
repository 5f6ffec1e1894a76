"""Writing arbitrary objects: create, server-side apply, status and metadata patches, and the
server-side dry-run of each (``dryRun=All``: admission and validation run, nothing is stored).

Functions take the REST coordinates (group, version, resource plural, namespace, name) so any
type works, built-in or custom, without the client library's typed APIs. They return the raw
``Response`` (the restore reports every status) except ``get``.
"""

from __future__ import annotations

from typing import Any

import orjson

from kubekeep.kube.requesting import APPLY_PATCH, MERGE_PATCH, Response, Session, api_path

FIELD_MANAGER = "kubekeep"


def _query(dry_run: bool, field_validation: str = "", **extra: Any) -> dict[str, Any]:
    q: dict[str, Any] = {"fieldManager": FIELD_MANAGER, **extra}
    if dry_run:
        q["dryRun"] = "All"
    if field_validation:  # Strict: a field the server does not know is an error, not a warning
        q["fieldValidation"] = field_validation
    return q


def create(
    session: Session,
    group: str,
    version: str,
    resource: str,
    obj: dict[str, Any],
    *,
    namespace: str = "",
    dry_run: bool = False,
    field_validation: str = "",
) -> Response:
    """POST ``obj`` to its collection (201 created, 409 if it exists)."""
    path = api_path(group, version, resource, namespace=namespace)
    return session.request("POST", path, query=_query(dry_run, field_validation), body=orjson.dumps(obj))


def apply(
    session: Session,
    group: str,
    version: str,
    resource: str,
    obj: dict[str, Any],
    *,
    namespace: str = "",
    dry_run: bool = False,
    field_validation: str = "",
) -> Response:
    """Server-side apply ``obj`` as field manager ``kubekeep``, taking over conflicting fields
    (201 if it created the object, 200 if it updated it)."""
    name = obj["metadata"]["name"]
    path = api_path(group, version, resource, namespace=namespace, name=name)
    return session.request(
        "PATCH",
        path,
        query=_query(dry_run, field_validation, force="true"),
        body=orjson.dumps(obj),
        content_type=APPLY_PATCH,
    )


def patch(
    session: Session,
    group: str,
    version: str,
    resource: str,
    name: str,
    body: dict[str, Any],
    *,
    namespace: str = "",
    subresource: str = "",
    dry_run: bool = False,
) -> Response:
    """JSON merge patch of an object (or of its ``status`` subresource)."""
    path = api_path(group, version, resource, namespace=namespace, name=name, subresource=subresource)
    return session.request("PATCH", path, query=_query(dry_run), body=orjson.dumps(body), content_type=MERGE_PATCH)


def get(
    session: Session, group: str, version: str, resource: str, name: str, *, namespace: str = ""
) -> dict[str, Any] | None:
    """The live object, or None if it does not exist; other errors raise ``ApiError``."""
    return session.get_or_none(api_path(group, version, resource, namespace=namespace, name=name))
