"""The UI's pages over plain HTTP, without a cluster: file snapshots (paging, text, highlighted
JSON, binary downloads, symlinks, escaping, file diffs, errors) and small synthetic manifests
snapshots (hidden Secret values, the cluster view, object diffs, comparing)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from kubekeep import api
from kubekeep.engine.repository import Repository
from kubekeep.ui import rendering
from tests.ui.conftest import UIServer

ROW = re.compile(rb"<tr data-search=")


def _html(ui: UIServer, path: str, status: int = 200) -> str:
    code, _, body = ui.get(path)
    assert code == status, f"{path}: HTTP {code}: {body[:400]!r}"
    return body.decode()


@pytest.fixture
def files(
    make_repo: Callable[[str], Repository], ui_server: Callable[..., UIServer], tmp_path: Path
) -> tuple[UIServer, str, str]:
    src = tmp_path / "src"
    many = src / "many"
    many.mkdir(parents=True)
    for i in range(450):
        (many / f"f{i:03d}.txt").write_text(f"file {i}\n")
    (src / "notes.txt").write_text("line one\nline two\n")
    (src / "config.json").write_text('{"replicas": 2, "name": "web"}\n')
    blob = bytes(range(256)) * 40
    (src / "blob.bin").write_bytes(blob)
    (src / "<img src=x onerror=alert(1)>.txt").write_text("x")
    (src / "big.log").write_bytes(b"a" * (rendering.SHOW_LIMIT + 1))
    os.symlink("notes.txt", src / "link")
    repo = make_repo("repo")
    first = api.backup(repo, str(src))
    (src / "notes.txt").write_text("line one\nline 2\n")
    (many / "f000.txt").unlink()
    second = api.backup(repo, str(src))
    return ui_server(repo), first.id, second.id


def test_directory_pages_and_filter(files: tuple[UIServer, str, str]) -> None:
    ui, first, _ = files
    page1 = _html(ui, f"/s/{first}/tree/many/")
    assert len(ROW.findall(page1.encode())) == 200 and "page 1 of 3 (450 entries)" in page1
    assert "f000.txt" in page1 and "f199.txt" in page1 and "f200.txt" not in page1
    page3 = _html(ui, f"/s/{first}/tree/many/?page=3")
    assert len(ROW.findall(page3.encode())) == 50 and "f449.txt" in page3
    filtered = _html(ui, f"/s/{first}/tree/many/?q=f12")
    assert len(ROW.findall(filtered.encode())) == 10  # f120..f129
    assert _html(ui, f"/s/{first[:10]}", 303) == ""  # an id prefix redirects to the tree


def test_file_views(files: tuple[UIServer, str, str]) -> None:
    ui, first, _ = files
    text = _html(ui, f"/s/{first}/tree/notes.txt")
    assert "line one" in text and 'data-kind="text"' in text
    js = _html(ui, f"/s/{first}/tree/config.json")
    assert 'data-kind="json"' in js and 'class="hl"' in js and "replicas" in js
    binary = _html(ui, f"/s/{first}/tree/blob.bin")
    assert "Binary data" in binary and f"/s/{first}/raw/blob.bin" in binary
    code, headers, body = ui.get(f"/s/{first}/raw/blob.bin")
    assert code == 200 and body == bytes(range(256)) * 40
    assert headers["content-disposition"] == "attachment; filename*=UTF-8''blob.bin"
    assert headers["content-type"] == "application/octet-stream"
    assert "too large to show" in _html(ui, f"/s/{first}/tree/big.log")
    assert "Symbolic link to <code>notes.txt</code>" in _html(ui, f"/s/{first}/tree/link")
    root = _html(ui, f"/s/{first}/tree/")
    assert "<img src=x" not in root and "&lt;img src=x onerror=alert(1)&gt;.txt" in root


def test_file_snapshot_diff(files: tuple[UIServer, str, str]) -> None:
    ui, first, second = files
    page = _html(ui, f"/diff?a={first}&b={second}")
    assert re.search(r'data-path="notes.txt".*?>M<', page, re.DOTALL)
    assert re.search(r'data-path="many/f000.txt".*?>-<', page, re.DOTALL)
    sbs = _html(ui, f"/diff/object?a={first}&b={second}&path=notes.txt")
    assert re.search(
        r'<tr class="changed"><td class="ln">2</td><td class="old">line two</td>'
        r'<td class="ln">2</td><td class="new">line 2</td></tr>',
        sbs,
    )
    code, headers, _ = ui.get(f"/compare?s={second}&s={first}")
    assert code == 303 and headers["location"] == f"/diff?a={first}&b={second}"


def test_errors_are_one_line_pages(files: tuple[UIServer, str, str]) -> None:
    ui, first, _ = files
    assert "no snapshot matches &#39;ffffffff&#39;" in _html(ui, "/s/ffffffff/tree/", 404)
    assert f"no /nope in snapshot {first[:8]}" in _html(ui, f"/s/{first}/tree/nope", 404)
    assert "needs a manifests snapshot" in _html(ui, f"/s/{first}/cluster", 400)
    assert "missing parameter" in _html(ui, f"/diff?a={first}", 400)
    assert "exactly two snapshots" in _html(ui, f"/compare?s={first}", 400)


@pytest.fixture
def manifests(
    synthetic: None, make_repo: Callable[[str], Repository], ui_server: Callable[..., UIServer]
) -> tuple[UIServer, str, str]:
    repo = make_repo("repo")
    older = api.backup(repo, "synthetic://2")
    newer = api.backup(repo, "synthetic://2?generation=1")
    return ui_server(repo), older.id, newer.id


def test_secret_values_are_hidden_until_asked_for(manifests: tuple[UIServer, str, str]) -> None:
    ui, older, _ = manifests
    path = f"/s/{older}/tree/namespaces/team-000/core/secrets/credentials-0.yaml"
    hidden = _html(ui, path)
    assert "c2VjcmV0" not in hidden and "&lt;hidden:" in hidden
    assert "The values of this Secret are hidden (1)" in hidden
    assert "c2VjcmV0" in _html(ui, path + "?reveal=1")


def test_secret_values_are_hidden_in_diffs_until_asked_for(manifests: tuple[UIServer, str, str]) -> None:
    ui, older, newer = manifests
    path = "namespaces/team-000/core/secrets/credentials-0.yaml"
    page = _html(ui, f"/diff/object?a={older}&b={newer}&path={path}")
    assert "<code>data.password</code>" in page  # the field that changed is named ...
    assert "c2VjcmV0" not in page and "bmV3c2VjcmV0" not in page and "&lt;hidden:" in page  # ... not its values
    assert "The values of this Secret are hidden" in page
    shown = _html(ui, f"/diff/object?a={older}&b={newer}&path={path}&reveal=1")
    assert "c2VjcmV0" in shown and "bmV3c2VjcmV0" in shown


def test_cluster_view_of_a_namespace_and_the_overview(manifests: tuple[UIServer, str, str]) -> None:
    ui, older, newer = manifests
    overview = _html(ui, f"/s/{newer}/cluster")
    assert "team-000" in overview and "team-001" in overview and "node-2" in overview
    assert re.search(r'<tr class="bad">\s*<td><a href="\?ns=team-000">', overview)  # web-1 is not ready
    ns = _html(ui, f"/s/{newer}/cluster?ns=team-000")
    assert re.search(
        r'<tr class="bad">\s*<td>Deployment</td>\s*<td><a [^>]*>web-1</a></td>\s*'
        r'<td class="num">3</td><td class="num">0</td>',
        ns,
    )
    assert f'href="/s/{older}/cluster?ns=team-000"' in ns and 'id="timeline-prev"' in ns
    assert "namespace nowhere is not in snapshot" in _html(ui, f"/s/{newer}/cluster?ns=nowhere", 404)


def test_manifests_diff_and_churn(manifests: tuple[UIServer, str, str]) -> None:
    ui, older, newer = manifests
    page = _html(ui, f"/diff?a={older}&b={newer}")
    assert ">Added 1<" in page and ">Removed 1<" in page
    assert re.search(
        r'data-path="namespaces/team-000/apps/deployments/web-0.yaml".*?'
        r"spec.template.spec.containers\[name=app\].image",
        page,
        re.DOTALL,
    )
    only_changed = _html(ui, f"/diff?a={older}&b={newer}&status=M&q=web-1")
    assert "deployments/web-1.yaml" in only_changed and "config-new" not in only_changed
    fields = _html(ui, f"/diff/object?a={older}&b={newer}&path=namespaces/team-000/apps/deployments/web-1.yaml")
    assert re.search(
        r"<code>spec.replicas</code></td>\s*<td>changed</td>\s*"
        r'<td><pre class="value">1</pre></td>\s*<td><pre class="value">3</pre></td>',
        fields,
    )
    restore = _html(ui, f"/s/{older}/restore?path=namespaces/team-000/apps/deployments/web-1.yaml")
    assert 'name="csrf"' in restore and "Dry run" in restore


def test_restore_reports_hide_a_secrets_field_values() -> None:
    """The restore dialog lists what differs from the live object; for a Secret not the values."""
    from kubekeep.ui.rendering import secret_value

    assert secret_value("c2VjcmV0", "Secret", "data.password") == "<hidden: 8 characters>"
    assert secret_value({"a": "eA=="}, "Secret", "stringData") == {"a": "<hidden: 4 characters>"}
    assert secret_value("Opaque", "Secret", "type") == "Opaque"
    assert secret_value("c2VjcmV0", "ConfigMap", "data.password") == "c2VjcmV0"
    annotation = 'metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]'
    assert secret_value('{"data":{"p":"eA=="}}', "Secret", annotation) == "<hidden: 21 characters>"


def test_kubectls_copy_of_a_secret_is_hidden_too() -> None:
    from kubekeep.manifests import serialization
    from kubekeep.ui.rendering import hide_secret_values

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "data": {"p": "c2VjcmV0"},
        "metadata": {
            "name": "s",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"data":{"p":"c2VjcmV0"}}'},
        },
    }
    shown, hidden = hide_secret_values(serialization.dump(secret))
    assert b"c2VjcmV0" not in shown and hidden == 2
