"""The AWS backend: the ports on S3 and SQS through boto3 (deployed functions, and `JSYNC_BACKEND=aws` locally).

S3 and SQS give the guarantees themselves (conditional writes, FIFO groups, dedup, DLQ after 5 receives);
this module only translates. Redrive uses an SQS message move task where the endpoint has them, and otherwise
(moto) copies each message to its source, in its group, before deleting it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from pipeline.backends import Depth, Outgoing, PreconditionFailed, Readable, Received, RedriveError, StoredObject

log = logging.getLogger("jsync.queues")

# Error codes meaning "this endpoint has no move tasks"; then copying message by message does the same job.
_UNSUPPORTED = {"UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", "NotImplemented", "501"}
_TRANSFER = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, max_concurrency=4)
_DONE = {"COMPLETED", "FAILED", "CANCELLED"}
_NO_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


def status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Objects:
    """The object store on one S3 bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def put(
        self,
        key: str,
        body: bytes,
        content_type: str = "application/json",
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        condition: dict[str, str] = {}
        if if_match is not None:
            condition["IfMatch"] = if_match
        if if_none_match:
            condition["IfNoneMatch"] = "*"
        try:
            answer = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **condition)
        except ClientError as exc:
            # 412: someone wrote first; 409: a concurrent conditional write; 404: IfMatch on a deleted key.
            if condition and status(exc) in (412, 409, 404):
                raise PreconditionFailed(key) from None
            raise
        return str(answer.get("ETag", ""))

    def get(self, key: str) -> StoredObject | None:
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if status(exc) == 404 or code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return StoredObject(obj["Body"].read(), obj["ETag"], obj.get("ContentType", ""))

    def put_stream(self, key: str, stream: Readable, content_type: str) -> None:
        # Multipart in 8 MiB parts: a 100 MB attachment never sits in a Lambda's memory whole. An exception from the
        # stream aborts the upload, so no part is left behind as an object.
        self.s3.upload_fileobj(
            _FullReads(stream), self.bucket, key, ExtraArgs={"ContentType": content_type}, Config=_TRANSFER
        )

    def presign(self, key: str, filename: str, content_type: str, seconds: int) -> str | None:
        disposition = f"attachment; filename*=UTF-8''{quote(filename, safe='')}" if filename else "attachment"
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": disposition,
            "ResponseContentType": content_type,
        }
        return str(self.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds))

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def list_keys(self, prefix: str, start_after: str | None = None, limit: int = 1000) -> tuple[list[str], bool]:
        keys: list[str] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            args["StartAfter"] = start_after
        while True:  # S3 answers at most 1,000 a call
            page = self.s3.list_objects_v2(**args, MaxKeys=min(1000, limit - len(keys)))
            keys += [item["Key"] for item in page.get("Contents", [])]
            more = bool(page.get("IsTruncated"))
            if not more or len(keys) >= limit:
                return keys, more
            args["ContinuationToken"] = page["NextContinuationToken"]

    def folders(self, prefix: str) -> list[str]:
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return found

    def check(self) -> str:
        self.s3.head_bucket(Bucket=self.bucket)
        return f"bucket {self.bucket}"


class _FullReads:
    """s3transfer takes a short read for the end of the stream and would store a truncated object: read until the
    amount asked for or the real end."""

    def __init__(self, stream: Readable) -> None:
        self.stream = stream

    def read(self, amount: int = -1, /) -> bytes:
        if amount is None or amount < 0:
            return b"".join(iter(lambda: self.stream.read(1024 * 1024), b""))
        parts, got = [], 0
        while got < amount and (chunk := self.stream.read(amount - got)):
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)


