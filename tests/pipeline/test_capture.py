"""The writer's decision, without storage: `capture.decide` from what was read and the event to what must be written.

The writes themselves, the compare-and-swap and crashes between them are tested through the handler
(tests/functions/test_writer.py, tests/test_properties.py, tests/test_faults.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.capture import Advance, Resend, Seen, Skip, StayBelow, decide
from pipeline.ids import Order
from pipeline.payload import WebhookEvent, parse_event
from pipeline.store import Versioned, short_event_id, snapshot_key
from tests.builders import fixture_json, queued_event

NOW = 1_764_100_000_000


def event(name: str, **changes: Any) -> tuple[WebhookEvent, bytes]:
    data = {**fixture_json(name), **changes}
    body = json.dumps(data).encode()
    return parse_event(body, "application/json", NOW), body


def seen(state: dict[str, Any] | None, claimed_elsewhere: bool = False, snapshot_stored: bool = False) -> Seen:
    current = Versioned(state, '"etag"') if state is not None else None
    return Seen(current, dict((state or {}).get("entries") or {}), claimed_elsewhere, snapshot_stored)


def captured(name: str, event_id: str, state: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """latest/ after `name` is captured over `state`, built by deciding alone (the snapshot as decided)."""
    webhook, body = event(name, **changes)
    decision = decide(webhook, queued_event(event_id, body), seen(state), NOW)
    assert isinstance(decision, Advance)
    key = snapshot_key("10042", webhook.timestamp_ms, event_id)
    return decision.state_from(decision.snapshot, key, webhook)


def test_a_first_event_advances_and_claims_its_entry() -> None:
    # Given nothing stored for the issue, When its creation is decided
    webhook, body = event("issue_created.json")
    decision = decide(webhook, queued_event("c-1", body), seen(None), NOW)
    # Then latest/ moves to it, claiming the `created` entry, with the snapshot of the issue as created
    assert isinstance(decision, Advance)
    assert decision.order == Order(webhook.timestamp_ms, 0, "c-1")
    assert decision.entries == {"created": short_event_id("c-1")}
    assert decision.snapshot["issue"]["key"] == "OPS-17" and decision.snapshot["capture"]["event_id"] == "c-1"


def test_a_newer_update_advances_past_the_state_it_read() -> None:
    state = captured("issue_created.json", "c-1")
    webhook, body = event("issue_updated.json")
    decision = decide(webhook, queued_event("u-1", body), seen(state), NOW)
    assert isinstance(decision, Advance)
    assert decision.order > Order.of_state(state)
    assert set(decision.entries) == {"created", "10789"}
    new_state = decision.state_from(decision.snapshot, "snapshots/10042/x.json", webhook)
    assert new_state["previous_key"] == "OPS-17" and new_state["snapshot_key"] == "snapshots/10042/x.json"


def test_an_older_update_stays_below_with_its_claim_and_its_snapshot() -> None:
    # Given latest/ at the update, When the stale update (older time, older changelog) is decided
    state = captured("issue_updated.json", "u-1", captured("issue_created.json", "c-1"))
    webhook, body = event("issue_updated_stale.json", timestamp=1764000050000)
    decision = decide(webhook, queued_event("s-1", body), seen(state), NOW)
    # Then latest/ does not move: only its claim is recorded, and the event is kept as a snapshot
    assert isinstance(decision, StayBelow)
    assert decision.update is not None and decision.update["entries"]["10788"] == short_event_id("s-1")
    assert decision.update["capture"] == state["capture"] and decision.snapshot is not None


def test_an_entry_claimed_by_another_event_writes_nothing_unless_our_snapshot_was_written() -> None:
    state = captured("issue_updated.json", "u-1", captured("issue_created.json", "c-1"))
    webhook, body = event("issue_updated.json")
    # When reconcile's copy of the same changelog entry arrives after the webhook's
    assert isinstance(decide(webhook, queued_event("r-1", body), seen(state, claimed_elsewhere=True), NOW), Skip)
    # And when an earlier attempt of it had written its snapshot: that snapshot is hidden from the history
    decision = decide(webhook, queued_event("r-1", body), seen(state, True, snapshot_stored=True), NOW)
    assert isinstance(decision, StayBelow) and decision.snapshot is None and decision.update is not None
    assert decision.update["not_in_history"] == [short_event_id("r-1")]


def test_the_event_latest_already_names_is_sent_again_not_rewritten() -> None:
    state = captured("issue_created.json", "c-1")
    webhook, body = event("issue_created.json")
    assert decide(webhook, queued_event("c-1", body), seen(state), NOW) == Resend(state)


def test_a_late_deletion_still_advances_just_above_the_state() -> None:
    # Given latest/ at a comment made after the deletion's own timestamp (cascaded events come in any order)
    state = captured("comment_created.json", "k-1", captured("issue_created.json", "c-1"), timestamp=1764000600000)
    webhook, body = event("issue_deleted.json")
    decision = decide(webhook, queued_event("d-1", body), seen(state), NOW)
    # Then the deletion moves latest/ anyway, ordered just above what it held
    assert isinstance(decision, Advance)
    current = Order.of_state(state)
    assert decision.order > current and decision.order.time_ms == current.time_ms
    assert decision.snapshot["capture"]["deleted"] is True


@given(first=st.integers(1, 10**12), second=st.integers(1, 10**12), changelog=st.integers(1, 10**6))
def test_latest_only_moves_forward_whatever_order_updates_come_in(first: int, second: int, changelog: int) -> None:
    base = captured("issue_created.json", "c-1", timestamp=1)
    a = captured("issue_updated.json", "a", base, timestamp=first + 1, changelog={"id": str(changelog), "items": []})
    webhook, body = event("issue_updated.json", timestamp=second + 1, changelog={"id": str(changelog + 1), "items": []})
    decision = decide(webhook, queued_event("b", body), seen(a), NOW)
    newer = Order(second + 1, changelog + 1, "b") > Order.of_state(a)
    # An older update stays below; a newer one advances, to its own order
    assert isinstance(decision, Advance if newer else StayBelow)
    if isinstance(decision, Advance):
        assert decision.order == Order(second + 1, changelog + 1, "b")
