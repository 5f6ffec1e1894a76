"""Run a Kubernetes Job on the test cluster and wait for the Job controller's verdict.

The Job's pods must land on a node that really runs them: pass the simulated node (a
:class:`testenv.simcsi.SimCSI`) as ``place_on`` and its node selector and toleration are merged
into the pod template. A CronJob's Job is made the way ``kubectl create job --from=cronjob/NAME``
makes it (:func:`job_from_cronjob`)::

    result = run_job(cluster, job_from_cronjob(cluster, ns, "kubekeep-backup"), place_on=sim)
    assert result.succeeded, result.logs
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from testenv.rest import resource_path

if TYPE_CHECKING:
    from testenv.cluster import Cluster
    from testenv.simcsi import SimCSI


@dataclass(frozen=True)
class PodOutcome:
    name: str
    phase: str
    #: container name -> exit code (of the containers that terminated)
    exit_codes: dict[str, int]
    logs: str


@dataclass(frozen=True)
class JobResult:
    name: str
    namespace: str
    succeeded: bool
    #: every pod's logs, oldest pod first
    logs: str
    pods: list[PodOutcome] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_codes(self) -> list[int]:
        return [code for pod in self.pods for code in pod.exit_codes.values()]


def job_from_cronjob(cluster: Cluster, namespace: str, cronjob: str, name: str | None = None) -> dict[str, Any]:
    """The Job ``kubectl create job NAME --from=cronjob/CRONJOB`` would create (not created yet)."""
    name = name or f"{cronjob[:40]}-manual-{uuid.uuid4().hex[:5]}"
    out = cluster.kubectl(
        "create", "job", name, f"--from=cronjob/{cronjob}", "-n", namespace, "--dry-run=client", "-o", "json"
    ).stdout
    job: dict[str, Any] = json.loads(out)
    return job


def place(manifest: dict[str, Any], sim: SimCSI) -> dict[str, Any]:
    """A copy of a Job manifest whose pods are scheduled on the simulated node."""
    job = copy.deepcopy(manifest)
    pod_spec = job["spec"]["template"].setdefault("spec", {})
    placement = sim.placement()
    pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **placement["nodeSelector"]}
    pod_spec["tolerations"] = [*(pod_spec.get("tolerations") or []), *placement["tolerations"]]
    return job


def run_job(
    cluster: Cluster, manifest: dict[str, Any], timeout: float = 120.0, *, place_on: SimCSI | None = None
) -> JobResult:
    """Create the Job, wait until it is Complete or Failed, and collect its pods' outcome.

    Raises TimeoutError (with the pods' states) when the Job has no verdict after ``timeout``.
    """
    job = place(manifest, place_on) if place_on is not None else manifest
    namespace = job["metadata"].get("namespace") or "default"
    name = job["metadata"]["name"]
    rest = cluster.rest()
    started = time.monotonic()
    try:
        created = rest.create(resource_path("batch/v1", "jobs", namespace), job)
        uid = created["metadata"]["uid"]
        path = resource_path("batch/v1", "jobs", namespace, name)
        verdict = ""
        conditions: list[dict[str, Any]] = []
        while time.monotonic() - started < timeout:
            conditions = (rest.get(path).get("status") or {}).get("conditions") or []
            done = [c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
            if done:
                verdict = done[0]
                break
            time.sleep(0.3)
        seconds = time.monotonic() - started
        pods = _pods(cluster, rest, namespace, uid)
        if not verdict:
            states = {p.name: (p.phase, p.exit_codes) for p in pods}
            events = [
                f"{e['involvedObject']['name']}: {e['reason']}: {e.get('message', '')}"
                for e in rest.get(resource_path("v1", "events", namespace))["items"]
            ]
            node = place_on.messages[-5:] if place_on is not None else []
            raise TimeoutError(
                f"job {namespace}/{name} not finished after {timeout}s: pods {states}; events {events}; node {node}"
            )
        return JobResult(
            name,
            namespace,
            verdict == "Complete",
            "".join(p.logs for p in pods),
            pods,
            conditions,
            seconds,
        )
    finally:
        rest.close()


def _pods(cluster: Cluster, rest: Any, namespace: str, job_uid: str) -> list[PodOutcome]:
    items = rest.get(
        resource_path("v1", "pods", namespace), labelSelector=f"batch.kubernetes.io/controller-uid={job_uid}"
    )["items"]
    items.sort(key=lambda p: p["metadata"]["creationTimestamp"])
    out = []
    for pod in items:
        status = pod.get("status") or {}
        codes = {
            s["name"]: int(s["state"]["terminated"]["exitCode"])
            for s in status.get("containerStatuses") or ()
            if "terminated" in (s.get("state") or {})
        }
        logs = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "--all-containers", check=False).stdout
        out.append(PodOutcome(pod["metadata"]["name"], status.get("phase", ""), codes, logs))
    return out


def make_claim(rest: Any, namespace: str, name: str = "data", storage_class: str | None = None) -> None:
    """A 1 GiB ReadWriteOnce claim of testenv's CSI storage class (bound by the simulated driver)."""
    from testenv import bootstrap

    rest.create(
        resource_path("v1", "persistentvolumeclaims", namespace),
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class or bootstrap.STORAGE_CLASS,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
