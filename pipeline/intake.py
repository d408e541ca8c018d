"""Ingest's job: check a webhook delivery (signature, size, type, shape), queue it durably, say what was queued."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

from pipeline.backends import UNAVAILABLE
from pipeline.errors import WebhookRejected
from pipeline.messages import QueuedEvent
from pipeline.payload import event_id_for, file_extension, media_type, message_group, parse_event
from pipeline.queues import Queues
from pipeline.settings import MAX_INLINE_MESSAGE_BYTES, MAX_WEBHOOK_BYTES, Settings
from pipeline.signature import verify
from pipeline.store import Store, pending_key, raw_key


@dataclass(frozen=True)
class Accepted:
    event_id: str
    issue_key: str | None

    def body(self) -> dict[str, str | None]:
        return {"status": "queued", "issue_key": self.issue_key, "event_id": self.event_id}


def accept(body: bytes, headers: dict[str, str], settings: Settings, queues: Queues, store: Store) -> Accepted:
    """Validate and enqueue one delivery; raises WebhookRejected with the status Jira should see."""
    _check_signature(body, headers, settings)
    if len(body) > MAX_WEBHOOK_BYTES:
        raise _too_large(body, store)
    content_type = headers.get("content-type", "")
    received_ms = int(time.time() * 1000)
    event = parse_event(body, content_type, received_ms, full=False)
    event_id = event_id_for(headers.get("x-atlassian-webhook-identifier"), body)
    key = raw_key(event_id, received_ms, file_extension(content_type))
    queued = QueuedEvent(event_id, received_ms, media_type(content_type), key, body)
    try:
        enqueue(queued, message_group(event), queues, store)
    except StorageUnavailable:
        raise WebhookRejected(503, "storage_unavailable", "Storage is unavailable; retry the delivery.") from None
    except UNAVAILABLE:
        raise WebhookRejected(
            503, "queue_unavailable", "The events queue is unavailable; retry the delivery."
        ) from None
    return Accepted(event_id, event.issue_key)


def _check_signature(body: bytes, headers: dict[str, str], settings: Settings) -> None:
    if not settings.webhook_secrets:
        return
    try:
        verify(settings.webhook_secrets, body, headers.get("x-hub-signature"))
    except WebhookRejected:
        # The secret may have been rotated since this instance read it: read it again (rate-limited).
        if not settings.secrets.refresh("webhook_secret"):
            raise
        verify(settings.webhook_secrets, body, headers.get("x-hub-signature"))


# Jira's issue object starts with its id; a body too big to parse is scanned this far for it.
_ISSUE_ID_IN_PREFIX = re.compile(rb'"issue"\s*:\s*\{\s*"id"\s*:\s*"?([0-9]{1,20})"?')
_SCAN_BYTES = 64 * 1024


def _too_large(body: bytes, store: Store) -> WebhookRejected:
    """413, after noting the issue for the next reconcile run, which reads it from Jira's REST API instead."""
    detail = f"Body is {len(body)} bytes; the limit is {MAX_WEBHOOK_BYTES} bytes."
    found = _ISSUE_ID_IN_PREFIX.search(body[:_SCAN_BYTES])
    if not found:
        return WebhookRejected(413, "body_too_large", detail)
    issue_id = found.group(1).decode()
    try:
        store.put_json(pending_key(issue_id), {"issue_id": issue_id, "reason": "webhook_too_large", "bytes": len(body)})
    except UNAVAILABLE:
        # Jira does not retry a 413, so the note must be kept: a 503 makes it try again.
        return WebhookRejected(503, "storage_unavailable", "Storage is unavailable; retry the delivery.")
    return WebhookRejected(413, "body_too_large", f"{detail} Issue {issue_id} is queued for the next reconcile.")


class StorageUnavailable(Exception):
    """S3 refused the raw copy of a body too big to travel in the message."""


def enqueue(queued: QueuedEvent, group: str, queues: Queues, store: Store) -> None:
    """Put one event on the events queue, by reference to its raw S3 copy when it is too big for a message."""
    queues.send_event(_sendable(queued, store), group)


def enqueue_many(events: list[tuple[QueuedEvent, str]], queues: Queues, store: Store) -> None:
    """Put (event, message group) pairs on the events queue in order, ten to a call as SQS allows; each event too big
    for a message goes by reference to its raw S3 copy, as `enqueue` sends it."""
    # Every raw copy is stored before the first send: a message never points at a copy that is not there.
    queues.send_events([(_sendable(queued, store), group, None) for queued, group in events])


def _sendable(queued: QueuedEvent, store: Store) -> QueuedEvent:
    """The event as it can travel: itself, or (its body kept in S3 first) a reference to its raw copy."""
    # Measure the message SQS receives: JSON escaping can make it far larger than the body.
    if queued.body is None or len(queued.to_json().encode("utf-8")) <= MAX_INLINE_MESSAGE_BYTES:
        return queued
    try:
        store.put_raw(queued.raw_key, queued.body, queued.content_type)
    except UNAVAILABLE:
        raise StorageUnavailable(queued.raw_key) from None
    return replace(queued, body=None)
