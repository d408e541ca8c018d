"""The writer's job: a queued webhook -> raw copy, snapshot and latest state in S3, then a change for git.

Each attempt reads what the store holds (`_read`), decides what must be written (`decide`, a pure function, tested
without storage) and writes it (`_write`, the only place a capture changes the store); a conditional write of
latest/ that lost its race starts the attempt again."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pipeline.attachments import AskCopies, added
from pipeline.backends import UNAVAILABLE
from pipeline.errors import WebhookRejected
from pipeline.ids import Order
from pipeline.index import note_project, project_of, update_indexes
from pipeline.messages import Change, QueuedEvent
from pipeline.payload import WebhookEvent, parse_event
from pipeline.records import LatestState, SnapshotRecord, as_latest, as_snapshot
from pipeline.settings import MAX_INLINE_MESSAGE_BYTES
from pipeline.snapshot import (
    FieldChange,
    actor,
    apply_event,
    field_changes,
    headline,
    issue_document,
    issue_key,
    order_of,
)
from pipeline.store import (
    ObjectMissing,
    Store,
    StoreConflict,
    Versioned,
    changelog_marker_key,
    latest_key,
    pending_key,
    short_event_id,
    snapshot_key,
    unreadable_key,
)

logger = logging.getLogger(__name__)
_MAX_CHANGE_TEXT = 500  # characters of a changed field's value kept when a change would not fit in SQS
_CAS_ATTEMPTS = 20
_FULL_ISSUE_EVENTS = frozenset({"jira:issue_created", "jira:issue_updated"})
_DELETED = "jira:issue_deleted"


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
    ask_copies: AskCopies | None = None,
) -> Captured:
    """Store one event; safe to run again for the same event after a crash at any point.

    An event that cannot be interpreted (ingest's rule changed since it was queued, a redrive of something ingest
    never took, or a shape no test foresaw) is set aside rather than retried: retrying cannot help, and five
    failures would send it round the dead-letter queue while holding back every later event of its issue.
    Storage and queue failures still raise, so the message is retried.
    """
    if queued.body is not None:
        store.put_raw(queued.raw_key, queued.body, queued.content_type)
        body = queued.body
    else:
        body = store.get_bytes(queued.raw_key)
    event: WebhookEvent | None = None
    try:
        event = parse_event(body, queued.content_type, queued.received_ms)
        return _capture_event(event, queued, store, send_change, now_ms, ask_copies)
    except _RETRIED:
        raise
    except _UNINTERPRETABLE as exc:
        return _set_aside(queued, store, event.issue_id if event else None, exc, now_ms())


# Storage or a queue failed, or a conditional write lost its race: the whole capture is worth a retry.
_RETRIED: tuple[type[Exception], ...] = (*UNAVAILABLE, StoreConflict, ObjectMissing)
# What a payload the writer cannot make sense of raises; anything else (storage, a queue) is worth a retry.
_UNINTERPRETABLE = (WebhookRejected, TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError)


def _set_aside(queued: QueuedEvent, store: Store, issue_id: str | None, exc: Exception, now: int) -> Captured:
    """Keep the record of an event the writer could not interpret where health and `make redrive` find it."""
    reason = exc.body()["error"] if isinstance(exc, WebhookRejected) else type(exc).__name__
    detail = (str(exc).splitlines() or [""])[0][:300]
    store.put_json(
        unreadable_key(queued.event_id),
        {
            "event": json.loads(replace(queued, body=None).to_json()),  # by reference: raw/ holds the body
            "issue_id": issue_id,
            "reason": reason,
            "detail": detail,
            "set_aside_at": now,
        },
    )
    if issue_id is not None:
        # The issue's state still reaches JSync: the next reconcile reads it from Jira's REST API.
        store.put_json(pending_key(issue_id), {"issue_id": issue_id, "reason": "event_unreadable"})
    logger.error(
        "event set aside: the writer could not interpret it; its raw copy is kept",
        extra={"event_id": queued.event_id, "raw_key": queued.raw_key, "reason": reason, "detail": detail},
    )
    return Captured(queued.event_id, issue_id, None, advanced=False)


def _capture_event(
    event: WebhookEvent,
    queued: QueuedEvent,
    store: Store,
    send_change: Callable[[Change], None],
    now_ms: Callable[[], int],
    ask_copies: AskCopies | None,
) -> Captured:
    if event.issue_id is None:
        return Captured(queued.event_id, None, None, advanced=False)
    issue_id = event.issue_id
    snap_key = snapshot_key(issue_id, event.timestamp_ms, queued.event_id)
    # Read, decide, write; a conditional write that lost its race starts again from a fresh read.
    for _ in range(_CAS_ATTEMPTS):
        seen = _read(store, issue_id, _entry(event), queued.event_id, snap_key)
        decision = decide(event, queued, seen, now_ms())
        try:
            return _write(decision, seen.current, event, queued, store, send_change, snap_key, ask_copies)
        except StoreConflict:
            continue
    raise StoreConflict(latest_key(issue_id))


# --- reading: what the decision needs from the store ----------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What the store holds for the event's issue, read before deciding."""

    current: Versioned | None  # latest/, with the ETag its conditional write must match
    entries: dict[str, str]  # changelog entries claimed: entry -> short id of the event that claimed it
    claimed_elsewhere: bool  # this event's entry is another event's (a webhook that reconcile fed first, or back)
    snapshot_stored: bool  # this event's snapshot exists (read only when the entry is claimed elsewhere)

    @property
    def state(self) -> LatestState | None:
        return as_latest(self.current.data) if self.current else None


