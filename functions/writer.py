"""SQS batch from the events queue -> capture each webhook in S3 -> partial-batch response."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from pipeline import services
from pipeline.capture import capture
from pipeline.messages import QueuedEvent
from pipeline.refusals import AcceptedMarker

logger = Logger(service="jsync-writer")
accepted = AcceptedMarker()  # health tells "every delivery refused" from "some refused" by this


def record_handler(record: SQSRecord) -> None:
    queued = QueuedEvent.from_json(record.body)
    result = capture(queued, services.store(), services.queues().send_change)
    logger.info(
        "captured", extra={"event_id": result.event_id, "issue_id": result.issue_id, "advanced": result.advanced}
    )


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    _note_accepted(event.get("Records") or [])
    # A failure holds back later events of the same issue only; other issues proceed. A processor per batch:
    # it keeps the batch's state, and the local stack runs several writers in one process.
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


def _note_accepted(records: list[dict[str, Any]]) -> None:
    try:
        accepted.note(records, services.store())
    except Exception:  # a note for health never holds back a capture
        logger.warning("could not note the newest accepted webhook", exc_info=True)
