"""Create the bucket, the FIFO queues and their FIFO dead-letter queues, as the deployed stack has them, on
either backend."""

from __future__ import annotations

import json
from typing import Any

from pipeline import services
from pipeline.settings import Settings, dead_letter_name

MAX_RECEIVE_COUNT = 5
VISIBILITY_TIMEOUT = 60  # seconds; the pollers shorten it per failed message so retries come quickly
# A reconcile step budgets 600 s locally; the message must stay hidden for all of it, or a second poller
# (or a restart) would start the same step while the first is still running.
SYNC_VISIBILITY_TIMEOUT = 660


def create_resources(settings: Settings) -> None:
    """Idempotent: whatever exists is left as it is."""
    if settings.backend == "embedded":
        create_embedded_queues(settings)
    else:
        create_aws_resources(settings, services.aws("s3"), services.aws("sqs"))


def create_embedded_queues(settings: Settings) -> None:
    from pipeline.backends.embedded import SqliteQueues

    queues = SqliteQueues(services.database())
    for source, dlq in settings.queue_pairs:
        queues.create(dlq, None, VISIBILITY_TIMEOUT)
        sync = source == settings.sync_queue
        by_content = sync or source == settings.bell_queue
        # A copy of a large attachment takes minutes, like a reconcile step.
        slow = sync or source == settings.attachments_queue
        queues.create(source, dlq, SYNC_VISIBILITY_TIMEOUT if slow else VISIBILITY_TIMEOUT, content_dedup=by_content)


def create_aws_resources(settings: Settings, s3: Any, sqs: Any) -> None:
    """The bucket and queues on S3 and SQS (moto, or an account of your own with `JSYNC_BACKEND=aws`)."""
    try:
        s3.head_bucket(Bucket=settings.bucket)
    except Exception:
        s3.create_bucket(Bucket=settings.bucket)
    queues: list[tuple[str, str, dict[str, str]]] = [
        (settings.events_queue, settings.events_dlq, {"VisibilityTimeout": str(VISIBILITY_TIMEOUT)}),
        (settings.commits_queue, settings.commits_dlq, {"VisibilityTimeout": str(VISIBILITY_TIMEOUT)}),
        # Deduplicated by body, as deployed: the same job and step sent twice within 5 minutes is one step.
        (
            settings.sync_queue,
            settings.sync_dlq,
            {"VisibilityTimeout": str(SYNC_VISIBILITY_TIMEOUT), "ContentBasedDeduplication": "true"},
        ),
        # By body too, as deployed, where EventBridge's schedule rings it and sets no deduplication id.
        (
            settings.bell_queue,
            settings.bell_dlq,
            {"VisibilityTimeout": str(VISIBILITY_TIMEOUT), "ContentBasedDeduplication": "true"},
        ),
        (
            settings.attachments_queue,
            dead_letter_name(settings.attachments_queue),
            {"VisibilityTimeout": str(SYNC_VISIBILITY_TIMEOUT)},
        ),
    ]
    for source, dlq, extra in queues:
        dlq_url = _fifo(sqs, dlq, {})
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        source_url = _fifo(
            sqs,
            source,
            {
                **extra,
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}),
            },
        )
        source_arn = sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sqs.set_queue_attributes(
            QueueUrl=dlq_url,
            Attributes={
                "RedriveAllowPolicy": json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [source_arn]})
            },
        )


def _fifo(sqs: Any, name: str, extra: dict[str, str]) -> str:
    attributes = {"FifoQueue": "true", "MaximumMessageSize": "1048576", "MessageRetentionPeriod": "1209600", **extra}
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
