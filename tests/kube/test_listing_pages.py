"""Paginated lists converted page by page (``listing.list_mapped``): each page's parsed objects
are converted before the next page is asked for, so a backup holds one page of parsed objects
at a time, not a whole resource's; an expired continue token still yields one consistent list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from kubekeep import errors
from kubekeep.kube import listing
from kubekeep.kube.discovery import ApiResource
from kubekeep.kube.requesting import Response, Session

CONFIGMAPS = ApiResource("", "v1", "configmaps", "ConfigMap", True, frozenset({"list"}))


class PagedServer(Session):
    """A session answering lists of ``total`` ConfigMaps ``limit`` at a time, recording for each
    request how many objects had been converted by then; ``expire_at`` answers that many-th
    request with 410 Gone (once)."""

    def __init__(self, total: int, expire_at: int = 0) -> None:  # no cluster: requests are answered here
        self.total = total
        self.expire_at = expire_at
        self.converted = 0
        self.seen_at_request: list[tuple[int, int]] = []  # (offset asked for, objects converted by then)

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, **_: Any) -> Response:
        query = query or {}
        offset = int(query.get("continue") or 0)
        self.seen_at_request.append((offset, self.converted))
        if self.expire_at and len(self.seen_at_request) == self.expire_at:
            self.expire_at = 0
            return Response(410, b'{"kind":"Status","reason":"Expired","message":"too old"}', {})
        end = min(offset + int(query["limit"]), self.total)
        items = [{"metadata": {"name": f"cm-{i:05d}", "namespace": "ns"}} for i in range(offset, end)]
        meta = {"continue": str(end)} if end < self.total else {}
        return Response(200, orjson.dumps({"items": items, "metadata": meta}), {})


def test_each_page_is_converted_before_the_next_is_fetched() -> None:
    server = PagedServer(total=1234)

    def convert(obj: dict[str, Any]) -> str | None:
        server.converted += 1
        name = str(obj["metadata"]["name"])
        return None if name.endswith("7") else name  # None: left out

    names = listing.list_mapped(server, CONFIGMAPS, convert, page_size=100)
    assert server.seen_at_request == [(offset, offset) for offset in range(0, 1234, 100)]
    assert names == [f"cm-{i:05d}" for i in range(1234) if i % 10 != 7]


def test_an_expired_continue_token_restarts_without_duplicates() -> None:
    server = PagedServer(total=450, expire_at=3)  # the third request (offset 200) expires
    names = listing.list_mapped(server, CONFIGMAPS, lambda obj: obj["metadata"]["name"], page_size=100)
    assert names == [f"cm-{i:05d}" for i in range(450)]  # the first attempt's 200 are not kept
    assert [offset for offset, _ in server.seen_at_request] == [0, 100, 200, 0, 100, 200, 300, 400]


def test_list_all_still_gives_whole_objects_with_kind() -> None:
    items = listing.list_all(PagedServer(total=3), CONFIGMAPS, page_size=2)
    assert [(o["kind"], o["apiVersion"], o["metadata"]["name"]) for o in items] == [
        ("ConfigMap", "v1", f"cm-{i:05d}") for i in range(3)
    ]


def test_a_token_that_expires_twice_is_an_error() -> None:
    class AlwaysExpiring(PagedServer):
        def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, **kw: Any) -> Response:
            if query and query.get("continue"):
                return Response(410, b"{}", {})
            return super().request(method, path, query=query, **kw)

    with pytest.raises(errors.ApiError, match="expired twice"):
        listing.list_mapped(AlwaysExpiring(total=300), CONFIGMAPS, lambda obj: obj, page_size=100)
