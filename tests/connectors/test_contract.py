"""The contract every importer and exporter honours (``kubekeep.engine.entries``), run per
connector (``contract_cases.py``), as ``tests/storage/test_backend_contract.py`` is per backend.

Importers: entries in pre-order with contiguous subtrees and clean relative paths, each file's
content given one way, ``source()`` naming the kind and a URI of the importer's scheme,
msgpack-plain attrs and metadata, warnings as strings, ``close()`` called by ``with`` and safe
twice. Exporters: a snapshot taken by an importer and restored by the engine comes back as it
was; a file whose data fails verification leaves nothing behind; an entry the destination
cannot take is ``EntryFailed`` and the exporter goes on; ``finish()`` gives strings and
``results()`` a list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep import connectors, errors
from kubekeep.engine.backup import run_backup
from kubekeep.engine.entries import Entry, EntryType, Exporter, Importer, SourceInfo
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import run_restore
from kubekeep.storage.local import LocalBackend
from tests.cli.helpers import FAST_KDF

from .contract_cases import EXPORTER_CASES, IMPORTER_CASES, LEFT_OUT, ExporterCase, ImporterCase


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = Repository.init(LocalBackend(tmp_path / "repo"), "pw", kdf=FAST_KDF, no_cache=True)
    yield r
    r.close()


# -- checks ---------------------------------------------------------------------------------------


def tree_problems(entries: Iterable[Entry]) -> list[str]:
    """What breaks the importer's order: bad paths, duplicates, a directory after something under
    it, a subtree split in two runs, anything under a file or symlink."""
    problems: list[str] = []
    seen: set[str] = set()
    leaves: set[str] = set()  # files and symlinks
    implied: set[str] = set()  # directories something was yielded under
    stack: list[str] = []  # the directories (yielded or implied) the walk is in
    left: set[str] = set()  # directories the walk is done with
    for e in entries:
        p = e.path
        parts = p.split("/")
        if not p or p.startswith("/") or any(part in ("", ".", "..") for part in parts):
            problems.append(f"{p!r}: not a clean relative path")
            continue
        if p in seen:
            problems.append(f"{p}: yielded twice")
        seen.add(p)
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        while stack and stack[-1] not in ancestors:
            left.add(stack.pop())
        for a in ancestors:
            if a in left:
                problems.append(f"{p}: under {a}, whose subtree was already left")
            if a in leaves:
                problems.append(f"{p}: under {a}, which is not a directory")
            if a not in stack:
                stack.append(a)
            implied.add(a)
        if e.type == EntryType.DIR:
            if p in implied:
                problems.append(f"{p}: a directory yielded after something under it")
            stack.append(p)
        else:
            leaves.add(p)
    return problems


PLAIN = (str, int, float, bool, bytes, type(None))


def plain_problems(value: Any, where: str = "") -> list[str]:
    """Where ``value`` is not msgpack-plain: str keys; str, int, float, bool, None, bytes, and
    lists and dicts of those (a tuple or a set would not come back as it went)."""
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if not isinstance(k, str):
                out.append(f"{where}: key {k!r} is not a str")
            out += plain_problems(v, f"{where}.{k}")
        return out
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in plain_problems(v, f"{where}[{i}]")]
    return [] if isinstance(value, PLAIN) else [f"{where}: {type(value).__name__} {value!r}"]


def test_the_checks_catch_what_they_look_for() -> None:
    def e(path: str, kind: EntryType = EntryType.FILE) -> Entry:
        return Entry(path, kind)

    d = EntryType.DIR
    assert tree_problems([e("a", d), e("a/x"), e("b", d), e("b/c", d), e("b/c/y"), e("b/z"), e("q/r")]) == []
    assert tree_problems([e("a/x"), e("a", d)]) == ["a: a directory yielded after something under it"]
    assert tree_problems([e("a/x"), e("b/y"), e("a/z")]) == ["a/z: under a, whose subtree was already left"]
    assert tree_problems([e("a"), e("a/x")]) == ["a/x: under a, which is not a directory"]
    assert tree_problems([e("x"), e("x")]) == ["x: yielded twice"]
    assert len(tree_problems([e("/x"), e("a/../x"), e("a//x"), e("./x"), e("a/")])) == 5
    assert plain_problems({"a": [1, 2.5, None, b"x", {"b": True}]}) == []
    assert plain_problems({"a": (1,), 2: "x", "s": {1}}) == [".a: tuple (1,)", ": key 2 is not a str", ".s: set {1}"]


# -- importers ------------------------------------------------------------------------------------


def entries_of(importer: Importer) -> list[Entry]:
    """As the engine asks: source() first, then entries()."""
    importer.source()
    return list(importer.entries())


def test_entries_form_a_pre_order_tree(importer_case: ImporterCase) -> None:
    with importer_case.open() as imp:
        entries = entries_of(imp)
    assert any(e.type == EntryType.FILE for e in entries)
    assert tree_problems(entries) == []


def test_source_names_its_kind_and_a_uri_of_its_scheme(importer_case: ImporterCase) -> None:
    with importer_case.open() as imp:
        source = imp.source()
    assert isinstance(source, SourceInfo) and source.kind == importer_case.kind
    # a later backup finds its parent by this URI; the registry opens it with the same module
    assert connectors.scheme_of(source.uri) == imp.scheme
    assert connectors.IMPORTERS[imp.scheme] == connectors.IMPORTERS[importer_case.scheme]
    assert isinstance(source.host, str) and plain_problems(source.extra) == []


def test_each_file_gives_its_content_one_way(importer_case: ImporterCase) -> None:
    with importer_case.open() as imp:
        for e in entries_of(imp):
            assert plain_problems(e.attrs, e.path) == []
            given = [x for x in (e.data, e.opener, e.chunks) if x is not None]
            if e.type != EntryType.FILE:
                assert given == [], e.path
                assert bool(e.target) == (e.type == EntryType.SYMLINK), e.path
                continue
            assert len(given) == 1 and e.target == "", e.path
            if e.data is not None:
                assert isinstance(e.data, bytes) and len(e.data) == e.size, e.path
            elif e.opener is not None:
                with e.opener() as stream:
                    while piece := stream.read(1 << 20):
                        assert isinstance(piece, bytes)


def test_metadata_and_warnings_once_entries_are_done(importer_case: ImporterCase) -> None:
    with importer_case.open() as imp:
        for e in entries_of(imp):
            if e.opener is not None:
                with e.opener() as stream:
                    while stream.read(1 << 20):
                        pass
        metadata = imp.metadata()
        warnings = imp.warnings()
    assert isinstance(metadata, dict) and plain_problems(metadata) == []
    assert isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)


def test_with_closes_the_importer_and_close_is_safe_twice(
    importer_case: ImporterCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    imp = importer_case.open()
    assert_with_closes(imp, lambda: entries_of(imp), monkeypatch)


# -- exporters ------------------------------------------------------------------------------------


def test_a_snapshot_restored_by_the_engine_comes_back_as_taken(
    exporter_case: ExporterCase, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    with exporter_case.source() as imp:
        snap = run_backup(repo, imp)
    exp = exporter_case.open()
    finish = exp.finish
    finished: list[Any] = []
    monkeypatch.setattr(exp, "finish", lambda: finished.append(finish()) or finished[-1])
    with exp:
        stats = run_restore(repo, snap, exp, include=exporter_case.include)
    expected = exporter_case.expected()
    assert expected and exporter_case.written() == expected
    [warnings] = finished
    assert isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)
    assert isinstance(stats.results, list) and all(isinstance(r, dict) for r in stats.results)


def _failing(content: bytes) -> Iterator[bytes]:
    yield content[:2]
    raise errors.IntegrityError("blob 0123abcd failed verification")


def _directories(exp: Exporter, entry: Entry) -> None:
    """What the engine does first: the directories above ``entry``."""
    parts = entry.path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        exp.directory(Entry("/".join(parts[:i]), EntryType.DIR, mode=0o755))


def test_a_file_whose_data_fails_verification_leaves_nothing(exporter_case: ExporterCase) -> None:
    bad, bad_content, bad_key = exporter_case.sample("damaged")
    good, good_content, good_key = exporter_case.sample("intact")
    with exporter_case.open() as exp:
        exp.begin(exporter_case.takes, {})
        _directories(exp, bad)
        with pytest.raises(errors.IntegrityError):
            exp.file(bad, _failing(bad_content))
        _directories(exp, good)
        exp.file(good, iter([good_content]))
        exp.finish()
    held = exporter_case.written()
    assert good_key in held and bad_key not in held


def test_an_entry_it_cannot_write_is_entry_failed_and_the_rest_goes_on(
    exporter_case: ExporterCase, request: pytest.FixtureRequest
) -> None:
    if exporter_case.blocked is None:
        pytest.skip(exporter_case.why)
    if exporter_case.why:
        request.applymarker(pytest.mark.xfail(strict=True, reason=exporter_case.why))
    entry, content = exporter_case.blocked()
    good, good_content, good_key = exporter_case.sample("after")
    with exporter_case.open() as exp:
        exp.begin(exporter_case.takes, {})
        _directories(exp, entry)
        with pytest.raises(errors.EntryFailed):
            if entry.type == EntryType.DIR:
                exp.directory(entry)
            else:
                exp.file(entry, iter([content]))
        _directories(exp, good)
        exp.file(good, iter([good_content]))
        warnings = exp.finish()
    assert isinstance(warnings, list) and good_key in exporter_case.written()


def test_an_empty_restore_finishes_with_warnings_and_results(exporter_case: ExporterCase) -> None:
    with exporter_case.open() as exp:
        exp.begin(exporter_case.takes, {})
        warnings = exp.finish()
        results = exp.results()
    assert isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)
    assert isinstance(results, list) and all(isinstance(r, dict) for r in results)


def test_with_closes_the_exporter_and_close_is_safe_twice(
    exporter_case: ExporterCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = exporter_case.open()
    assert_with_closes(exp, lambda: exp.begin(exporter_case.takes, {}), monkeypatch)


def assert_with_closes(
    connector: Importer | Exporter, use: Callable[[], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``with connector:`` calls ``close()`` once, and the real ``close()`` may run twice more."""
    close = connector.close
    calls: list[str] = []
    monkeypatch.setattr(connector, "close", lambda: calls.append("close"))
    with connector:
        use()
    assert calls == ["close"]
    close()
    close()


# -- coverage -------------------------------------------------------------------------------------


def test_every_registered_connector_runs_the_contract_or_says_why_not() -> None:
    for table, cases in ((connectors.IMPORTERS, IMPORTER_CASES), (connectors.EXPORTERS, EXPORTER_CASES)):
        modules = set(table.values())  # etcd: and etcds: are one module
        assert modules == {table[s] for s in [*cases, *LEFT_OUT] if s in table}
        assert not set(LEFT_OUT) & set(cases)
