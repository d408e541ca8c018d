"""SQS batch from the events queue -> capture each webhook in S3 -> the batch's changes for git, sent together ->
partial-batch response."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from pipeline import services
from pipeline.capture import capture
from pipeline.messages import Change, QueuedEvent
from pipeline.metrics import count, metered
from pipeline.queues import Queues
from pipeline.refusals import AcceptedMarker
from pipeline.settings import get_settings

logger = Logger(service="jsync-writer")
accepted = AcceptedMarker()  # health tells "every delivery refused" from "some refused" by this


class Outbox:
    """The batch's changes for git, sent in SendMessageBatch calls and one bell at the end of the batch.

    An issue never has two unsent changes: a second one sends the first before its event is captured. A retry
    sends again only the change of the event latest/ stands at, so an earlier change held back here would be lost
    if the flush failed.
    """

    def __init__(self, queues: Queues) -> None:
        self.queues = queues
        self.changes: list[Change] = []

    def add(self, change: Change) -> None:
        self.changes.append(change)

    def before(self, group: str) -> None:
        """Called before an event of `group` (its issue's id, for issue events) is captured."""
        if self.changes and (not group.isdigit() or any(c.issue_id == group for c in self.changes)):
            self.flush()

    def flush(self) -> None:
        changes, self.changes = self.changes, []
        self.queues.send_changes(changes)


@metered(logger.service)
def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    _note_accepted(event.get("Records") or [])
    outbox = Outbox(services.queues())
    # Attachment contents are fetched from Jira, so only with Jira credentials; otherwise metadata only.
    ask_copies = services.queues().send_copies if get_settings().jira_configured else None

    def record_handler(record: SQSRecord) -> None:
        outbox.before(record.attributes.message_group_id or "")
        result = capture(QueuedEvent.from_json(record.body), services.store(), outbox.add, ask_copies=ask_copies)
        count("EventsCaptured")
        logger.info(
            "captured", extra={"event_id": result.event_id, "issue_id": result.issue_id, "advanced": result.advanced}
        )

    # A failure holds back later events of the same issue only; other issues proceed. A processor per batch:
    # it keeps the batch's state, and the local stack runs several writers in one process.
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    # Not sent: the whole batch is retried (raising), and each capture is safe to run again.
    outbox.flush()
    return dict(response)


def _note_accepted(records: list[dict[str, Any]]) -> None:
    try:
        accepted.note(records, services.store())
    except Exception:  # a note for health never holds back a capture
        logger.warning("could not note the newest accepted webhook", exc_info=True)
