"""SQS batch from the attachments queue (one copy request a message) -> copy each attachment's content from Jira to
the object store once, recording it in the issue's attachment index -> partial-batch response."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from pipeline import services
from pipeline.attachments import AttachmentRef, copy, from_jira
from pipeline.metrics import count, metered
from pipeline.settings import get_settings

logger = Logger(service="jsync-attachments")


@metered(logger.service)
def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    settings = get_settings()
    download = from_jira(settings)

    def record_handler(record: SQSRecord) -> None:
        ref = AttachmentRef.from_json(record.body)
        kept = copy(ref, services.store(), services.objects(), download, settings.attachment_max_bytes)
        if kept.copied_now:
            count("AttachmentsStored")
            count("AttachmentBytes", kept.record.get("size") or 0)
        elif kept.recorded_now:
            count("AttachmentsNotStored", dimensions={"state": kept.state})
        logger.info(
            "attachment",
            extra={
                "issue_id": ref.issue_id,
                "attachment_id": ref.attachment_id,
                "state": kept.state,
                "size": kept.record.get("size"),
                "copied_now": kept.copied_now,
            },
        )

    # A failure holds back only its issue's later requests (FIFO per issue); it is retried, then dead-lettered.
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
