"""pipeline.reconcile.feed without a queue: events keep the order they were fed, a full outbox sends itself, and
event ids are stable, so a step that feeds again sends what it sent before."""

from __future__ import annotations

import json

import pytest

from pipeline.reconcile import feed as feed_module
from pipeline.reconcile.feed import Feed, Outgoing
from pipeline.reconcile.rebuild import RebuiltEvent


def test_a_full_outbox_sends_itself_and_flush_sends_the_rest_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an outbox that holds two events
    monkeypatch.setattr(feed_module, "OUTBOX_LIMIT", 2)
    sent: list[Outgoing] = []
    feed = Feed(sent.append, lambda: 1_764_065_700_000)

    # When an issue's creation, one of its changes and its deletion are fed, then flushed
    feed.rebuilt("10001", RebuiltEvent("created", "jira:issue_created", 1, {"webhookEvent": "jira:issue_created"}))
    feed.rebuilt("10001", RebuiltEvent("200", "jira:issue_updated", 2, {"webhookEvent": "jira:issue_updated"}))
    feed.deletion("10001", {"id": "10001", "key": "OPS-1"}, 3)
    feed.flush()

    # Then two sends, in the order fed, each event in its issue's group, with ids a retry gives again
    assert [[(queued.event_id, group) for queued, group in batch] for batch in sent] == [
        [("rc-10001-created", "10001"), ("rc-10001-200", "10001")],
        [("rc-10001-deleted", "10001")],
    ]
    deletion = json.loads(sent[1][0][0].body or b"{}")
    assert deletion == {"timestamp": 3, "webhookEvent": "jira:issue_deleted", "issue": {"id": "10001", "key": "OPS-1"}}
    assert feed.outbox == [] and all(queued.source == "reconcile" for batch in sent for queued, _ in batch)