class SqsQueues:
    """FIFO queues on SQS, by name; their URLs and ARNs resolved once."""

    def __init__(self, sqs: Any, use_move_tasks: bool = True, report: Callable[[str], None] = print) -> None:
        self.sqs = sqs
        self.use_move_tasks = use_move_tasks
        self.report = report
        self._urls: dict[str, str] = {}
        self._arns: dict[str, str] = {}

    def url(self, queue: str) -> str:
        if queue not in self._urls:
            self._urls[queue] = str(self.sqs.get_queue_url(QueueName=queue)["QueueUrl"])
        return self._urls[queue]

    def send(self, queue: str, messages: list[Outgoing]) -> None:
        if len(messages) == 1:
            self.sqs.send_message(QueueUrl=self.url(queue), **_send_args(messages[0]))
            return
        entries = [{"Id": str(i), **_send_args(m)} for i, m in enumerate(messages)]
        answer = self.sqs.send_message_batch(QueueUrl=self.url(queue), Entries=entries)
        if answer.get("Failed"):
            first = answer["Failed"][0]
            raise ClientError(
                {"Error": {"Code": first.get("Code", "BatchEntryFailed"), "Message": first.get("Message", "")}},
                "SendMessageBatch",
            )

    def receive(self, queue: str, max_messages: int = 10, visibility_timeout: int | None = None) -> list[Received]:
        return [received(m) for m in self._receive(queue, max_messages, visibility_timeout, wait_seconds=0)]

    def _receive(
        self, queue: str, max_messages: int, visibility_timeout: int | None, wait_seconds: int
    ) -> list[dict[str, Any]]:
        """SQS's messages with every attribute (the receive count and group id included)."""
        extra = {} if visibility_timeout is None else {"VisibilityTimeout": visibility_timeout}
        answer = self.sqs.receive_message(
            QueueUrl=self.url(queue),
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
            **extra,
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def delete(self, queue: str, receipts: list[str]) -> None:
        for start in range(0, len(receipts), 10):
            chunk = receipts[start : start + 10]
            answer = self.sqs.delete_message_batch(
                QueueUrl=self.url(queue), Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
            )
            for failed in answer.get("Failed", []):
                # The message comes back after its visibility timeout and is handled again (idempotently).
                log.warning("could not delete a message from %s: %s", queue, failed.get("Code"))

    def change_visibility(self, queue: str, receipt: str, seconds: int) -> None:
        self.sqs.change_message_visibility(QueueUrl=self.url(queue), ReceiptHandle=receipt, VisibilityTimeout=seconds)

    def depth(self, queue: str) -> Depth:
        attrs = self._attributes(queue, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
        return Depth(
            int(attrs.get("ApproximateNumberOfMessages", 0)), int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
        )

    def arn(self, queue: str) -> str:
        if queue not in self._arns:
            self._arns[queue] = self._attributes(queue, "QueueArn")["QueueArn"]
        return self._arns[queue]

    def wait(self, queue: str, seconds: float) -> None:
        time.sleep(seconds)

    def _attributes(self, queue: str, *names: str) -> dict[str, str]:
        return dict(self.sqs.get_queue_attributes(QueueUrl=self.url(queue), AttributeNames=list(names))["Attributes"])

    # --- redrive ------------------------------------------------------------------------------------------------
    def redrive(self, dlq: str, source: str) -> int:
        for queue in (dlq, source):
            try:
                self.url(queue)
            except ClientError as exc:
                # A stage deployed before a queue existed (the sync queue came later) must not stop the others.
                if code(exc) in _NO_QUEUE:
                    raise RedriveError(f"queue {queue} does not exist; deploy the stage again to create it") from None
                raise
        if self.use_move_tasks:
            try:
                return self.redrive_with_task(dlq, source)
            except ClientError as exc:
                if not is_unsupported(exc):
                    raise
                self.report(f"  {dlq}: this endpoint has no message move tasks; copying message by message")
        return self.redrive_by_copy(dlq, source)

    def redrive_with_task(self, dlq: str, source: str, poll_seconds: float = 2.0) -> int:
        """Start a move task from the DLQ to its source, report its progress until it ends; returns how many moved."""
        if self.depth(dlq).waiting == 0:
            return 0
        dlq_arn = self.arn(dlq)
        started_ms = time.time() * 1000
        self.sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=self.arn(source))
        task = self._wait_for_task(dlq, dlq_arn, poll_seconds, started_ms)
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if task["Status"] == "FAILED":
            reason = task.get("FailureReason", "no reason given")
            raise RedriveError(f"move task from {dlq} to {source} failed after moving {moved}: {reason}")
        if task["Status"] == "CANCELLED":
            raise RedriveError(f"move task from {dlq} to {source} was cancelled after moving {moved}")
        return moved

    def _wait_for_task(self, dlq: str, dlq_arn: str, poll_seconds: float, started_ms: float) -> dict[str, Any]:
        """Poll the newest move task of the DLQ (only one can run per queue, so it is ours) until it ends."""
        shown = ""
        while True:
            results = self.sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1)["Results"]
            # A task just started may not be listed yet, and an older finished one is not ours (a minute of slack
            # for clocks apart).
            if not results or int(results[0].get("StartedTimestamp", started_ms)) < started_ms - 60_000:
                time.sleep(poll_seconds)
                continue
            task: dict[str, Any] = results[0]
            moved, to_move = (
                task.get("ApproximateNumberOfMessagesMoved", 0),
                task.get("ApproximateNumberOfMessagesToMove"),
            )
            line = f"  {dlq}: {task['Status'].lower()}, {moved}/{'?' if to_move is None else to_move} moved"
            if line != shown:
                self.report(line)
                shown = line
            if task["Status"] in _DONE:
                return task
            time.sleep(poll_seconds)

    def redrive_by_copy(self, dlq: str, source: str, visibility_timeout: int = 60) -> int:
        """Copy each DLQ message to its source queue in receive order (so order within a group is kept), then
        delete it. Moves at most what the DLQ held at the start: with the pipeline running, a message that fails
        again comes back to the DLQ, and chasing it would never end."""
        budget = self.depth(dlq).waiting
        moved = 0
        while moved < budget:
            # Long polling: short polls on AWS sample a few servers and can answer "none" while messages wait.
            batch = self._receive(dlq, min(10, budget - moved), visibility_timeout, wait_seconds=1)
            if not batch:
                break
            for message in batch:
                # Sent, then deleted: a crash between the two leaves the message in both queues, so it is processed
                # twice (the writer and the committer are idempotent), never lost.
                self.sqs.send_message(QueueUrl=self.url(source), **copy_of(message))
                self.sqs.delete_message(QueueUrl=self.url(dlq), ReceiptHandle=message["ReceiptHandle"])
                moved += 1
        if left := self.depth(dlq).waiting:
            self.report(f"  {dlq}: {left} more arrived while moving (failed again?); run the redrive again for them")
        return moved


