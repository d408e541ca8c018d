"""The read side's indexes in S3, kept by the writer: key -> id, project listings and counts, history items.

Each is small and per-issue, so a read costs a bounded number of S3 calls whatever the bucket holds, and no two
issues contend for one object, except a project's count: a compare-and-swap, guarded against replays by the
listing item's `counted` flag and a memory of recent adjustments.
"""

from __future__ import annotations

import random
import time
from typing import Any

from pipeline.keys import is_issue_key, project_of_key
from pipeline.store import (
    Store,
    StoreConflict,
    history_item_key,
    issue_key_index,
    project_count_key,
    project_item_key,
)

_APPLIED_MEMORY = 500  # recent count adjustments remembered, so a retried event never counts twice
_CAS_ATTEMPTS = 20


def project_of(doc: dict[str, Any] | None) -> str | None:
    """The project key an issue document belongs to (from its key, which moves with it)."""
    key = (doc or {}).get("key")
    if is_issue_key(key):
        return project_of_key(key)
    return None


def listing_item(doc: dict[str, Any]) -> dict[str, Any]:
    fields = doc.get("fields") or {}
    status = fields.get("status")
    return {
        "key": doc.get("key"),
        "id": str(doc.get("id")),
        "summary": fields.get("summary"),
        "status": status.get("name") if isinstance(status, dict) else status,
        "updated": fields.get("updated"),
    }


def record_history(
    store: Store, issue_id: str, snapshot: dict[str, Any], version: str, order: list[Any] | None = None
) -> None:
    """One small item per captured event, listed newest first by its key: its own order, or where latest/ put it."""
    capture = snapshot["capture"]
    item = {
        "version": version,
        "event": capture["event_type"],
        "event_time": capture["event_time"],
        "actor": capture["actor"],
        "changes": capture["changes"],
        "key": (snapshot.get("issue") or {}).get("key"),
        "source": capture["source"],
    }
    store.put_json(history_item_key(issue_id, order or capture["order"]), item)


def update_indexes(store: Store, issue_id: str, state: dict[str, Any]) -> None:
    """After `latest/` advanced to `state`: keys, project membership and counts. Safe to repeat."""
    doc = state.get("issue") if not state.get("deleted") else None
    event_id = state["capture"]["event_id"]
    # A deleted issue keeps its keys, so asking for it answers 410, not 404.
    key = (state.get("issue") or {}).get("key")
    if is_issue_key(key):
        store.put_json(issue_key_index(key), {"issue_id": issue_id})
    before, after = state.get("previous_project"), project_of(doc)
    if before and before != after:
        left = store.read_json(project_item_key(before, issue_id))
        if left is not None:
            if left.data.get("counted"):
                _adjust_count(store, before, -1, f"{issue_id}:{event_id}:-", None)
            store.delete(project_item_key(before, issue_id))
    if after and doc is not None:
        key = project_item_key(after, issue_id)
        present = store.read_json(key)
        # The item remembers that it was counted, so a redelivery however late never counts it twice.
        if present is None or not present.data.get("counted"):
            store.put_json(key, {**listing_item(doc), "counted": False})
            _adjust_count(store, after, +1, f"{issue_id}:{event_id}:+", _project_name(doc))
        store.put_json(key, {**listing_item(doc), "counted": True})


def note_project(store: Store, doc: dict[str, Any] | None) -> None:
    """A project an issue was in only at some past event still counts as captured, with what it holds now.

    Whatever order events arrive in, the project listing then ends the same as if they had come in order.
    """
    project = project_of(doc)
    if project and doc is not None:
        fresh = {"project": project, "name": _project_name(doc), "issue_count": 0, "applied": []}
        store.claim(project_count_key(project), fresh)


def _project_name(doc: dict[str, Any]) -> str | None:
    project = (doc.get("fields") or {}).get("project")
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) else None


def _adjust_count(store: Store, project: str, delta: int, token: str, name: str | None) -> None:
    key = project_count_key(project)
    for attempt in range(_CAS_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # a hot project: spread the retries
        current = store.read_json(key)
        data = dict(current.data) if current else {"project": project, "name": name, "issue_count": 0, "applied": []}
        if token in data["applied"]:
            return
        data["issue_count"] = max(0, int(data["issue_count"]) + delta)
        data["applied"] = [*data["applied"], token][-_APPLIED_MEMORY:]
        if name:
            data["name"] = name
        try:
            store.write_json(key, data, current)
        except StoreConflict:
            continue
        return
    raise StoreConflict(key)
