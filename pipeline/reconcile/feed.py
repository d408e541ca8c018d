"""What reconcile feeds the events queue: each change as the webhook Jira would have sent, held in an outbox and sent
through `send` before the job saves the progress it covers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pipeline.ids import canonical_json
from pipeline.messages import QueuedEvent
from pipeline.reconcile.rebuild import RebuiltEvent
from pipeline.store import raw_key

OUTBOX_LIMIT = 100  # events held before sending: a page of issues with long histories stays small in memory

Outgoing = list[tuple[QueuedEvent, str]]  # (event, message group), in the order they must be queued


class Feed:
    """Builds reconcile's deliveries (event ids `rc-<issue>-...`, stable, so feeding one twice is harmless) and sends
    them in the order they were fed, so each issue's events keep theirs."""

    def __init__(self, send: Callable[[Outgoing], None], now_ms: Callable[[], int]) -> None:
        self.send = send  # onto the events queue, in order, as few calls as the queue allows
        self.now_ms = now_ms
        # Fed and not yet sent: sent together before progress is saved, so a step that dies re-feeds, never loses.
        self.outbox: Outgoing = []

    def rebuilt(self, issue_id: str, event: RebuiltEvent) -> None:
        self._queue(issue_id, f"rc-{issue_id}-{event.key}", event.payload)

    def deletion(self, issue_id: str, document: dict[str, Any], at_ms: int) -> None:
        payload = {"timestamp": at_ms, "webhookEvent": "jira:issue_deleted", "issue": document}
        self._queue(issue_id, f"rc-{issue_id}-deleted", payload)

    def refresh(
        self, issue_id: str, current: dict[str, Any], document: dict[str, Any], updated: int | None, at_ms: int
    ) -> None:
        """The issue as Jira shows it now (`document` is its snapshot form), as one update without a changelog."""
        payload = {
            "timestamp": at_ms,
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_generic",
            "issue": current,
        }
        # Two edits without a changelog entry can share an `updated`; the document tells them apart.
        digest = hashlib.sha256(canonical_json(document)).hexdigest()[:12]
        self._queue(issue_id, f"rc-{issue_id}-u{updated or at_ms}-{digest}", payload)

    def flush(self) -> None:
        """Send what was fed, in the order it was fed."""
        if self.outbox:
            outgoing, self.outbox = self.outbox, []
            self.send(outgoing)

    def _queue(self, issue_id: str, event_id: str, payload: dict[str, Any]) -> None:
        """Hold one delivery with the unit of work's others; send them all once enough wait."""
        now = self.now_ms()
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        queued = QueuedEvent(event_id, now, "application/json", raw_key(event_id, now, "json"), body, "reconcile")
        self.outbox.append((queued, issue_id))
        if len(self.outbox) >= OUTBOX_LIMIT:
            self.flush()
