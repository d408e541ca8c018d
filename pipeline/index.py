"""The read side's indexes in S3, kept by the writer: key -> id, and project membership and counts.

Each is written only when it changes (a new key, an issue entering or leaving a project), so an update that
leaves both alone writes none. A project's count is the one object issues share: a compare-and-swap, guarded
against replays by the membership item's `counted` flag and a memory of recent adjustments.
"""

from __future__ import annotations

import random
import time
from typing import Any

from pipeline.ids import is_issue_key, project_of_key
from pipeline.records import LatestState
from pipeline.store import Store, StoreConflict, issue_key_index, project_count_key, project_item_key

_APPLIED_MEMORY = 500  # recent count adjustments remembered, so a retried event never counts twice
_CAS_ATTEMPTS = 20


def project_of(doc: dict[str, Any] | None) -> str | None:
    """The project key an issue document belongs to (from its key, which moves with it)."""
    key = (doc or {}).get("key")
    if isinstance(key, str) and is_issue_key(key):
        return project_of_key(key)
    return None


def update_indexes(store: Store, issue_id: str, state: LatestState) -> None:
    """After `latest/` advanced to `state`: a new key, and project membership and counts if they changed.
    Safe to repeat."""
    key = (state.get("issue") or {}).get("key")
    # A deleted issue keeps its keys, so asking for it answers 410, not 404; an old key still finds a moved issue.
    if isinstance(key, str) and is_issue_key(key) and key != state.get("previous_key"):
        store.put_json(issue_key_index(key), {"issue_id": issue_id})
    doc = None if state.get("deleted") else state.get("issue")
    before, after = state.get("previous_project"), project_of(doc)
    if before == after:
        return
    event_id = state["capture"]["event_id"]
    if before:
        _leave(store, before, issue_id, event_id)
    if after and doc is not None:
        _enter(store, after, issue_id, event_id, _project_name(doc))


def _enter(store: Store, project: str, issue_id: str, event_id: str, name: str | None) -> None:
    key = project_item_key(project, issue_id)
    present = store.read_json(key)
    # The item remembers that it was counted, so a redelivery however late never counts it twice.
    if present is None or not present.data.get("counted"):
        store.put_json(key, {"issue_id": issue_id, "counted": False})  # listed even while a busy count waits
        _adjust_count(store, project, +1, f"{issue_id}:{event_id}:+", name)
        store.put_json(key, {"issue_id": issue_id, "counted": True})


def _leave(store: Store, project: str, issue_id: str, event_id: str) -> None:
    key = project_item_key(project, issue_id)
    left = store.read_json(key)
    if left is not None:
        if left.data.get("counted"):
            _adjust_count(store, project, -1, f"{issue_id}:{event_id}:-", None)
        store.delete(key)


def note_project(store: Store, doc: dict[str, Any] | None) -> None:
    """A project an issue was in only at some past event still counts as captured, with what it holds now.

    Whatever order events arrive in, the project listing then ends the same as if they had come in order.
    """
    project = project_of(doc)
    if project and doc is not None:
        fresh: dict[str, Any] = {"project": project, "name": _project_name(doc), "issue_count": 0, "applied": []}
        store.claim(project_count_key(project), fresh)


def _project_name(doc: dict[str, Any]) -> str | None:
    fields = doc.get("fields")
    project = fields.get("project") if isinstance(fields, dict) else None
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
