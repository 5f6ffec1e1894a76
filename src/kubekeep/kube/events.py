"""An object's recent events, for error messages that say what the cluster saw."""

from __future__ import annotations

from kubekeep.kube.requesting import Session, api_path


def recent(
    session: Session, namespace: str, kind: str, name: str, *, limit: int = 5, warnings_only: bool = False
) -> list[str]:
    """The latest events of an object, oldest first, as ``Reason: message`` lines."""
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    response = session.request(
        "GET", api_path("", "v1", "events", namespace=namespace), query={"fieldSelector": selector}
    )
    if not response.ok:
        return []
    items = response.json().get("items") or []
    items.sort(
        key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp") or ""
    )
    lines: list[str] = []
    for e in items:
        if warnings_only and e.get("type") != "Warning":
            continue
        line = f"{e.get('reason', '')}: {' '.join(str(e.get('message', '')).split())}"
        if line not in lines:
            lines.append(line)
    return lines[-limit:]


def describe(session: Session, namespace: str, kind: str, name: str, *, limit: int = 3) -> str:
    """Recent events joined for a one-line message ("" if none)."""
    return "; ".join(recent(session, namespace, kind, name, limit=limit))
