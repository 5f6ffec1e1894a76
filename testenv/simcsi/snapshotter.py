"""The simulated snapshot-controller + csi-snapshotter: VolumeSnapshots of our drivers' PVCs.

For a new VolumeSnapshot it does what the two real controllers do together: adds the
snapshot's finalizers, creates the VolumeSnapshotContent ``snapcontent-<snapshot uid>``, takes
the snapshot (a copy of the volume's directory or image), and reports ``snapshotHandle``,
``restoreSize``, ``creationTime`` and ``readyToUse`` on the content and then on the snapshot.
Deleting a snapshot deletes its content and data (deletionPolicy Delete) and then lets the
objects go. ``settings.snapshot_delay`` / ``settings.hold_snapshots`` keep snapshots not ready
(as a slow cloud snapshot), ``settings.snapshot_error`` makes them fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from testenv.simcsi.api import SNAPSHOT_GROUP, Obj, SimApi, SimApiError, now, path_of
from testenv.simcsi.storage import BackingStore
from testenv.simcsi.watching import (
    Controller,
    Key,
    Source,
    add_finalizers,
    meta,
    remove_finalizer,
)

VS_SOURCE_PROTECTION = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
VS_BOUND_PROTECTION = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
VSC_BOUND_PROTECTION = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
DEFAULT_CLASS_ANNOTATION = "snapshot.storage.kubernetes.io/is-default-class"


def _quantity(size: int) -> str:
    return f"{size // (1 << 20) + (1 if size % (1 << 20) else 0)}Mi" if size else "0"


class Snapshotter(Controller):
    name = "snapshotter"

    def __init__(
        self,
        api: SimApi,
        stop: threading.Event,
        log: Callable[[str], None],
        *,
        drivers: set[str],
        store: BackingStore,
        settings: Any,
    ) -> None:
        super().__init__(api, stop, log)
        self.drivers = drivers
        self.store = store
        self.settings = settings
        self._first_seen: dict[str, float] = {}

    def sources(self) -> list[Source]:
        return [
            Source(f"/apis/{SNAPSHOT_GROUP}/volumesnapshots", lambda o: ("vs", meta(o)["namespace"], meta(o)["name"])),
            Source(f"/apis/{SNAPSHOT_GROUP}/volumesnapshotcontents", self._content_key),
        ]

    def _content_key(self, content: Obj) -> Key | None:
        return ("vsc", meta(content)["name"]) if content.get("spec", {}).get("driver") in self.drivers else None

    def reconcile(self, key: Key) -> float | None:
        if key[0] == "vsc":
            return self._reconcile_content(key[1])
        return self._reconcile_snapshot(key[1], key[2])

    # -- VolumeSnapshot ---------------------------------------------------------------------
    def _reconcile_snapshot(self, ns: str, name: str) -> float | None:
        path = path_of(SNAPSHOT_GROUP, "volumesnapshots", ns, name)
        vs = self.api.get(path)
        if vs is None:
            return None
        status = vs.get("status") or {}
        content_name = status.get("boundVolumeSnapshotContentName") or f"snapcontent-{meta(vs)['uid']}"
        content_path = path_of(SNAPSHOT_GROUP, "volumesnapshotcontents", name=content_name)
        if meta(vs).get("deletionTimestamp"):
            return self._delete_snapshot(vs, path, content_path)
        pvc_name = vs["spec"].get("source", {}).get("persistentVolumeClaimName")
        if not pvc_name:
            return None  # pre-provisioned snapshots are not simulated
        pvc = self.api.get(path_of("v1", "persistentvolumeclaims", ns, pvc_name))
        pv = (
            self.api.get(path_of("v1", "persistentvolumes", name=pvc["spec"]["volumeName"]))
            if pvc and pvc["spec"].get("volumeName")
            else None
        )
        csi = ((pv or {}).get("spec") or {}).get("csi") or {}
        if csi.get("driver") not in self.drivers:
            if pvc is None or pv is None:
                self._error(
                    vs,
                    path,
                    f"failed to get input parameters to create snapshot {name}: the source PVC {pvc_name} is not bound"
                    if pvc
                    else f"PVC {pvc_name} not found",
                )
                return 2.0
            return None  # another driver's volume
        assert pv is not None
        snap_class = self._class(vs, csi["driver"])
        if snap_class is None:
            self._error(
                vs,
                path,
                f"failed to get snapshot class with error cannot find default snapshot class "
                f"for driver {csi['driver']}",
            )
            return 2.0
        if status.get("readyToUse") and status.get("boundVolumeSnapshotContentName"):
            return None
        vs = add_finalizers(self.api, path, vs, [VS_SOURCE_PROTECTION, VS_BOUND_PROTECTION])
        content = self.api.get(content_path)
        if content is None:
            content = self.api.create(
                path_of(SNAPSHOT_GROUP, "volumesnapshotcontents"),
                {
                    "apiVersion": SNAPSHOT_GROUP,
                    "kind": "VolumeSnapshotContent",
                    "metadata": {"name": content_name, "finalizers": [VSC_BOUND_PROTECTION]},
                    "spec": {
                        "volumeSnapshotRef": {
                            "apiVersion": SNAPSHOT_GROUP,
                            "kind": "VolumeSnapshot",
                            "namespace": ns,
                            "name": name,
                            "uid": meta(vs)["uid"],
                            "resourceVersion": meta(vs)["resourceVersion"],
                        },
                        "source": {"volumeHandle": csi["volumeHandle"]},
                        "driver": csi["driver"],
                        "deletionPolicy": snap_class.get("deletionPolicy", "Delete"),
                        "volumeSnapshotClassName": meta(snap_class)["name"],
                        "sourceVolumeMode": pv["spec"].get("volumeMode", "Filesystem"),
                    },
                },
                exist_ok=True,
            ) or self.api.get(content_path)
            self.api.merge(
                path + "/status", {"status": {"boundVolumeSnapshotContentName": content_name, "readyToUse": False}}
            )
        # csi-snapshotter: CreateSnapshot, then report
        first = self._first_seen.setdefault(meta(vs)["uid"], time.monotonic())
        if self.settings.snapshot_error:
            self._error(
                vs, path, f"failed to take snapshot of the volume {csi['volumeHandle']}: {self.settings.snapshot_error}"
            )
            return 2.0
        wait = float(self.settings.snapshot_delay) - (time.monotonic() - first)
        if self.settings.hold_snapshots or wait > 0:
            return max(0.2, wait) if not self.settings.hold_snapshots else 0.5
        content_status = (content or {}).get("status") or {}
        if not content_status.get("readyToUse"):
            handle = content_status.get("snapshotHandle") or str(meta(vs)["uid"])
            _, size = self.store.create_snapshot(handle, csi["volumeHandle"])
            created = time.time_ns()
            self.api.merge(
                content_path + "/status",
                {
                    "status": {
                        "snapshotHandle": handle,
                        "creationTime": created,
                        "readyToUse": True,
                        "restoreSize": size,
                    }
                },
            )
            content_status = {"snapshotHandle": handle, "creationTime": created, "restoreSize": size}
        self.api.merge(
            path + "/status",
            {
                "status": {
                    "boundVolumeSnapshotContentName": content_name,
                    "creationTime": now(),
                    "readyToUse": True,
                    "restoreSize": _quantity(int(content_status.get("restoreSize") or 0)),
                    "error": None,
                }
            },
        )
        self.api.event(vs, "SnapshotReady", f"Snapshot {ns}/{name} is ready to use.", component="snapshot-controller")
        return None

    def _class(self, vs: Obj, driver: str) -> Obj | None:
        wanted = vs["spec"].get("volumeSnapshotClassName")
        if wanted:
            cls = self.api.get(path_of(SNAPSHOT_GROUP, "volumesnapshotclasses", name=wanted))
            return cls if isinstance(cls, dict) and cls.get("driver") == driver else None
        for cls in self.api.get(path_of(SNAPSHOT_GROUP, "volumesnapshotclasses")).get("items", ()):
            if cls.get("driver") == driver and meta(cls).get("annotations", {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
                return dict(cls)
        return None

    def _error(self, vs: Obj, path: str, message: str) -> None:
        if ((vs.get("status") or {}).get("error") or {}).get("message") == message:
            return
        self.api.merge(
            path + "/status", {"status": {"readyToUse": False, "error": {"message": message, "time": now()}}}
        )
        self.api.event(vs, "SnapshotCreationFailed", message, warning=True, component="snapshot-controller")

    def _delete_snapshot(self, vs: Obj, path: str, content_path: str) -> float | None:
        ns = meta(vs)["namespace"]
        for pvc in self.api.get(path_of("v1", "persistentvolumeclaims", ns)).get("items", ()):
            source = pvc["spec"].get("dataSourceRef") or pvc["spec"].get("dataSource") or {}
            if (
                source.get("kind") == "VolumeSnapshot"
                and source.get("name") == meta(vs)["name"]
                and not pvc["spec"].get("volumeName")
            ):
                return 1.0  # still the source of a volume being provisioned
        content = self.api.get(content_path)
        if content is not None and content["spec"].get("deletionPolicy", "Delete") == "Delete":
            if not meta(content).get("deletionTimestamp"):
                self.api.delete(content_path)
            return 0.3  # wait for the content to go first
        remove_finalizer(self.api, path, vs, VS_SOURCE_PROTECTION)
        vs = self.api.get(path) or vs
        remove_finalizer(self.api, path, vs, VS_BOUND_PROTECTION)
        self._first_seen.pop(meta(vs)["uid"], None)
        return None

    # -- VolumeSnapshotContent --------------------------------------------------------------
    def _reconcile_content(self, name: str) -> float | None:
        path = path_of(SNAPSHOT_GROUP, "volumesnapshotcontents", name=name)
        content = self.api.get(path)
        if content is None:
            return None
        ref = content["spec"].get("volumeSnapshotRef") or {}
        if not meta(content).get("deletionTimestamp"):
            vs = self.api.get(path_of(SNAPSHOT_GROUP, "volumesnapshots", ref.get("namespace"), ref.get("name")))
            orphaned = vs is None or meta(vs)["uid"] != ref.get("uid")
            if orphaned and content["spec"].get("deletionPolicy", "Delete") == "Delete":
                self.api.delete(path)  # its snapshot was deleted
            return None
        handle = (content.get("status") or {}).get("snapshotHandle")
        if handle and content["spec"].get("deletionPolicy", "Delete") == "Delete":
            self.store.delete_snapshot(handle)
        try:
            remove_finalizer(self.api, path, content, VSC_BOUND_PROTECTION)
        except SimApiError as exc:
            if exc.status != 409:
                raise
            return 0.1
        return None
