"""The two queue message shapes: a received webhook (events queue) and a captured change (commits queue)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, fields
from typing import Any

from pipeline.ids import Order


@dataclass(frozen=True)
class QueuedEvent:
    """A webhook as ingest accepted it: the raw body inline, or by reference when too big for SQS."""

    event_id: str
    received_ms: int
    content_type: str
    raw_key: str
    body: bytes | None
    source: str = "webhook"

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "v": 1,
            "event_id": self.event_id,
            "received_ms": self.received_ms,
            "content_type": self.content_type,
            "raw_key": self.raw_key,
            "source": self.source,
        }
        if self.body is not None:
            try:
                data["body"] = self.body.decode("utf-8")
            except UnicodeDecodeError:
                data["body_b64"] = base64.b64encode(self.body).decode("ascii")
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> QueuedEvent:
        data = json.loads(text)
        body: bytes | None = None
        if "body" in data:
            body = data["body"].encode("utf-8")
        elif "body_b64" in data:
            body = base64.b64decode(data["body_b64"])
        return cls(
            event_id=data["event_id"],
            received_ms=int(data["received_ms"]),
            content_type=data["content_type"],
            raw_key=data["raw_key"],
            body=body,
            source=data.get("source", "webhook"),
        )


@dataclass(frozen=True)
class Change:
    """One state-advancing event of one issue, as the committer turns it into a commit."""

    issue_id: str
    key: str | None
    previous_key: str | None
    event_id: str
    event_name: str
    order: Order
    actor: dict[str, str] | None
    subject: str
    changes: list[dict[str, Any]]
    deleted: bool
    snapshot_key: str
    document: dict[str, Any] | None = None  # None when deleted, or when too big (then read snapshot_key)
    event_time_ms: int | None = None  # the event's own time; `order` may sit above it (see capture)

    @property
    def time_ms(self) -> int:
        return self.event_time_ms if self.event_time_ms is not None else self.order.time_ms

    def to_json(self) -> str:
        # ASCII only: SQS refuses some Unicode (U+FFFE, U+FFFF) that JSON may carry. Fields one level deep, not
        # asdict(): that deep-copies the whole document first and cost more than the rest of the writer.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["order"] = self.order.as_list()  # [event time ms, changelog id, event id]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Change:
        data = json.loads(text)
        data["order"] = Order.from_list(data["order"])
        return cls(**data)
