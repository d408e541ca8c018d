"""The writer's job: a queued webhook -> raw copy, snapshot and latest state in S3, then a change for git."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.index import project_of, record_history, update_indexes
from pipeline.messages import Change, QueuedEvent
from pipeline.payload import WebhookEvent, parse_event
from pipeline.snapshot import (
    FieldChange,
    Order,
    actor,
    apply_event,
    canonical_json,
    field_changes,
    headline,
    issue_key,
    order_of,
)
from pipeline.store import Store, StoreConflict, latest_key, snapshot_key

_MAX_INLINE_DOCUMENT = 600 * 1024  # larger documents reach the committer by their snapshot key
_CAS_ATTEMPTS = 20


@dataclass(frozen=True)
class Captured:
    """What capturing one event did."""

    event_id: str
    issue_id: str | None
    snapshot_key: str | None
    advanced: bool  # latest/ moved to this event, so git gets a commit for it


def capture(
    queued: QueuedEvent,
    store: Store,
    send_change: Callable[[Change], None],
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> Captured:
    """Store one event; safe to run again for the same event after a crash at any point."""
    if queued.body is not None:
        store.put_raw(queued.raw_key, queued.body, queued.content_type)
        body = queued.body
    else:
        body = store.get_bytes(queued.raw_key)
    event = parse_event(body, queued.content_type, queued.received_ms)
    if event.issue_id is None:
        return Captured(queued.event_id, None, None, advanced=False)

    issue_id = event.issue_id
    order = order_of(event, queued.event_id)
    for _ in range(_CAS_ATTEMPTS):
        current = store.latest(issue_id)
        state = current.data if current else None
        previous_doc = _document(state)
        doc = apply_event(previous_doc, event)
        snap_key = snapshot_key(issue_id, event.timestamp_ms, queued.event_id)
        snapshot = _snapshot(event, queued, doc, previous_doc, now_ms())
        store.put_snapshot(snap_key, snapshot)
        record_history(store, issue_id, snapshot, snap_key.rsplit("/", 1)[1].removesuffix(".json"))
        if state is not None and state["capture"]["event_id"] == queued.event_id:
            # We wrote latest/ on an earlier attempt and may have died before the indexes or the send:
            # do both again; both are idempotent, and the committer drops what it already holds.
            update_indexes(store, issue_id, state)
            return _advance(event, queued, send_change, state, snap_key)
        if state is not None and (state.get("deleted") or Order.from_list(state["capture"]["order"]) >= order):
            return Captured(queued.event_id, issue_id, snap_key, advanced=False)
        new_state = _latest_state(snapshot, snap_key, previous_doc)
        try:
            store.write_json(latest_key(issue_id), new_state, current)
        except StoreConflict:
            continue
        update_indexes(store, issue_id, new_state)
        return _advance(event, queued, send_change, new_state, snap_key)
    raise StoreConflict(latest_key(issue_id))


def _document(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if not state:
        return None
    issue = state.get("issue")
    return issue if isinstance(issue, dict) else None


def _snapshot(
    event: WebhookEvent, queued: QueuedEvent, doc: dict[str, Any] | None, previous: dict[str, Any] | None, now: int
) -> dict[str, Any]:
    return {
        "issue": doc if doc is not None else previous,
        "capture": {
            "event_id": queued.event_id,
            "event_type": event.event_name,
            "event_time": event.timestamp_ms,
            "captured_at": now,
            "received_at": queued.received_ms,
            "actor": actor(event),
            "changelog": event.data.get("changelog"),
            "changes": [c.as_dict() for c in field_changes(event, previous, doc)],
            "order": order_of(event, queued.event_id).as_list(),
            "source": queued.source,
            "deleted": doc is None,
        },
    }


def _latest_state(snapshot: dict[str, Any], snap_key: str, previous_doc: dict[str, Any] | None) -> dict[str, Any]:
    capture = snapshot["capture"]
    latest: dict[str, Any] = {
        "issue": snapshot["issue"],
        "capture": capture,
        "snapshot_key": snap_key,
        "deleted": capture["deleted"],
        # Where the issue was before this event: a move names the old key and leaves the old project's listing.
        "previous_key": (previous_doc or {}).get("key"),
        "previous_project": project_of(previous_doc),
    }
    if capture["deleted"]:
        latest["deleted_at"] = capture["event_time"]
        latest["deleted_by"] = capture["actor"]
    return latest


def _advance(
    event: WebhookEvent,
    queued: QueuedEvent,
    send_change: Callable[[Change], None],
    state: dict[str, Any],
    snap_key: str,
) -> Captured:
    doc = None if state["deleted"] else state["issue"]
    capture = state["capture"]
    key = issue_key(state["issue"], event)
    changes = [FieldChange(c["field"], c["from"], c["to"]) for c in capture["changes"]]
    inline = doc is None or len(canonical_json(doc)) <= _MAX_INLINE_DOCUMENT
    send_change(
        Change(
            issue_id=str(event.issue_id),
            key=key,
            previous_key=state.get("previous_key"),
            event_id=queued.event_id,
            event_name=event.event_name,
            order=capture["order"],
            actor=capture["actor"],
            subject=headline(event, key or str(event.issue_id), state.get("previous_key"), changes),
            changes=capture["changes"],
            deleted=bool(state["deleted"]),
            snapshot_key=snap_key,
            document=doc if inline else None,
        )
    )
    return Captured(queued.event_id, event.issue_id, snap_key, advanced=True)
