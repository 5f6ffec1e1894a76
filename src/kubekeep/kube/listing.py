"""Listing every object of a resource, page by page, as plain dicts.

Each page is parsed with orjson (the client library's model classes cost ~10x more); items get
the ``apiVersion`` and ``kind`` that list responses leave out for built-in types. A continue
token that expires mid-list (410 Gone, on very large or slow lists) restarts the list once
from the beginning, so a result is always one consistent list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson

from kubekeep import errors
from kubekeep.kube.discovery import ApiResource
from kubekeep.kube.requesting import Session

PAGE_SIZE = 500
T = TypeVar("T")


class _Expired(Exception):
    """The continue token of a paginated list expired."""


def list_pages(
    session: Session,
    resource: ApiResource,
    *,
    namespace: str = "",
    label_selector: str = "",
    page_size: int = PAGE_SIZE,
) -> Iterator[list[dict[str, Any]]]:
    """Pages of ``resource``'s objects (in ``namespace``, or all namespaces); raises
    ``_Expired`` if the list's continue token expires (``list_all`` handles it)."""
    path = resource.path(namespace=namespace)
    token = ""
    while True:
        query = {"limit": page_size, "continue": token or None, "labelSelector": label_selector or None}
        response = session.request("GET", path, query=query)
        if response.status == 410 and token:
            raise _Expired(path)
        if not response.ok:
            raise session.error("GET", path, response)
        body = orjson.loads(response.data)
        items = body.get("items") or []
        for item in items:
            if "kind" not in item:
                item["apiVersion"] = resource.api_version
                item["kind"] = resource.kind
        yield items
        token = (body.get("metadata") or {}).get("continue") or ""
        if not token:
            return


def list_all(
    session: Session,
    resource: ApiResource,
    *,
    namespace: str = "",
    label_selector: str = "",
    page_size: int = PAGE_SIZE,
) -> list[dict[str, Any]]:
    """Every object of ``resource`` as one consistent list (see ``list_pages``)."""
    return list_mapped(
        session, resource, lambda item: item, namespace=namespace, label_selector=label_selector, page_size=page_size
    )


def list_mapped(
    session: Session,
    resource: ApiResource,
    convert: Callable[[dict[str, Any]], T | None],
    *,
    namespace: str = "",
    label_selector: str = "",
    page_size: int = PAGE_SIZE,
) -> list[T]:
    """``convert`` of every object of ``resource`` (``None`` results left out), one consistent
    list like ``list_all``'s; each page is converted as it arrives and then dropped, so only one
    page of parsed objects is held at a time rather than the whole resource's (at 30,000 objects
    a backup's peak memory was the parsed lists of its largest resources)."""
    for attempt in (1, 2):
        items: list[T] = []
        try:
            for page in list_pages(
                session, resource, namespace=namespace, label_selector=label_selector, page_size=page_size
            ):
                for item in page:
                    converted = convert(item)
                    if converted is not None:
                        items.append(converted)
                del page
            return items
        except _Expired:
            if attempt == 2:
                raise errors.ApiError(
                    f"GET {resource.path(namespace=namespace)}: the list's continue token "
                    "expired twice (the resource changes too fast to page through)",
                    status=410,
                    reason="Expired",
                ) from None
    raise AssertionError("unreachable")
