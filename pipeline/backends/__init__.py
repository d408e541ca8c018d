"""The two ports the pipeline talks through: an object store (S3's part we use) and FIFO queues (SQS's part).

`aws.py` implements them on S3 and SQS with boto3 (deployed, and `JSYNC_BACKEND=aws` locally); `embedded.py` on
one SQLite file under `$JSYNC_HOME` (the default for `make run`). Both keep the same promises, which
`tests/backends/test_contract.py` checks on each.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

# What "the store or the queue is not answering" looks like on either backend: callers answer 503 or retry.
UNAVAILABLE: tuple[type[Exception], ...] = (BotoCoreError, ClientError, sqlite3.Error)


class RedriveError(Exception):
    """A queue could not be redriven completely; the message says why and what is left."""


class PreconditionFailed(Exception):
    """A conditional write lost: the key exists (`if_none_match`), or holds another version than `if_match`."""


@dataclass(frozen=True)
class StoredObject:
    body: bytes
    etag: str
    content_type: str


class Readable(Protocol):
    """A binary stream, as much of it as put_stream needs: an HTTP response, a file, a counting wrapper."""

    def read(self, amount: int = -1, /) -> bytes: ...


class ObjectStore(Protocol):
    """Keys to bytes. A write survives a crash of the process once it returns (on S3, any failure); a read after
    it sees it; LIST is in key (byte) order."""

    def put(
        self,
        key: str,
        body: bytes,
        content_type: str = "application/json",
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Store `body`, returning its ETag. `if_none_match`: only if absent; `if_match`: only over that ETag.
        Raises PreconditionFailed when the condition does not hold; exactly one of racing writers wins."""
        ...

    def get(self, key: str) -> StoredObject | None: ...

    def put_stream(self, key: str, stream: Readable, content_type: str) -> None:
        """Store what `stream` yields until it ends, without holding it all in memory where the backend can (S3
        multipart). An exception from the stream stores nothing."""
        ...

    def presign(self, key: str, filename: str, content_type: str, seconds: int) -> str | None:
        """A URL that fetches `key` for `seconds` without credentials, or None where the backend has none (then
        the API serves the bytes itself)."""
        ...

    def delete(self, key: str) -> None: ...

    def list_keys(self, prefix: str, start_after: str | None = None, limit: int = 1000) -> tuple[list[str], bool]:
        """Up to `limit` keys under `prefix` after `start_after`, in order, and whether more follow."""
        ...

    def folders(self, prefix: str) -> list[str]:
        """The distinct `prefix<name>/` one level below `prefix` (S3's Delimiter="/")."""
        ...

    def check(self) -> str:
        """Raise if the store cannot be reached; otherwise say what it is."""
        ...


@dataclass(frozen=True)
class Outgoing:
    """One message to send: its group orders it, its deduplication id drops a repeat within 5 minutes."""

    body: str
    group: str
    dedup_id: str | None = None  # None: the SHA-256 of the body, on queues that deduplicate by content
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)  # SQS MessageAttributes shape


@dataclass(frozen=True)
class Received:
    """A message as a receive hands it out; `receipt` deletes it or changes its visibility until it is received
    again."""

    message_id: str
    receipt: str
    body: str
    group: str
    dedup_id: str
    receive_count: int
    sent_ms: int
    sequence: str
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    def lambda_record(self, queue_arn: str) -> dict[str, Any]:
        """This message as a record of a Lambda SQS event (what the event source mapping delivers)."""
        return {
            "messageId": self.message_id,
            "receiptHandle": self.receipt,
            "body": self.body,
            "attributes": {
                "ApproximateReceiveCount": str(self.receive_count),
                "SentTimestamp": str(self.sent_ms),
                "SequenceNumber": self.sequence,
                "MessageGroupId": self.group,
                "MessageDeduplicationId": self.dedup_id,
                "SenderId": "jsync",
                "ApproximateFirstReceiveTimestamp": str(self.sent_ms),
            },
            "messageAttributes": self.attributes,
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else "us-east-1",
        }


@dataclass(frozen=True)
class Depth:
    waiting: int
    in_flight: int  # received, not yet deleted: work not done

    @property
    def total(self) -> int:
        return self.waiting + self.in_flight


class QueueBus(Protocol):
    """FIFO queues by name, each with a dead-letter queue after 5 receives, as the deployed stack has them.

    Within a group, messages are received in the order sent, and a group with a message in flight is held back
    from every other receiver until that message is deleted or becomes visible again.
    """

    def send(self, queue: str, messages: list[Outgoing]) -> None:
        """Durably queued when it returns, surviving a crash or a power cut (up to 10 a call, as SendMessageBatch)."""
        ...

    def receive(self, queue: str, max_messages: int = 10, visibility_timeout: int | None = None) -> list[Received]: ...

    def delete(self, queue: str, receipts: list[str]) -> None: ...

    def change_visibility(self, queue: str, receipt: str, seconds: int) -> None: ...

    def depth(self, queue: str) -> Depth: ...

    def arn(self, queue: str) -> str: ...

    def redrive(self, dlq: str, source: str) -> int:
        """Move every message of `dlq` back to `source` in its group; returns how many moved."""
        ...

    def wait(self, queue: str, seconds: float) -> None:
        """Return when `queue` may have something new, or after `seconds` (a poller's idle pause)."""
        ...