def _read(store: Store, issue_id: str, entry: str | None, event_id: str, snap_key: str) -> Seen:
    current = store.latest(issue_id)
    entries = _entries(store, issue_id, as_latest(current.data) if current else None)
    elsewhere = _captured_elsewhere(store, issue_id, entries, entry, event_id)
    stored = elsewhere and current is not None and store.exists(snap_key)
    return Seen(current, entries, elsewhere, stored)


# --- deciding: a pure function of what was read and the event ------------------------------------------------


@dataclass(frozen=True)
class Skip:
    """Nothing to write: no issue, or the change is captured under another event already."""


@dataclass(frozen=True)
class StayBelow:
    """latest/ stays where it is: only its claims (and, with `snapshot`, this event's snapshot) are recorded.

    `update` is latest/ with the claims and hidden versions recorded, or None when that changes nothing."""

    update: LatestState | None
    snapshot: SnapshotRecord | None  # written as a snapshot, not a version, when this event is older than latest/


@dataclass(frozen=True)
class Resend:
    """latest/ is this event's already (an earlier attempt died after writing it): send its change again."""

    state: LatestState


@dataclass(frozen=True)
class Advance:
    """latest/ moves to this event: its snapshot first, then latest/ (built from the snapshot as stored)."""

    snapshot: SnapshotRecord
    order: Order
    previous_doc: dict[str, Any] | None
    prior: LatestState | None
    entries: dict[str, str]

    def state_from(self, snapshot: SnapshotRecord, snap_key: str, event: WebhookEvent) -> LatestState:
        return _latest_state(snapshot, snap_key, self.previous_doc, self.order, event, self.prior, self.entries)


Decision = Skip | StayBelow | Resend | Advance


def decide(event: WebhookEvent, queued: QueuedEvent, seen: Seen, now: int) -> Decision:
    """What capturing `event` must write, given what the store holds: no storage is touched here."""
    state = seen.state
    if seen.claimed_elsewhere:
        if state is not None and seen.snapshot_stored:
            # Ours from an attempt before the entry went to the other event: a snapshot, not a version.
            return StayBelow(_below(state, seen.entries, queued.event_id, leave_out=True), None)
        return Skip()
    if state is not None and state["capture"]["event_id"] == queued.event_id:
        # We wrote latest/ (and the snapshot before it) on an earlier attempt and may have died before the send
        # or the indexes: do both again; each is idempotent, and the committer drops what it already holds.
        return Resend(state)
    claimed = _claim(seen.entries, _entry(event), queued.event_id)
    previous_doc = _document(state)
    snapshot = _snapshot(event, queued, apply_event(previous_doc, event), previous_doc, now)
    order = order_of(event, queued.event_id)
    advancing = order if state is None else _advancing_order(state, event, order)
    if advancing is None and state is not None:
        # Older than latest/: its claim goes into latest/ before its snapshot, so a capture cut short still holds
        # its entry. A second deletion stays out of the history, whose top is the first.
        return StayBelow(_below(state, claimed, queued.event_id, event.event_name == _DELETED), snapshot)
    return Advance(snapshot, advancing or order, previous_doc, state, claimed)


