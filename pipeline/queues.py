"""FIFO queues: where each message goes, with which group and deduplication id."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipeline.backends import Outgoing, QueueBus
from pipeline.messages import Change, QueuedEvent

COMMITS_GROUP = "commits"  # one group: the committer never runs twice at once
SYNC_GROUP = "reconcile"  # one group: one reconcile job runs at a time


class Queues:
    """Sends to the events, commits and sync queues through the queue port."""

    def __init__(self, bus: QueueBus, events_queue: str, commits_queue: str, sync_queue: str | None = None) -> None:
        self.bus = bus
        self.names = {"events": events_queue, "commits": commits_queue}
        if sync_queue:
            self.names["sync"] = sync_queue

    def send_event(self, event: QueuedEvent, group: str, dedup_id: str | None = None) -> None:
        """`dedup_id` defaults to the event id: a delivery Jira retries within SQS's 5 minutes is queued once."""
        self.bus.send(self.names["events"], [Outgoing(event.to_json(), group, (dedup_id or event.event_id)[:128])])

    def send_change(self, change: Change) -> None:
        self.bus.send(self.names["commits"], [Outgoing(change.to_json(), COMMITS_GROUP, change_dedup_id(change))])

    def send_sync(self, message: dict[str, Any]) -> None:
        """A reconcile job to start or continue; the body (job id and step) is its own deduplication id."""
        body = json.dumps(message, sort_keys=True, separators=(",", ":"))
        self.bus.send(self.names["sync"], [Outgoing(body, SYNC_GROUP, hashlib.sha256(body.encode()).hexdigest())])


def change_dedup_id(change: Change) -> str:
    return hashlib.sha256(f"{change.issue_id}:{change.event_id}".encode()).hexdigest()
