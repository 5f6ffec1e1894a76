"""The web UI end to end, in headless Chromium, over two manifests snapshots of the local
cluster taken before and after an incident-like change (a Deployment scaled and given a new
image, two ConfigMaps deleted). The tests also write the screenshots in docs/screenshots/."""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, expect

from kubekeep import api
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from kubekeep.ui.access import csrf_token
from testenv.cluster import Cluster
from testenv.rest import ApiError, RestClient, resource_path
from testenv.seed import DEFAULT_NAMESPACES, seed, wait_for_workloads
from tests.cli.helpers import FAST_KDF
from tests.ui.conftest import TOKEN, UIServer, screenshot

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

PREFIX = "ui-"
NS = f"{PREFIX}payments"
DEPLOYMENT = f"namespaces/{NS}/apps/deployments/web-0.yaml"
DELETED = ("config-1", "config-2")  # ConfigMaps deleted between the snapshots


@dataclass
class Incident:
    repo: Repository
    before: Snapshot
    after: Snapshot
    kubeconfig: str
    cluster: Cluster


@pytest.fixture(scope="module")
def incident(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Incident]:
    client = cluster.rest()
    namespaces = [f"{PREFIX}{ns}" for ns in DEFAULT_NAMESPACES]
    _remove(client, namespaces)  # left over from an interrupted run
    try:
        result = seed(cluster, prefix=PREFIX)
        wait_for_workloads(cluster, result.namespaces, timeout=120)
        root = tmp_path_factory.mktemp("ui")
        opts = api.RepositoryOptions(str(root / "repo"), "pw", cache_dir=root / "cache")
        repo = api.init_repository(opts, kdf=FAST_KDF)
        source = api.ManifestsSourceOptions(
            kubeconfig=str(cluster.kubeconfig), include_namespaces=tuple(result.namespaces)
        )
        before = api.backup(repo, "k8s://", tags=["before"], options=source)
        client.request(
            "PATCH",
            resource_path("apps/v1", "deployments", namespace=NS, name="web-0"),
            {
                "spec": {
                    "replicas": 3,
                    "template": {"spec": {"containers": [{"name": "app", "image": "registry.kubekeep.test/app:2.0"}]}},
                }
            },
            content_type="application/strategic-merge-patch+json",
        )
        for name in DELETED:
            client.delete(resource_path("v1", "configmaps", namespace=NS, name=name))
        after = api.backup(repo, "k8s://", tags=["after"], options=source)
        yield Incident(repo, before, after, str(cluster.kubeconfig), cluster)
        repo.close()
    finally:
        for ns in namespaces:
            client.delete(resource_path("v1", "namespaces", name=ns))
        client.close()


def _remove(client: RestClient, namespaces: list[str], timeout: float = 120) -> None:
    """Delete ``namespaces`` and wait until they are gone."""
    deadline = time.monotonic() + timeout
    for ns in namespaces:
        client.delete(resource_path("v1", "namespaces", name=ns))
    for ns in namespaces:
        while True:
            try:
                client.get(resource_path("v1", "namespaces", name=ns))
            except ApiError as exc:
                if exc.status == 404:
                    break
                raise
            assert time.monotonic() < deadline, f"namespace {ns} is still terminating"
            time.sleep(0.5)


def _configmap_exists(cluster: Cluster, name: str) -> bool:
    client = cluster.rest()
    try:
        client.get(resource_path("v1", "configmaps", namespace=NS, name=name))
        return True
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    finally:
        client.close()


