"""Helper pods: locked down as the issue asks, and a start that cannot succeed (image pull
error, crashing agent, no node to run on) fails fast with the pod's events, not after a long
wait; whatever happens, the run's objects are removed."""

from __future__ import annotations

import time

import pytest

from kubekeep.connectors.pvc import helper
from kubekeep.kube import pods
from testenv.simcsi import CRASH_IMAGE
from tests.cli.helpers import KK, stderr_line

from .conftest import Kube

pytestmark = pytest.mark.cluster


def fails_fast(kk: KK, kube: Kube, *args: str) -> str:
    started = time.monotonic()
    line = stderr_line(
        kk.run("-q", "backup", f"pvc://{kube.ns}/data", *args, "--helper-start-timeout", "120s", expect=16)
    )
    assert time.monotonic() - started < 40, "a hopeless helper pod must fail long before its start timeout"
    kube.wait_clean()
    return line


def test_image_pull_error_fails_fast_with_events(kube: Kube, kk: KK) -> None:
    kube.claim("data")
    line = fails_fast(kk, kube, "--agent-image", "registry.invalid/kubekeep:none")
    assert "helper pod" in line and ("ImagePullBackOff" in line or "cannot pull" in line), line
    assert 'Failed to pull image "registry.invalid/kubekeep:none"' in line  # the kubelet's event


def test_crashing_agent_fails_fast_with_its_log(kube: Kube, kk: KK) -> None:
    kube.claim("data")
    line = fails_fast(kk, kube, "--agent-image", CRASH_IMAGE)
    assert "exited (exit code 3" in line and "fatal: simulated crash" in line, line


def test_unschedulable_helper_fails_fast_with_the_schedulers_reason(kube: Kube, kk: KK) -> None:
    kube.claim("data")
    line = fails_fast(
        kk,
        kube,
        "--helper-node-selector",
        "kubekeep.test/no-such=node",
        "--helper-toleration",
        "dedicated=backup:NoSchedule",
    )
    assert "cannot be scheduled" in line and "node" in line, line


def test_helper_pod_is_locked_down() -> None:
    manifest = helper.pod_manifest(
        "h",
        "ns",
        "claim",
        secret_name="s",
        options=pods.HelperOptions(
            node_selector={"pool": "backup"},
            tolerations=[{"key": "dedicated", "operator": "Exists"}],
            requests={"cpu": "50m", "memory": "64Mi"},
        ),
        metadata={"labels": {"a": "b"}},
        write=False,
        block=False,
    )
    spec = manifest["spec"]
    [container] = spec["containers"]
    sc = container["securityContext"]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"} == spec["securityContext"]["seccompProfile"]
    assert container["volumeMounts"][0]["readOnly"] is True
    assert spec["volumes"][0]["persistentVolumeClaim"]["readOnly"] is True
    assert all("secret" not in a.lower() for a in container["args"])  # the secret comes from a Secret
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "secret"}
    assert spec["nodeSelector"] == {"pool": "backup"} and spec["tolerations"][0]["key"] == "dedicated"
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    writer = helper.pod_manifest(
        "h", "ns", "claim", secret_name="s", options=pods.HelperOptions(), metadata={}, write=True, block=True
    )["spec"]
    assert set(writer["containers"][0]["securityContext"]["capabilities"]["add"]) == {
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
    }
    assert writer["containers"][0]["volumeDevices"] == [{"name": "volume", "devicePath": pods.DEVICE_PATH}]
