"""Small sealed records kept beside the snapshots (run records, drill reports).

Each lives at ``<prefix>/<id>``, its id the content name of its sealed bytes, its body bound to
its kind by the AAD (docs/format.md). Loading checks the name against the content before
unsealing; a damaged record is reported, never fatal to the others.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol, TypeVar

from kubekeep import errors
from kubekeep.engine import objects
from kubekeep.engine.repository import Repository


class Record(Protocol):
    id: str


R = TypeVar("R", bound=Record)


def load(repo: Repository, name: str, aad: bytes, what: str, parse: Callable[[object, str], R]) -> R:
    """The record stored as ``name``; ``parse(body, id)`` checks and builds it."""
    record_id = name.split("/", 1)[1]
    data = repo.backend.load(name)
    if objects.content_name(data) != record_id:
        raise errors.IntegrityError(f"{what} {record_id[:8]}: content does not match its name")
    return parse(objects.unseal(repo.cipher, data, aad, name), record_id)


def load_all(
    repo: Repository, prefix: str, aad: bytes, what: str, parse: Callable[[object, str], R]
) -> tuple[list[R], list[str]]:
    """Every readable record under ``prefix`` (in listing order), and a line for each one that is not."""
    records: list[R] = []
    damaged: list[str] = []
    for info in repo.backend.list(f"{prefix}/"):
        try:
            records.append(load(repo, info.name, aad, what, parse))
        except errors.ObjectNotFound:
            continue  # pruned meanwhile
        except errors.IntegrityError as exc:
            damaged.append(str(exc))
    return records, damaged


def prune(
    repo: Repository, prefix: str, records: list[R], key: Callable[[R], Hashable], *, keep: int, dry_run: bool
) -> int:
    """Delete all but the newest ``keep`` of ``records`` (oldest first) with the same ``key``;
    returns how many go."""
    groups: dict[Hashable, list[R]] = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    old = [r for group in groups.values() for r in group[:-keep]]
    if dry_run:
        return len(old)
    removed = 0
    for r in old:
        try:
            repo.backend.delete(f"{prefix}/{r.id}")
            removed += 1
        except errors.DeleteRefused:
            continue  # still locked (Object Lock): a later prune removes it
    return removed