def test_list_open_snapshot_and_deployment_manifest(
    incident: Incident, ui_server: Callable[..., UIServer], open_ui: Callable[[UIServer], Page]
) -> None:
    ui = ui_server(incident.repo)
    page = open_ui(ui)
    rows = page.locator("#snapshots tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(incident.after.short_id)  # newest first
    expect(rows.nth(0)).to_contain_text("manifests")
    expect(rows.nth(0)).to_contain_text("after")
    expect(rows.nth(1)).to_contain_text(incident.before.short_id)
    screenshot(page, "snapshot-list")

    page.fill('input[name="q"]', "before")  # live filter on the page
    expect(page.locator("#snapshots tbody tr:visible")).to_have_count(1)
    page.press('input[name="q"]', "Enter")  # and the server-side filter
    expect(page).to_have_url(re.compile(r"\?q=before"))
    expect(rows).to_have_count(1)

    page.click(f"text={incident.before.short_id}")
    expect(page).to_have_url(f"{ui.base}/s/{incident.before.id}/tree/")
    for name in ("namespaces/", f"{NS}/"):
        page.click(f"#entries a:text-is('{name}')")
    expect(page.locator("nav.crumbs")).to_contain_text(NS)
    expect(page.locator("a.button", has_text="Restore namespace…")).to_be_visible()
    for name in ("apps/", "deployments/"):
        page.click(f"#entries a:text-is('{name}')")
    expect(page.locator("#entries tbody tr", has_text="web-0.yaml")).to_contain_text("Deployment")
    screenshot(page, "snapshot-tree")
    page.click("#entries a:text-is('web-0.yaml')")
    expect(page).to_have_url(f"{ui.base}/s/{incident.before.id}/tree/{DEPLOYMENT}")
    expect(page.locator("h2")).to_contain_text(f"Deployment {NS}/web-0")
    content = page.locator("#content")
    expect(content).to_contain_text("kind: Deployment")
    expect(content).to_contain_text("registry.kubekeep.test/app:1.0")
    assert content.locator(".hl .nt").count() > 10, "YAML keys should be highlighted"
    screenshot(page, "manifest-view")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_cluster_dashboard_and_timeline(
    incident: Incident, ui_server: Callable[..., UIServer], open_ui: Callable[[UIServer], Page]
) -> None:
    ui = ui_server(incident.repo)
    page = open_ui(ui)
    page.goto(f"{ui.base}/s/{incident.after.id}/cluster")
    expect(page.locator("#nodes tbody tr")).to_have_count(len(incident.cluster.node_names))
    expect(page.locator("#nodes")).to_contain_text("Ready")
    expect(page.locator("#namespaces")).to_contain_text(NS)
    expect(page.locator("section.timeline li.current")).to_contain_text(incident.after.time[:10])
    screenshot(page, "cluster-dashboard", full_page=True)

    page.select_option('select[name="ns"]', NS)  # submits the form
    expect(page).to_have_url(re.compile(rf"ns={NS}"))
    web0 = page.locator("#workloads tr", has_text="web-0")
    expect(web0.locator("td").nth(2)).to_have_text("3")  # desired after the scale-up
    screenshot(page, "cluster-namespace", full_page=True)
    page.keyboard.press("ArrowLeft")  # one step back in the timeline
    expect(page).to_have_url(f"{ui.base}/s/{incident.before.id}/cluster?ns={NS}")
    expect(web0.locator("td").nth(2)).to_have_text("2")
    expect(web0.locator("td").nth(3)).to_have_text("2")  # ready, as seeded
    expect(page.locator("#pods")).to_contain_text("Running")
    expect(page.locator("#claims tbody tr")).to_have_count(2)
    page.keyboard.press("ArrowRight")
    expect(page).to_have_url(f"{ui.base}/s/{incident.after.id}/cluster?ns={NS}")


def test_compare_two_snapshots_shows_the_changed_field(
    incident: Incident, ui_server: Callable[..., UIServer], open_ui: Callable[[UIServer], Page]
) -> None:
    ui = ui_server(incident.repo)
    page = open_ui(ui)
    compare = page.locator("#compare")
    expect(compare).to_be_disabled()
    for snap in (incident.after, incident.before):
        page.check(f'input[value="{snap.id}"]')
    expect(compare).to_be_enabled()
    compare.click()
    expect(page).to_have_url(f"{ui.base}/diff?a={incident.before.id}&b={incident.after.id}")
    deployment = page.locator(f'#changes tr.st-mod[data-path="{DEPLOYMENT}"]')
    expect(deployment).to_contain_text("spec.replicas")
    for name in DELETED:
        expect(
            page.locator(f'#changes tr.st-del[data-path="namespaces/{NS}/core/configmaps/{name}.yaml"]')
        ).to_contain_text("ConfigMap")
    screenshot(page, "diff")

    deployment.locator("a", has_text="web-0").click()
    expect(page).to_have_url(re.compile(r"/diff/object\?"))
    replicas = page.locator("#fields tr", has=page.locator("code", has_text=re.compile(r"^spec\.replicas$")))
    expect(replicas.locator("td").nth(2)).to_have_text("2")
    expect(replicas.locator("td").nth(3)).to_have_text("3")
    image = page.locator("#fields tr", has_text="spec.template.spec.containers[name=app].image")
    expect(image).to_contain_text("registry.kubekeep.test/app:1.0")
    expect(image).to_contain_text("registry.kubekeep.test/app:2.0")
    aligned = (
        page.locator("#side-by-side tr.changed")
        .filter(has=page.locator("td.old", has_text=re.compile(r"^\s*replicas: 2$")))
        .filter(has=page.locator("td.new", has_text=re.compile(r"^\s*replicas: 3$")))
    )
    expect(aligned.first).to_be_visible()
    screenshot(page, "object-diff")


def _dry_run_in_dialog(page: Page, ui: UIServer, snap: Snapshot, configmap: str) -> None:
    page.goto(f"{ui.base}/s/{snap.id}/tree/namespaces/{NS}/core/configmaps/{configmap}.yaml")
    page.click("text=Restore…")
    dialog = page.locator("dialog#modal")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#modal-title")).to_contain_text(f"{configmap}.yaml")
    dialog.locator("#dry-run").click()
    expect(dialog.locator("#restore-result")).to_be_visible()
    row = dialog.locator("#restore-objects tr", has_text=configmap)
    expect(row).to_contain_text("ConfigMap")
    expect(row).to_contain_text("would create")


def test_restore_dry_run_in_the_dialog(
    incident: Incident, ui_server: Callable[..., UIServer], open_ui: Callable[[UIServer], Page]
) -> None:
    ui = ui_server(incident.repo, kubeconfig=incident.kubeconfig)
    page = open_ui(ui)
    _dry_run_in_dialog(page, ui, incident.before, DELETED[0])
    dialog = page.locator("dialog#modal")
    expect(dialog.locator("#restore-disabled")).to_contain_text("--allow-restore")
    expect(dialog.locator("#restore")).to_have_count(0)
    screenshot(page, "restore-dialog")
    assert not _configmap_exists(incident.cluster, DELETED[0]), "a dry run must not create anything"


def test_confirmed_restore_recreates_the_object_once(
    incident: Incident, ui_server: Callable[..., UIServer], open_ui: Callable[[UIServer], Page]
) -> None:
    ui = ui_server(incident.repo, allow_restore=True, kubeconfig=incident.kubeconfig)
    page = open_ui(ui)
    expect(page.locator("header .badge.danger")).to_have_text("restores enabled")
    _dry_run_in_dialog(page, ui, incident.before, DELETED[1])
    dialog = page.locator("dialog#modal")
    restore = dialog.locator("#restore")
    form = dialog.locator("form.confirm")
    plan_url = form.get_attribute("action")
    assert plan_url and plan_url.startswith("/restore/")
    assert not _configmap_exists(incident.cluster, DELETED[1])
    restore.click()  # the confirmation box is required
    expect(dialog.locator("#restore-result")).to_contain_text("would create")
    dialog.locator("#confirm").check()
    restore.click()
    expect(dialog.locator("#modal-title")).to_contain_text("Restored")
    expect(dialog.locator("#restore-objects tr", has_text=DELETED[1])).to_contain_text("created")
    assert _configmap_exists(incident.cluster, DELETED[1])

    replay = urllib.parse.urlencode({"csrf": csrf_token(TOKEN), "confirm": "yes"}).encode()
    status, _, body = ui.get(plan_url, data=replay, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and b"already carried out" in body


def test_requests_without_the_token_are_refused(
    incident: Incident, ui_server: Callable[..., UIServer], browser: Browser
) -> None:
    ui = ui_server(incident.repo)
    context = browser.new_context()
    try:
        page = context.new_page()
        for url in (
            f"{ui.base}/",
            f"{ui.base}/s/{incident.before.id}/tree/{DEPLOYMENT}",
            f"{ui.base}/?token=wrong-{TOKEN}",
        ):
            response = page.goto(url)
            assert response is not None and response.status == 403, url
            expect(page.locator("h1")).to_have_text("403: access denied")
        assert "registry.kubekeep.test" not in page.content()
    finally:
        context.close()
    for path in ("/", "/static/ui.js", f"/s/{incident.before.id}/raw/{DEPLOYMENT}", f"/s/{incident.before.id}/cluster"):
        status, _, body = ui.get(path, token=False)
        assert status == 403 and b"kubekeep" in body, path
