"""PersistentVolumeClaims, their volumes and VolumeSnapshots: finding a claim's CSI driver and
snapshot class, snapshotting it, provisioning claims (new, or from a snapshot) and waiting
for each step with a deadline, progress and the cluster's own explanation when it fails."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubekeep import errors
from kubekeep.kube import events, waiting
from kubekeep.kube.requesting import MERGE_PATCH, Session, api_path

Status = Callable[[str], None]
Obj = dict[str, Any]

SNAPSHOT_GROUP, SNAPSHOT_VERSION = "snapshot.storage.k8s.io", "v1"
DEFAULT_SNAPSHOT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"
DEFAULT_STORAGE_CLASS = "storageclass.kubernetes.io/is-default-class"


@dataclass(frozen=True)
class Claim:
    """What backing up or restoring a claim needs to know about it."""

    namespace: str
    name: str
    uid: str
    phase: str
    storage_class: str
    size: str  # the claim's capacity (or request) as a quantity
    access_modes: list[str]
    block: bool
    volume_name: str
    driver: str | None  # the CSI driver of its bound volume; None if not CSI
    volume_kind: str  # "csi", "hostPath", "nfs", ... (the PV's source type)
    manifest: Obj = field(repr=False)

    def summary(self) -> Obj:
        """Recorded in snapshots: enough to recreate the claim elsewhere."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "storageClassName": self.storage_class,
            "size": self.size,
            "accessModes": self.access_modes,
            "volumeMode": "Block" if self.block else "Filesystem",
            "driver": self.driver,
            "volumeKind": self.volume_kind,
        }


def _path(
    resource: str, namespace: str = "", name: str = "", *, group: str = "", version: str = "v1", sub: str = ""
) -> str:
    return api_path(group, version, resource, namespace=namespace, name=name, subresource=sub)


def claim_path(namespace: str, name: str = "") -> str:
    return _path("persistentvolumeclaims", namespace, name)


def snapshot_path(namespace: str, name: str = "") -> str:
    return _path("volumesnapshots", namespace, name, group=SNAPSHOT_GROUP, version=SNAPSHOT_VERSION)


def content_path(name: str = "") -> str:
    return _path("volumesnapshotcontents", name=name, group=SNAPSHOT_GROUP, version=SNAPSHOT_VERSION)


def get(session: Session, path: str) -> Obj | None:
    return session.get_or_none(path)


def create(session: Session, path: str, obj: Obj) -> Obj:
    created: Obj = session.call("POST", path, body=orjson.dumps(obj)).json()
    return created


def merge_patch(session: Session, path: str, patch: Obj) -> Obj | None:
    response = session.call_unless_missing("PATCH", path, body=orjson.dumps(patch), content_type=MERGE_PATCH)
    return None if response is None else response.json()


def delete(session: Session, path: str) -> bool:
    """Delete an object (background propagation); False if it was already gone."""
    return (
        session.call_unless_missing("DELETE", path, body=orjson.dumps({"propagationPolicy": "Background"})) is not None
    )


def describe_claim(session: Session, namespace: str, name: str) -> Claim:
    pvc = get(session, claim_path(namespace, name))
    if pvc is None:
        raise errors.ConnectorError(f"PersistentVolumeClaim {namespace}/{name} does not exist")
    return claim_info(session, pvc)


def claim_info(session: Session, pvc: Obj) -> Claim:
    meta, spec, status = pvc["metadata"], pvc.get("spec") or {}, pvc.get("status") or {}
    volume_name = spec.get("volumeName") or ""
    pv = get(session, _path("persistentvolumes", name=volume_name)) if volume_name else None
    pv_spec = (pv or {}).get("spec") or {}
    kinds = [k for k in pv_spec if k not in _PV_COMMON]
    csi = pv_spec.get("csi") or {}
    size = (status.get("capacity") or {}).get("storage") or (spec.get("resources") or {}).get("requests", {}).get(
        "storage", ""
    )
    return Claim(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        phase=status.get("phase", ""),
        storage_class=spec.get("storageClassName") or "",
        size=str(size),
        access_modes=list(spec.get("accessModes") or ["ReadWriteOnce"]),
        block=spec.get("volumeMode") == "Block",
        volume_name=volume_name,
        driver=csi.get("driver") if csi else None,
        volume_kind=kinds[0] if kinds else "",
        manifest=pvc,
    )


_PV_COMMON = {
    "accessModes",
    "capacity",
    "claimRef",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeMode",
    "volumeAttributesClassName",
}


def list_claims(session: Session, *, namespace: str = "", label_selector: str = "") -> list[Obj]:
    body = session.get(claim_path(namespace), labelSelector=label_selector or None)
    items: list[Obj] = body.get("items") or []
    return items


def snapshot_class_for(session: Session, driver: str, wanted: str | None = None) -> str | None:
    """``wanted`` if it exists for ``driver``; else the driver's default class, or its only one."""
    listing = session.get_or_none(_path("volumesnapshotclasses", group=SNAPSHOT_GROUP, version=SNAPSHOT_VERSION))
    if listing is None:
        return None  # the VolumeSnapshot CRDs are not installed
    classes = [c for c in (listing.get("items") or []) if c.get("driver") == driver]
    if wanted:
        if not any(c["metadata"]["name"] == wanted for c in classes):
            raise errors.ConnectorError(f"VolumeSnapshotClass {wanted} does not exist for driver {driver}")
        return wanted
    defaults = [c for c in classes if (c["metadata"].get("annotations") or {}).get(DEFAULT_SNAPSHOT_CLASS) == "true"]
    chosen = defaults or (classes if len(classes) == 1 else [])
    return str(chosen[0]["metadata"]["name"]) if chosen else None


