"""The web UI's restore drill pages in headless Chromium, over two real drills against the local
cluster: one that passes, and one whose Deployment cannot be scheduled (a node selector no node
matches) and so is not ready in time. Writes docs/screenshots/drills.png and drill.png."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from kubekeep import api
from testenv.cluster import Cluster
from testenv.rest import RestClient, resource_path
from tests.cli.helpers import FAST_KDF
from tests.support.k8s_fixtures import wait_for
from tests.ui.conftest import UIServer, screenshot

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def _deployment(client: RestClient, ns: str, name: str, node_selector: dict[str, str] | None = None) -> None:
    labels = {"app": name}
    pod: dict[str, object] = {"containers": [{"name": "app", "image": "registry.kubekeep.test/app:1.0"}]}
    if node_selector:
        pod["nodeSelector"] = node_selector
    client.create(
        resource_path("apps/v1", "deployments", namespace=ns),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
    )


def test_drill_list_and_report_pages(
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    ui_server: Callable[..., UIServer],
    open_ui: Callable[[UIServer], Page],
) -> None:
    client = cluster.rest()
    repo = api.init_repository(
        api.RepositoryOptions(str(tmp_path / "repo"), "pw", cache_dir=tmp_path / "c"), kdf=FAST_KDF
    )
    kubeconfig = str(cluster.kubeconfig)
    source = api.ManifestsSourceOptions(kubeconfig=kubeconfig, include_namespaces=(namespace,))
    _deployment(client, namespace, "web")
    client.create(
        resource_path("v1", "configmaps", namespace=namespace),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"A": "1"}},
    )
    wait_for(
        "web available",
        lambda: (
            (
                client.get(resource_path("apps/v1", "deployments", namespace=namespace, name="web")).get("status") or {}
            ).get("availableReplicas")
            == 1
        ),
    )
    options = api.DrillOptions(kubeconfig=kubeconfig, namespaces=(namespace,), timeout=60)
    passed = api.drill(repo, api.backup(repo, "k8s://", options=source).id, "k8s://", options)
    assert passed.ok, passed.reason
    _deployment(client, namespace, "stuck", {"kubekeep.test/no-such-node": "true"})
    options = api.DrillOptions(kubeconfig=kubeconfig, namespaces=(namespace,), timeout=3)
    failed = api.drill(repo, api.backup(repo, "k8s://", options=source).id, "k8s://", options)
    assert not failed.ok and "not ready within 3s" in failed.reason

    ui = ui_server(repo)
    page = open_ui(ui)
    page.get_by_role("link", name="Drills").click()
    expect(page).to_have_url(re.compile(r"/drills$"))
    rows = page.locator("#drills tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(failed.short_id)  # newest first
    expect(rows.nth(0)).to_contain_text("failed")
    expect(rows.nth(0)).to_contain_text("1 workload(s) not ready within 3s")
    expect(rows.nth(1)).to_contain_text(passed.short_id)
    expect(rows.nth(1)).to_contain_text("passed")
    expect(rows.nth(1)).to_contain_text(namespace)
    assert passed.rto_s is not None
    expect(rows.nth(1).locator("td").nth(9)).to_have_text(re.compile(r"\d+\.\d+ s"))
    screenshot(page, "drills")

    rows.nth(0).get_by_role("link", name=failed.short_id).click()
    expect(page.locator("#verdict")).to_have_text("failed")
    expect(page.locator("#reason")).to_contain_text("Deployment")
    expect(page.locator("#rto-s")).to_have_text("-")  # never ready: no RTO
    stuck = page.locator("#drill-workloads tbody tr", has_text="stuck")
    expect(stuck).to_contain_text("waiting")
    expect(stuck).to_contain_text("0/1 available")
    expect(page.locator("#drill-workloads tbody tr", has_text="web")).to_contain_text("ready")
    expect(page.locator("#drill-objects tbody tr", has_text="settings")).to_contain_text("same")
    expect(page.locator("#cleanup")).to_contain_text(f"Namespace {failed.namespaces[0].target}")
    screenshot(page, "drill", full_page=True)

    page.locator("nav.crumbs").get_by_role("link", name="drills").click()
    page.locator("#drills tbody tr").nth(1).get_by_role("link", name=passed.short_id).click()
    expect(page.locator("#verdict")).to_have_text("passed")
    expect(page.locator("#rto-s")).to_have_text(re.compile(r"\d+\.\d+ s"))
    expect(page.locator("#drill-namespaces tbody tr")).to_contain_text(passed.namespaces[0].target)
    assert page.js_errors == []  # type: ignore[attr-defined]

    status, _, body = ui.get("/drills/not-hex")
    assert status == 404 and b"expected a hex id prefix" in body
    status, _, _ = ui.get("/drills", token=False)
    assert status == 403
    repo.close()
    client.close()
