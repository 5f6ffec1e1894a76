"""The k8s:// connector and kube/ access code: URIs and options, discovery both ways, paging,
credential errors, restore options (status, managed fields, update), and the CLI end to end."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api, connectors, errors
from kubekeep.connectors import k8s
from kubekeep.connectors.k8s import tiers
from kubekeep.connectors.k8s.importer import K8sImporter
from kubekeep.engine.entries import Entry, EntryType, with_directories
from kubekeep.engine.repository import Repository
from kubekeep.kube import config, discovery, listing
from kubekeep.kube.requesting import Session
from kubekeep.manifests import ordering, serialization
from kubekeep.manifests.planning import PlannedObject
from testenv.cluster import Cluster
from testenv.rest import resource_path
from tests.cli.helpers import KK, RepoSpec
from tests.support.k8s_fixtures import Seeded


@pytest.mark.parametrize(
    "uri, context",
    [
        ("k8s://", None),
        ("k8s:", None),
        ("k8s://prod", "prod"),
        ("k8s://arn:aws:eks:eu-west-1:1:cluster/prod", "arn:aws:eks:eu-west-1:1:cluster/prod"),
        ("K8S://in-cluster/", "in-cluster"),
    ],
)
def test_uri_names_the_context(uri: str, context: str | None) -> None:
    assert k8s.parse_uri(uri) == context


def test_options_that_do_not_apply_are_refused_before_connecting() -> None:
    with pytest.raises(errors.UsageError, match="FsSourceOptions does not apply to k8s: sources"):
        connectors.open_importer("k8s://", api.FsSourceOptions(excludes=("*.tmp",)))
    with pytest.raises(errors.UsageError, match="FsDestinationOptions does not apply to k8s: destinations"):
        connectors.open_exporter("k8s://", api.FsDestinationOptions(owners=True))
    with pytest.raises(errors.UsageError, match="skip or update"):
        api.ManifestsDestinationOptions(existing="replace")
    mapped = api.ManifestsDestinationOptions(api_version_map={"a.io/v1": "a.io/v2"})
    with pytest.raises(errors.UsageError, match=r"--api-version-map apply\(ies\) to restores into a cluster"):
        k8s.open_manifests_exporter("fs:/nonexistent/yaml", mapped)
    with pytest.raises(errors.UsageError, match="bad label selector"):
        k8s.open_importer("k8s://", api.ManifestsSourceOptions(selector="a in (b"))


def test_a_missing_kubeconfig_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="does not exist"):
        k8s.open_importer("k8s://", api.ManifestsSourceOptions(kubeconfig=str(tmp_path / "nope")))


def _resource(group: str, resource: str, kind: str, verbs: tuple[str, ...] = ("list", "get")) -> discovery.ApiResource:
    return discovery.ApiResource(group, "v1", resource, kind, True, frozenset(verbs))


def test_resource_filters_noisy_defaults_and_aliases(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters: [{name: c, cluster: "
        "{server: 'https://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    disc = discovery.Discovery(
        [
            _resource("", "events", "Event"),
            _resource("events.k8s.io", "events", "Event"),
            _resource("coordination.k8s.io", "leases", "Lease"),
            _resource("", "pods", "Pod"),
            _resource("", "bindings", "Binding", verbs=("create",)),
            _resource("apps", "deployments", "Deployment"),
        ]
    )

    def chosen(**options: Any) -> list[str]:
        importer = K8sImporter(kubeconfig=str(kubeconfig), **options)
        try:
            return [r.full_name for r in importer.selected_resources(disc)]
        finally:
            importer.close()

    assert chosen() == ["pods", "deployments.apps"]
    assert chosen(include_noisy=True) == ["events", "leases.coordination.k8s.io", "pods", "deployments.apps"]
    assert chosen(include_resources=["events.events.k8s.io"]) == ["events.events.k8s.io"]
    assert chosen(include_resources=["Event", "deploy*"]) == ["events", "deployments.apps"]
    assert chosen(exclude_resources=["pods"]) == ["deployments.apps"]


def test_entries_come_in_pre_order_with_their_directories() -> None:
    files = [
        Entry(p, EntryType.FILE)
        for p in sorted(
            [
                "namespaces/b/core/configmaps/x.yaml",
                "cluster/core/nodes/n.yaml",
                "namespaces/a/apps/deployments/d.yaml",
                "namespaces/a/core/configmaps/c.yaml",
            ]
        )
    ]
    assert [(e.path, e.type) for e in with_directories(files)] == [
        ("cluster", EntryType.DIR),
        ("cluster/core", EntryType.DIR),
        ("cluster/core/nodes", EntryType.DIR),
        ("cluster/core/nodes/n.yaml", EntryType.FILE),
        ("namespaces", EntryType.DIR),
        ("namespaces/a", EntryType.DIR),
        ("namespaces/a/apps", EntryType.DIR),
        ("namespaces/a/apps/deployments", EntryType.DIR),
        ("namespaces/a/apps/deployments/d.yaml", EntryType.FILE),
        ("namespaces/a/core", EntryType.DIR),
        ("namespaces/a/core/configmaps", EntryType.DIR),
        ("namespaces/a/core/configmaps/c.yaml", EntryType.FILE),
        ("namespaces/b", EntryType.DIR),
        ("namespaces/b/core", EntryType.DIR),
        ("namespaces/b/core/configmaps", EntryType.DIR),
        ("namespaces/b/core/configmaps/x.yaml", EntryType.FILE),
    ]


def _planned(kind: str, group: str, resource: str, uid: str, owner: str = "") -> PlannedObject:
    refs = [{"kind": "X", "name": "o", "uid": owner}] if owner else []
    return PlannedObject(
        f"{resource}/{uid}",
        group,
        resource,
        {"kind": kind, "metadata": {"name": uid}},
        ordering.tier_of(group, resource),
        old_uid=uid,
        owner_references=refs,
    )


def test_owners_go_first_even_from_a_later_tier() -> None:
    widget = _planned("Widget", "example.com", "widgets", "w")
    owned_cm = _planned("ConfigMap", "", "configmaps", "c", owner="w")
    grandchild = _planned("Secret", "", "secrets", "s", owner="c")
    plain = _planned("ConfigMap", "", "configmaps", "p")
    ranks = tiers._ranks([widget, owned_cm, grandchild, plain])
    assert ranks[id(owned_cm)] == ranks[id(grandchild)] == ranks[id(widget)] == ordering.CUSTOM
    assert ranks[id(plain)] == ordering.tier_of("", "configmaps").rank
    waves = tiers._waves([grandchild, owned_cm, widget])
    assert [[p.name for p in w] for w in waves] == [["w"], ["c"], ["s"]]
    cycle = [_planned("A", "x", "a", "1", owner="2"), _planned("B", "x", "b", "2", owner="1")]
    assert [len(w) for w in tiers._waves(cycle)] == [2]


@pytest.fixture
def session(cluster: Cluster) -> Any:
    s = Session(config.connect(kubeconfig=str(cluster.kubeconfig)))
    yield s
    s.close()


@pytest.mark.cluster
def test_legacy_discovery_finds_what_aggregated_discovery_finds(session: Session) -> None:
    aggregated = discovery.discover(session)
    assert aggregated.method == "aggregated"
    legacy = discovery._legacy(session, session.get("/api"), workers=4)

    def key(d: discovery.Discovery) -> list[tuple[Any, ...]]:
        return sorted((r.group, r.version, r.resource, r.kind, r.namespaced, sorted(r.verbs)) for r in d.resources)

    assert key(legacy) == key(aggregated)
    deployments = aggregated.find("apps", "deployments")
    assert deployments is not None and "status" in deployments.subresources and deployments.listable
    assert set(discovery.Discovery.from_json(aggregated.to_json()).resources) == set(aggregated.resources)


@pytest.mark.cluster
def test_small_pages_list_the_same_objects(session: Session) -> None:
    disc = discovery.discover(session)
    roles = disc.find("rbac.authorization.k8s.io", "clusterroles")
    assert roles is not None
    one = listing.list_all(session, roles, page_size=1000)
    paged = listing.list_all(session, roles, page_size=7)
    assert len(one) > 20 and [o["metadata"]["name"] for o in paged] == [o["metadata"]["name"] for o in one]
    assert all(o["kind"] == "ClusterRole" and o["apiVersion"] == "rbac.authorization.k8s.io/v1" for o in paged)


@pytest.mark.cluster
def test_rejected_credentials_are_a_one_line_error(
    cluster: Cluster, tmp_path: Path, manifests_repo: Repository
) -> None:
    kubeconfig = serialization.load(cluster.kubeconfig.read_bytes())
    kubeconfig["users"][0]["user"] = {"token": "not-a-token"}
    path = tmp_path / "bad.kubeconfig"
    path.write_bytes(serialization.dump(kubeconfig))
    with pytest.raises(errors.ApiError) as info:
        api.backup(manifests_repo, "k8s://", options=api.ManifestsSourceOptions(kubeconfig=str(path)))
    assert info.value.status == 401 and "rejected the credentials" in str(info.value)


@pytest.mark.cluster
def test_only_manifests_snapshots_restore_into_a_cluster(
    cluster: Cluster, manifests_repo: Repository, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("x")
    snap = api.backup(manifests_repo, str(tmp_path / "data"))
    with pytest.raises(errors.UsageError, match="only manifests snapshots"):
        api.restore(
            manifests_repo,
            snap.id,
            "k8s://",
            options=api.ManifestsDestinationOptions(kubeconfig=str(cluster.kubeconfig)),
        )
    with pytest.raises(errors.UsageError, match="object selection"):
        api.restore(manifests_repo, snap.id, str(tmp_path / "out"), select=api.ObjectSelector.build(kinds=["Pod"]))


def _widget(client: Any, ns: str, name: str) -> dict[str, Any]:
    return client.get(resource_path("example.kubekeep.test/v1", "widgets", namespace=ns, name=name))


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_status_managed_fields_and_update_policy(seeded: Seeded, manifests_repo: Repository) -> None:
    ns = seeded.namespaces[0]
    snap = seeded.backup(manifests_repo, include_namespaces=[ns])
    client = seeded.rest()
    original = _widget(client, ns, "widget-1")
    managers = sorted(m["manager"] for m in original["metadata"]["managedFields"])
    select = api.ObjectSelector.build(namespaces=[ns], kinds=["widgets"], names=["widget-1"])

    client.delete(resource_path("example.kubekeep.test/v1", "widgets", namespace=ns, name="widget-1"))
    results = seeded.restore(manifests_repo, snap.id, select=select, restore_status=True, keep_managed_fields=True)
    assert [(r["action"], r["name"]) for r in results if r["kind"] == "Widget"] == [("created", "widget-1")]
    restored = _widget(client, ns, "widget-1")
    assert restored["status"] == original["status"]
    assert sorted(m["manager"] for m in restored["metadata"]["managedFields"]) == managers

    client.request(
        "PATCH",
        resource_path("example.kubekeep.test/v1", "widgets", namespace=ns, name="widget-1"),
        {"spec": {"color": "black"}},
        content_type="application/merge-patch+json",
    )
    skipped = seeded.restore(manifests_repo, snap.id, select=select)
    assert [r["action"] for r in skipped if r["kind"] == "Widget"] == ["skipped"]
    assert _widget(client, ns, "widget-1")["spec"]["color"] == "black"
    updated = seeded.restore(manifests_repo, snap.id, select=select, existing="update")
    assert [r["action"] for r in updated if r["kind"] == "Widget"] == ["updated"]
    assert _widget(client, ns, "widget-1")["spec"]["color"] == original["spec"]["color"]


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_cli_backup_summary_diff_and_dry_run(seeded: Seeded, tmp_path: Path) -> None:
    ns = seeded.namespaces[2]
    kk = KK(
        RepoSpec(str(tmp_path / "repo")),
        cache_dir=tmp_path / "cache",
        extra_env={"KUBECONFIG": str(seeded.cluster.kubeconfig)},
    )
    kk.run("init")
    first = kk.json("backup", "k8s://", "--include-namespace", ns)
    assert first["source"]["kind"] == "manifests" and first["warnings"] == []
    out = kk.out("summary", "latest", "-n", ns)
    assert f"namespace {ns}" in out and "Deployment   web-0" in out and "nodes: 3/3 ready" in out
    problems = kk.out("summary", "latest", "-n", ns, "--problems")
    assert "claim data-0" in problems and "Pending" in problems and "Deployment" not in problems
    kk.run("ls", f"latest:/namespaces/{ns}/apps/deployments")
    cm = kk.out("cat", f"latest:/namespaces/{ns}/core/configmaps/config-0.yaml")
    assert serialization.load(cm)["metadata"]["name"] == "config-0"

    name = f"cli-{uuid.uuid4().hex[:6]}"
    seeded.rest().create(
        resource_path("v1", "configmaps", namespace=ns),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}},
    )
    second = kk.json("backup", "k8s://", "--include-namespace", ns)
    diff = kk.out("diff", first["id"], second["id"], f"/namespaces/{ns}")
    assert f"+    /namespaces/{ns}/core/configmaps/{name}.yaml  (ConfigMap {ns}/{name})" in diff
    changes = kk.json("diff", first["id"], second["id"], f"/namespaces/{ns}")
    assert [c["name"] for c in changes] == [name]

    dry = kk.run("restore", first["id"], "--to", "k8s://", "-n", ns, "--existing", "update", "--dry-run")
    text = dry.stdout.decode()
    assert f"would update  ConfigMap {ns}/config-0" in text and "kubekeep.io/restored-from" in text
    report = json.loads(
        kk.run(
            "--json",
            "restore",
            first["id"],
            "--to",
            "k8s://",
            "-n",
            ns,
            "--kind",
            "cm",
            "--name",
            "config-*",
            "--dry-run",
        ).stdout
    )
    assert {r["action"] for r in report["results"]} == {"would skip"}
    bad = kk.run("restore", first["id"], "--to", "k8s://", "--namespace-map", "x", expect=2)
    assert b"expected OLD=NEW" in bad.stderr