def storage_class(session: Session, name: str) -> Obj | None:
    if not name:
        classes: list[Obj] = session.get(_path("storageclasses", group="storage.k8s.io")).get("items") or []
        for sc in classes:
            if (sc["metadata"].get("annotations") or {}).get(DEFAULT_STORAGE_CLASS) == "true":
                return sc
        return None
    return get(session, _path("storageclasses", name=name, group="storage.k8s.io"))


def snapshot_manifest(name: str, claim: Claim, snapshot_class: str, metadata: Obj) -> Obj:
    return {
        "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}",
        "kind": "VolumeSnapshot",
        "metadata": {**metadata, "name": name, "namespace": claim.namespace},
        "spec": {"volumeSnapshotClassName": snapshot_class, "source": {"persistentVolumeClaimName": claim.name}},
    }


def claim_manifest(
    name: str,
    namespace: str,
    *,
    size: str,
    storage_class: str,
    access_modes: list[str],
    block: bool,
    metadata: Obj,
    snapshot: str | None = None,
) -> Obj:
    spec: Obj = {
        "accessModes": access_modes,
        "resources": {"requests": {"storage": size}},
        "volumeMode": "Block" if block else "Filesystem",
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    if snapshot:
        spec["dataSource"] = {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": snapshot}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {**metadata, "name": name, "namespace": namespace},
        "spec": spec,
    }


def wait_snapshot(
    session: Session,
    namespace: str,
    name: str,
    *,
    timeout: float,
    status: Status,
    until: str = "ready",
    on_cut: Callable[[Obj], None] | None = None,
) -> Obj:
    """Wait until the snapshot is ``ready`` (readyToUse), or only ``cut`` (creationTime set: the
    point in time is taken, upload may continue). A snapshot error fails at once."""
    path = snapshot_path(namespace, name)
    st: Obj = {}
    cut_reported = False

    def check() -> Obj | None:
        nonlocal st, cut_reported
        vs = get(session, path)
        if vs is None:
            raise errors.ConnectorError(f"VolumeSnapshot {namespace}/{name} disappeared while waiting for it")
        st = vs.get("status") or {}
        error = (st.get("error") or {}).get("message")
        if error:
            raise errors.ConnectorError(f"VolumeSnapshot {namespace}/{name} failed: {error}")
        if st.get("creationTime") and not cut_reported:
            cut_reported = True
            if on_cut is not None:
                on_cut(vs)
        if st.get("readyToUse") or (until == "cut" and st.get("creationTime")):
            return vs
        return None

    def timed_out() -> Exception:
        detail = events.describe(session, namespace, "VolumeSnapshot", name)
        return errors.ConnectorError(
            f"VolumeSnapshot {namespace}/{name} was not ready after {timeout:.0f}s"
            + (f": {detail}" if detail else " (is a snapshot controller running?)")
        )

    def progress(elapsed: float) -> None:
        content = st.get("boundVolumeSnapshotContentName")
        status(
            f"waiting for VolumeSnapshot {namespace}/{name} to be ready ({elapsed:.0f}s of {timeout:.0f}s"
            + (f", content {content}" if content else ", no content yet")
            + ")"
        )

    return waiting.poll(check, timeout=timeout, timed_out=timed_out, progress=progress)


def wait_bound(session: Session, namespace: str, name: str, *, timeout: float, status: Status) -> Obj:
    """Wait until a claim is Bound; a provisioning failure that persists fails with its event."""
    path = claim_path(namespace, name)

    def check() -> Obj | None:
        pvc = get(session, path)
        if pvc is None:
            raise errors.ConnectorError(f"PersistentVolumeClaim {namespace}/{name} disappeared while waiting for it")
        return pvc if (pvc.get("status") or {}).get("phase") == "Bound" else None

    def timed_out() -> Exception:
        detail = events.describe(session, namespace, "PersistentVolumeClaim", name)
        return errors.ConnectorError(
            f"PersistentVolumeClaim {namespace}/{name} was not bound after {timeout:.0f}s"
            + (f": {detail}" if detail else " (is its provisioner running?)")
        )

    def progress(elapsed: float) -> None:
        status(f"waiting for PersistentVolumeClaim {namespace}/{name} to be bound ({elapsed:.0f}s of {timeout:.0f}s)")

    return waiting.poll(check, timeout=timeout, timed_out=timed_out, progress=progress)


def ensure_deleted_with_claim(session: Session, pvc: Obj, metadata: Obj) -> None:
    """Make the volume of a temporary claim go when the claim goes: reclaim policy Delete (a
    Retain storage class would leak it), and our labels, so cleanup finds it too."""
    volume = (pvc.get("spec") or {}).get("volumeName")
    if volume:
        merge_patch(
            session,
            _path("persistentvolumes", name=volume),
            {"metadata": {"labels": metadata.get("labels") or {}}, "spec": {"persistentVolumeReclaimPolicy": "Delete"}},
        )


def release_snapshot_content(session: Session, vs: Obj) -> None:
    """Let deleting a snapshot delete its storage too, whatever its class's deletion policy."""
    content = ((vs.get("status") or {}).get("boundVolumeSnapshotContentName")) or ""
    if content:
        merge_patch(session, content_path(content), {"spec": {"deletionPolicy": "Delete"}})


def quantity_bytes(text: str) -> int:
    """``"10Gi"`` -> bytes (binary and decimal suffixes)."""
    text = str(text).strip()
    units = {
        "Ki": 1 << 10,
        "Mi": 1 << 20,
        "Gi": 1 << 30,
        "Ti": 1 << 40,
        "Pi": 1 << 50,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
        "P": 10**15,
    }
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    try:
        return int(float(text))
    except ValueError:
        raise errors.UsageError(f"bad size {text!r}: expected a quantity such as 10Gi") from None