def copy_of(message: dict[str, Any]) -> dict[str, Any]:
    """The SendMessage arguments that put `message` back in its group under a new deduplication id."""
    group = message.get("Attributes", {}).get("MessageGroupId")
    if not group:
        raise RedriveError(f"message {message['MessageId']} has no MessageGroupId; is the queue FIFO?")
    copy: dict[str, Any] = {
        "MessageBody": message["Body"],
        "MessageGroupId": group,
        # Never the original dedup id: AWS would silently drop a copy sent within 5 minutes of the original.
        "MessageDeduplicationId": f"redrive-{message['MessageId']}"[:128],
    }
    extra = _attributes_of(message)
    if extra:
        copy["MessageAttributes"] = extra
    return copy


def is_unsupported(exc: ClientError) -> bool:
    return code(exc) in _UNSUPPORTED or status(exc) == 501


def _attributes_of(message: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in message.get("MessageAttributes", {}).items()
    }


def _send_args(m: Outgoing) -> dict[str, Any]:
    args: dict[str, Any] = {"MessageBody": m.body, "MessageGroupId": m.group}
    if m.dedup_id:
        args["MessageDeduplicationId"] = m.dedup_id[:128]
    if m.attributes:
        args["MessageAttributes"] = m.attributes
    return args


def received(m: dict[str, Any]) -> Received:
    attrs = m.get("Attributes", {})
    return Received(
        message_id=m["MessageId"],
        receipt=m["ReceiptHandle"],
        body=m["Body"],
        group=attrs.get("MessageGroupId", ""),
        dedup_id=attrs.get("MessageDeduplicationId", ""),
        receive_count=int(attrs.get("ApproximateReceiveCount", 1)),
        sent_ms=int(attrs.get("SentTimestamp", 0)),
        # moto leaves the sequence number out; Lambda records always carry one.
        sequence=attrs.get("SequenceNumber") or str(int(time.time() * 1e6)),
        attributes=_attributes_of(m),
    )
