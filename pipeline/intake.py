"""Ingest's job: check a webhook delivery (signature, size, type, shape), queue it durably, say what was queued."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import WebhookRejected
from pipeline.messages import QueuedEvent
from pipeline.payload import event_id_for, file_extension, media_type, message_group, parse_event
from pipeline.queues import Queues
from pipeline.settings import MAX_INLINE_MESSAGE_BYTES, MAX_WEBHOOK_BYTES, Settings
from pipeline.signature import verify
from pipeline.store import Store, raw_key


@dataclass(frozen=True)
class Accepted:
    event_id: str
    issue_key: str | None

    def body(self) -> dict[str, str | None]:
        return {"status": "queued", "issue_key": self.issue_key, "event_id": self.event_id}


def accept(body: bytes, headers: dict[str, str], settings: Settings, queues: Queues, store: Store) -> Accepted:
    """Validate and enqueue one delivery; raises WebhookRejected with the status Jira should see."""
    if len(body) > MAX_WEBHOOK_BYTES:
        raise WebhookRejected(
            413, "body_too_large", f"Body is {len(body)} bytes; the limit is {MAX_WEBHOOK_BYTES} bytes."
        )
    if settings.webhook_secrets:
        try:
            verify(settings.webhook_secrets, body, headers.get("x-hub-signature"))
        except WebhookRejected:
            # The secret may have been rotated since this instance read it: read it again (rate-limited).
            if not settings.secrets.refresh("webhook_secret"):
                raise
            verify(settings.webhook_secrets, body, headers.get("x-hub-signature"))
    content_type = headers.get("content-type", "")
    received_ms = int(time.time() * 1000)
    event = parse_event(body, content_type, received_ms, full=False)
    event_id = event_id_for(headers.get("x-atlassian-webhook-identifier"), body)
    key = raw_key(event_id, received_ms, file_extension(content_type))
    queued = QueuedEvent(event_id, received_ms, media_type(content_type), key, body)
    # Measure the message SQS receives: JSON escaping can make it far larger than the body.
    if len(queued.to_json().encode("utf-8")) > MAX_INLINE_MESSAGE_BYTES:
        queued = replace(queued, body=None)
        try:
            store.put_raw(key, body, media_type(content_type))
        except (BotoCoreError, ClientError):
            raise WebhookRejected(503, "storage_unavailable", "Storage is unavailable; retry the delivery.") from None
    try:
        queues.send_event(queued, message_group(event))
    except (BotoCoreError, ClientError):
        raise WebhookRejected(
            503, "queue_unavailable", "The events queue is unavailable; retry the delivery."
        ) from None
    return Accepted(event_id, event.issue_key)
