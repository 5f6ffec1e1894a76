"""Pod Security (issue #11): a namespace whose enforced level refuses the root helper pod fails
at once with the reason, before anything is created; with --helper-user the helper runs as a
non-root user with no capabilities, which "restricted" admits, and a backup and a restore go
through end to end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kubekeep.connectors.pvc import helper
from kubekeep.kube import pods
from testenv.rest import resource_path
from tests.cli.helpers import KK, stderr_line

from .conftest import Kube

pytestmark = pytest.mark.cluster


def enforce(kube: Kube, level: str) -> None:
    kube.rest.apply(
        resource_path("v1", "namespaces", name=kube.ns),
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": kube.ns, "labels": {pods.POD_SECURITY_LABEL: level}},
        },
        manager="pod-security-test",
    )


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_a_namespace_that_refuses_the_helper_fails_fast(kube: Kube, kk: KK, level: str) -> None:
    kube.claim("data")
    enforce(kube, level)
    started = time.monotonic()
    line = stderr_line(kk.run("-q", "backup", f"pvc://{kube.ns}/data", expect=16))
    assert time.monotonic() - started < 20
    assert f"Pod Security enforce={level}" in line and "does not admit" in line and "--helper-user" in line, line
    assert "PodSecurity" in line  # the admission's own reason
    assert not kube.labelled() and not kube.snapshot_contents()  # nothing was created
    restore = stderr_line(kk.run("-q", "restore", "latest", "--to", f"pvc://{kube.ns}/new", expect=None))
    assert "does not admit" in restore or "no snapshot" in restore


def test_a_non_root_helper_backs_up_and_restores_in_a_restricted_namespace(kube: Kube, kk: KK) -> None:
    data = kube.claim("data")
    assert data is not None
    (data / "readable.txt").write_text("for everyone\n")
    (data / "sub").mkdir()
    (data / "sub" / "more.txt").write_text("more\n")
    enforce(kube, "restricted")
    snap = kk.backup(f"pvc://{kube.ns}/data", "--helper-user", "65532:65532", "--helper-fs-group", "65532")
    kube.wait_clean()
    result = kk.json("restore", snap, "--to", f"pvc://{kube.ns}/copy", "--helper-user", "65532")
    assert [r["action"] for r in result["results"]] == ["written"]
    copy = kube.sim.volume_path(kube.ns, "copy")
    assert (Path(copy) / "readable.txt").read_text() == "for everyone\n"
    assert (Path(copy) / "sub" / "more.txt").read_text() == "more\n"
    kube.wait_clean()


def test_the_non_root_helper_is_what_restricted_asks_for() -> None:
    options = pods.HelperOptions(run_as=(65532, 65533), fs_group=65533)
    for write in (False, True):
        spec = helper.pod_manifest(
            "h", "ns", "claim", secret_name="s", options=options, metadata={}, write=write, block=False
        )["spec"]
        sc = spec["containers"][0]["securityContext"]
        assert sc["runAsUser"] == 65532 and sc["runAsGroup"] == 65533 and sc["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["allowPrivilegeEscalation"] is False and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["securityContext"]["fsGroup"] == 65533
