"""FIFO queues: where each message goes, with which group and deduplication id."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipeline.messages import Change, QueuedEvent

COMMITS_GROUP = "commits"  # one group: the committer never runs twice at once
SYNC_GROUP = "reconcile"  # one group: one reconcile job runs at a time


class Queues:
    """Sends to the events and commits queues, resolving their URLs once."""

    def __init__(self, sqs: Any, events_queue: str, commits_queue: str, sync_queue: str | None = None) -> None:
        self.sqs = sqs
        self._names = {"events": events_queue, "commits": commits_queue}
        if sync_queue:
            self._names["sync"] = sync_queue
        self._urls: dict[str, str] = {}

    def url(self, which: str) -> str:
        if which not in self._urls:
            self._urls[which] = self.sqs.get_queue_url(QueueName=self._names[which])["QueueUrl"]
        return self._urls[which]

    def send_event(self, event: QueuedEvent, group: str, dedup_id: str | None = None) -> None:
        """`dedup_id` defaults to the event id: a delivery Jira retries within SQS's 5 minutes is queued once."""
        self.sqs.send_message(
            QueueUrl=self.url("events"),
            MessageBody=event.to_json(),
            MessageGroupId=group,
            MessageDeduplicationId=(dedup_id or event.event_id)[:128],
        )

    def send_change(self, change: Change) -> None:
        self.sqs.send_message(
            QueueUrl=self.url("commits"),
            MessageBody=change.to_json(),
            MessageGroupId=COMMITS_GROUP,
            MessageDeduplicationId=change_dedup_id(change),
        )

    def send_sync(self, message: dict[str, Any]) -> None:
        """A reconcile job to start or continue; the body (job id and step) is its own deduplication id."""
        body = json.dumps(message, sort_keys=True, separators=(",", ":"))
        self.sqs.send_message(
            QueueUrl=self.url("sync"),
            MessageBody=body,
            MessageGroupId=SYNC_GROUP,
            MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest(),
        )


def queue_depth(sqs: Any, name: str) -> int:
    """Messages waiting or in flight on the queue: received but not yet deleted counts as work not done."""
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs.get("ApproximateNumberOfMessages", 0)) + int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))


def change_dedup_id(change: Change) -> str:
    return hashlib.sha256(f"{change.issue_id}:{change.event_id}".encode()).hexdigest()
