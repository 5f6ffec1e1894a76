"""Which claims a workload's pods mount (what a data-first restore holds a workload back for)."""

from __future__ import annotations

from typing import Any

from kubekeep.manifests.claims import claim_templates, claims_needed, makes_pods, mounted_claims


def _template(*claims: str) -> dict[str, Any]:
    return {
        "spec": {
            "containers": [{"name": "app", "image": "x"}],
            "volumes": [
                *({"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)),
                {"name": "scratch", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "db"}},  # named like a claim: not a claim
            ],
        }
    }


def test_pod_specs_of_every_workload_kind() -> None:
    pod = {"kind": "Pod", **_template("db")}
    deployment = {"spec": {"template": _template("db", "logs")}}
    cronjob = {"spec": {"jobTemplate": {"spec": {"template": _template("reports")}}}}
    assert mounted_claims(pod, "", "pods") == {"db"}
    for group, resource in [
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "daemonsets"),
        ("apps", "statefulsets"),
        ("", "replicationcontrollers"),
        ("batch", "jobs"),
    ]:
        assert makes_pods(group, resource)
        assert mounted_claims(deployment, group, resource) == {"db", "logs"}
    assert mounted_claims(cronjob, "batch", "cronjobs") == {"reports"}
    assert not makes_pods("", "configmaps") and mounted_claims(deployment, "example.com", "widgets") == set()


def test_statefulset_claim_templates_make_ordinal_claims() -> None:
    sts = {
        "metadata": {"name": "web"},
        "spec": {
            "template": _template("shared"),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}, {"metadata": {"name": "wal"}}],
        },
    }
    assert claim_templates(sts) == ["data", "wal"]
    claims = ["data-web-0", "data-web-1", "wal-web-12", "data-web-01", "data-web-x", "data-webby-0", "shared", "other"]
    needed = claims_needed(sts, "apps", "statefulsets", claims)
    assert needed == {"data-web-0", "data-web-1", "wal-web-12", "shared"}
    # a Deployment's claim templates are no such thing
    assert claims_needed(sts, "apps", "deployments", claims) == {"shared"}


def test_hostile_shapes_are_ignored_not_errors() -> None:
    for obj in [
        {},
        {"spec": "nope"},
        {"spec": {"template": {"spec": {"volumes": "x"}}}},
        {"spec": {"template": {"spec": {"volumes": [None, 3, {"persistentVolumeClaim": "x"}]}}}},
        {"spec": {"template": {"spec": {"volumes": [{"persistentVolumeClaim": {"claimName": 7}}]}}}},
    ]:
        assert mounted_claims(obj, "apps", "deployments") == set()
    sts = {"metadata": {"name": 5}, "spec": {"volumeClaimTemplates": [{"metadata": {"name": "d"}}, "junk", {}]}}
    assert claim_templates(sts) == ["d"]
    assert claims_needed(sts, "apps", "statefulsets", ["d-5-0"]) == set()
    # names with regex characters are matched literally
    odd = {"metadata": {"name": "a.b"}, "spec": {"volumeClaimTemplates": [{"metadata": {"name": "d+"}}]}}
    assert claims_needed(odd, "apps", "statefulsets", ["d+-a.b-0", "dd-aXb-0"]) == {"d+-a.b-0"}