def _below(state: LatestState, entries: dict[str, str], event_id: str, leave_out: bool) -> LatestState | None:
    """latest/ with `entries` claimed and, with `leave_out`, this event's snapshot hidden from the history; None if
    that is what it holds already."""
    updated: LatestState = {**state, "entries": entries}
    hidden = list(state.get("not_in_history") or [])
    if leave_out and short_event_id(event_id) not in hidden:
        updated["not_in_history"] = [*hidden, short_event_id(event_id)]
    return None if updated == state else updated


# --- writing: the one place a capture changes the store ------------------------------------------------------


def _write(
    decision: Decision,
    expected: Versioned | None,
    event: WebhookEvent,
    queued: QueuedEvent,
    store: Store,
    send_change: Callable[[Change], None],
    snap_key: str,
    ask_copies: AskCopies | None = None,
) -> Captured:
    """Carry out `decision`; latest/ is written only if it is still `expected` (else StoreConflict: read again)."""
    issue_id = str(event.issue_id)
    latest = latest_key(issue_id)
    match decision:
        case Skip():
            return Captured(queued.event_id, issue_id, None, advanced=False)
        case Resend(state):
            captured = _advance(event, queued, send_change, state, snap_key)
            update_indexes(store, issue_id, state)
            return captured
        case StayBelow(update, snapshot):
            if update is not None:
                store.write_json(latest, update, expected)
            if snapshot is None or expected is None:
                return Captured(queued.event_id, issue_id, None, advanced=False)
            stored = _put_snapshot(store, snap_key, snapshot)
            if project_of(stored["issue"]) != project_of(_live_document(as_latest(expected.data))):
                note_project(store, stored["issue"])
            return Captured(queued.event_id, issue_id, snap_key, advanced=False)
        case Advance():
            # The snapshot before latest/, which names it; the claim goes in with latest/'s move, in the same write.
            stored = _put_snapshot(store, snap_key, decision.snapshot)
            new_state = decision.state_from(stored, snap_key, event)
            if ask_copies is not None and not new_state["deleted"]:
                # Before latest/ moves: once it has, a retry sees no attachment as new. A request sent for a move
                # that then loses its race asks for an attachment the issue really has, which is harmless.
                version = snap_key.rsplit("/", 1)[-1].removesuffix(".json")
                if refs := added(decision.previous_doc, new_state["issue"], issue_id, version):
                    ask_copies(refs)
            store.write_json(latest, new_state, expected)
            # The change for git first: a slow index (a busy project count) must not hold git back.
            captured = _advance(event, queued, send_change, new_state, snap_key)
            update_indexes(store, issue_id, new_state)
            return captured


def _entry(event: WebhookEvent) -> str | None:
    """The changelog entry an event captures (its id, or `created`), which no other event may capture again."""
    if event.event_name == "jira:issue_created":
        return "created"
    if event.changelog_id > 0:
        return str(event.changelog_id)
    return None


def _entries(store: Store, issue_id: str, state: LatestState | None) -> dict[str, str]:
    """The entries captured for the issue, each with the short id of the event that claimed it."""
    if state is None:
        return {}
    if "entries" in state:
        return dict(state["entries"])
    # latest/ from before claims moved into it: they are marker objects, which name their event ("": read it).
    return dict.fromkeys(sorted(store.changelog_markers(issue_id)), "")


def _captured_elsewhere(store: Store, issue_id: str, entries: dict[str, str], entry: str | None, event_id: str) -> bool:
    """True if this change is already captured under another event id: a webhook that reconcile fed first, or
    the other way round. The first to claim the changelog entry keeps it; a retry of that same event goes on."""
    holder = entries.get(entry) if entry is not None else None
    if holder is None or entry is None:
        return False
    if holder == "":
        found = store.read_json(changelog_marker_key(issue_id, entry))
        return found is not None and found.data.get("event_id") != event_id
    return holder != short_event_id(event_id)


def _claim(entries: dict[str, str], entry: str | None, event_id: str) -> dict[str, str]:
    """`entries` with this event's entry claimed by it (it holds it already, or nobody does)."""
    if entry is None or entries.get(entry):
        return entries
    return {**entries, entry: short_event_id(event_id)}


def _put_snapshot(store: Store, key: str, snapshot: SnapshotRecord) -> SnapshotRecord:
    """Write the snapshot unless an earlier attempt did: what was stored then is the record, not a recomputation."""
    if store.put_snapshot(key, snapshot):
        return snapshot
    return as_snapshot(dict(json.loads(store.get_bytes(key))))


