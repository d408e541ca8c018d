"""FIFO queues: where each message goes and with which deduplication id, sent ten to a call.

The caller names an event's group (`payload.message_group`, `payload.issue_group`); changes go in their issue's
group, attachment copies in one group each, bells and reconcile steps in one group each."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline.backends import Outgoing, QueueBus
from pipeline.messages import Change, QueuedEvent

if TYPE_CHECKING:  # ingest ships this module without the attachments one
    from pipeline.attachments import AttachmentRef

BELL_GROUP = "committer"  # one group on the bell queue: the committer never runs twice at once
SYNC_GROUP = "reconcile"  # one group: one reconcile job runs at a time
_BATCH_MESSAGES = 10  # SendMessageBatch's limit
_BATCH_BYTES = 1024 * 1024 - 16 * 1024  # and its payload limit (the sum of the bodies), less room for attributes


class Queues:
    """Sends to the events, commits, bell and sync queues through the queue port."""

    def __init__(
        self,
        bus: QueueBus,
        events_queue: str,
        commits_queue: str,
        sync_queue: str | None = None,
        bell_queue: str | None = None,
        attachments_queue: str | None = None,
    ) -> None:
        self.bus = bus
        self.names = {"events": events_queue, "commits": commits_queue}
        if sync_queue:
            self.names["sync"] = sync_queue
        if bell_queue:
            self.names["bell"] = bell_queue
        if attachments_queue:
            self.names["attachments"] = attachments_queue

    def send_event(self, event: QueuedEvent, group: str, dedup_id: str | None = None) -> None:
        """`dedup_id` defaults to the event id: a delivery Jira retries within SQS's 5 minutes is queued once."""
        self.send_events([(event, group, dedup_id)])

    def send_events(self, events: list[tuple[QueuedEvent, str, str | None]]) -> None:
        """(event, group, dedup id or None) each, in order, as few SendMessageBatch calls as the limits allow."""
        outgoing = [Outgoing(e.to_json(), group, (dedup or e.event_id)[:128]) for e, group, dedup in events]
        self._send("events", outgoing)

    def send_change(self, change: Change) -> None:
        self.send_changes([change])

    def send_changes(self, changes: list[Change]) -> None:
        """Changes for git, grouped by issue (its order is kept, other issues go past), then the committer's bell."""
        if not changes:
            return
        self._send("commits", [Outgoing(c.to_json(), c.issue_id, change_dedup_id(c)) for c in changes])
        self.ring()

    def ring(self) -> None:
        """Wake the committer: it drains the commits queue. One bell a call, whatever it follows; a bell that finds
        nothing to do costs one empty receive. Without a bell queue (older settings) changes wait for the schedule."""
        if "bell" in self.names:
            self.bus.send(self.names["bell"], [Outgoing('{"ring":true}', BELL_GROUP, uuid.uuid4().hex)])

    def send_copies(self, refs: list[AttachmentRef]) -> None:
        """Attachment copy requests, a group each: copies need no order, and one Jira keeps failing must not hold
        back the others. Asked twice within 5 minutes, an attachment is queued once; a later repeat finds the
        index's record and stops."""
        outgoing = [Outgoing(r.to_json(), f"{r.issue_id}-{r.attachment_id}", _copy_dedup_id(r)) for r in refs]
        self._send("attachments", outgoing)

    def send_sync(self, message: dict[str, Any]) -> None:
        """A reconcile job to start or continue; the body (job id and step) is its own deduplication id."""
        body = json.dumps(message, sort_keys=True, separators=(",", ":"))
        self.bus.send(self.names["sync"], [Outgoing(body, SYNC_GROUP, hashlib.sha256(body.encode()).hexdigest())])

    def _send(self, queue: str, outgoing: list[Outgoing]) -> None:
        for batch in batches(outgoing):
            self.bus.send(self.names[queue], batch)


def batches(outgoing: list[Outgoing]) -> Iterator[list[Outgoing]]:
    """Consecutive runs of at most ten messages and at most SendMessageBatch's payload: order is kept."""
    batch: list[Outgoing] = []
    size = 0
    for message in outgoing:
        length = len(message.body.encode("utf-8"))
        if batch and (len(batch) == _BATCH_MESSAGES or size + length > _BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += length
    if batch:
        yield batch


def _copy_dedup_id(ref: AttachmentRef) -> str:
    return hashlib.sha256(f"{ref.issue_id}:{ref.attachment_id}".encode()).hexdigest()


def change_dedup_id(change: Change) -> str:
    return hashlib.sha256(f"{change.issue_id}:{change.event_id}".encode()).hexdigest()