def _advancing_order(state: LatestState, event: WebhookEvent, order: Order) -> Order | None:
    """Where latest/ goes if this event moves it, or None if it does not.

    Newer events advance. Two older ones do too, because they carry what the newer state lacks: the issue's
    deletion (a cascaded delete of its comments can be processed first) and the first full issue over a
    document built from a comment's cut-down issue. Those take an order just above the current one, so the
    state still only moves forward and the committer still sees a newer change.
    """
    if state.get("deleted"):
        return None
    current = Order.of_state(state)
    if order > current:
        return order
    fills_in = state.get("partial") and event.event_name in _FULL_ISSUE_EVENTS
    if event.event_name == _DELETED or fills_in:
        return Order(current.time_ms, current.changelog_id, f"{current.event_id}+{order.event_id}")
    return None


def _document(state: LatestState | None) -> dict[str, Any] | None:
    if not state:
        return None
    issue = state.get("issue")
    return issue if isinstance(issue, dict) else None


def _live_document(state: LatestState) -> dict[str, Any] | None:
    """The issue as it stands, or None once deleted (its project no longer lists it)."""
    return None if state.get("deleted") else _document(state)


def _snapshot(
    event: WebhookEvent, queued: QueuedEvent, doc: dict[str, Any] | None, previous: dict[str, Any] | None, now: int
) -> SnapshotRecord:
    if doc is None:  # a deletion: keep the issue as it was, from the store or else from the payload
        issue = event.data.get("issue")
        shown = previous or (issue_document(issue) if isinstance(issue, dict) else None)
    return {
        "issue": doc if doc is not None else shown,
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


def _latest_state(
    snapshot: SnapshotRecord,
    snap_key: str,
    previous_doc: dict[str, Any] | None,
    order: Order,
    event: WebhookEvent,
    state: LatestState | None,
    entries: dict[str, str],
) -> LatestState:
    capture = snapshot["capture"]
    collection_event = event.event_name.split("_", 1)[0] in ("comment", "worklog")
    latest: LatestState = {
        "issue": snapshot["issue"],
        "capture": capture,
        "order": order.as_list(),
        # Built from a comment's or worklog's cut-down issue only: the first full issue event fills it in.
        "partial": collection_event and (state is None or bool(state.get("partial"))),
        "snapshot_key": snap_key,
        "deleted": capture["deleted"],
        # Where the issue was before this event: a move names the old key and leaves the old project's listing.
        "previous_key": (previous_doc or {}).get("key"),
        "previous_project": project_of(previous_doc),
        # The changelog entries captured (entry -> short event id): claimed here, in the write that moves latest/.
        "entries": entries,
    }
    if state and state.get("not_in_history"):
        latest["not_in_history"] = state["not_in_history"]
    if capture["deleted"]:
        latest["deleted_at"] = capture["event_time"]
        latest["deleted_by"] = capture["actor"]
    return latest


def _advance(
    event: WebhookEvent,
    queued: QueuedEvent,
    send_change: Callable[[Change], None],
    state: LatestState,
    snap_key: str,
) -> Captured:
    capture = state["capture"]
    key = issue_key(state["issue"], event)
    changes = [FieldChange(c["field"], c["from"], c["to"]) for c in capture["changes"]]
    change = Change(
        issue_id=str(event.issue_id),
        key=key,
        previous_key=state.get("previous_key"),
        event_id=queued.event_id,
        event_name=event.event_name,
        order=Order.of_state(state),
        actor=capture["actor"],
        subject=headline(event, key or str(event.issue_id), state.get("previous_key"), changes),
        changes=capture["changes"],
        deleted=bool(state["deleted"]),
        snapshot_key=snap_key,
        document=None if state["deleted"] else state["issue"],
        event_time_ms=event.timestamp_ms,
    )
    send_change(_fit_in_a_message(change))
    return Captured(queued.event_id, event.issue_id, snap_key, advanced=True)


def _fit_in_a_message(change: Change) -> Change:
    """SQS takes 1 MiB: a big document travels by its snapshot key, long field values are cut (as in git)."""
    if len(change.to_json()) <= MAX_INLINE_MESSAGE_BYTES:
        return change
    change = replace(change, document=None)
    if len(change.to_json()) <= MAX_INLINE_MESSAGE_BYTES:
        return change
    return replace(change, changes=[{k: _cut(v) for k, v in c.items()} for c in change.changes])


def _cut(value: Any) -> Any:
    return value[:_MAX_CHANGE_TEXT] + "..." if isinstance(value, str) and len(value) > _MAX_CHANGE_TEXT else value
