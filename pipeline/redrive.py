"""`make redrive`: move every message in the dead-letter queues back to its source queue, keeping message groups.

The queues: events, commits and sync (reconcile jobs), each with its dead-letter queue. Events the writer set
aside as unreadable (`index/unreadable/`) go back to the events queue too, so a fixed writer takes them.

On AWS an SQS message move task does the moving. Locally (moto has no move task) each message is received from
the dead-letter queue, sent to its source with the same message group, and only then deleted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from pipeline import services
from pipeline.messages import QueuedEvent
from pipeline.queues import Queues
from pipeline.settings import Settings, get_settings, load_settings
from pipeline.store import UNREADABLE_PREFIX, Store

# Error codes meaning "this endpoint has no move tasks"; then copying message by message does the same job.
_UNSUPPORTED = {"UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", "NotImplemented", "501"}
_DONE = {"COMPLETED", "FAILED", "CANCELLED"}
_NO_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


class RedriveError(Exception):
    """A queue could not be redriven completely; the message says why and what is left."""


class NoLocalStack(Exception):
    """No local stack has written its endpoint under $JSYNC_HOME."""


@dataclass(frozen=True)
class Pair:
    """A dead-letter queue and the source queue its messages go back to."""

    dlq: str
    source: str


def pairs(settings: Settings) -> list[Pair]:
    return [Pair(dlq, source) for source, dlq in settings.queue_pairs]


def queue_url(sqs: Any, name: str) -> str:
    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as exc:
        # A stage deployed before a queue existed (the sync queue came later) must not stop the other redrives.
        if exc.response.get("Error", {}).get("Code") in _NO_QUEUE:
            raise RedriveError(f"queue {name} does not exist; deploy the stage again to create it") from None
        raise


def attributes(sqs: Any, url: str, *names: str) -> dict[str, str]:
    return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))["Attributes"])


def waiting(sqs: Any, url: str) -> int:
    return int(attributes(sqs, url, "ApproximateNumberOfMessages")["ApproximateNumberOfMessages"])


# --- AWS: a message move task ------------------------------------------------------------------------------------
def redrive_with_task(sqs: Any, pair: Pair, poll_seconds: float = 2.0) -> int:
    """Start a move task from the DLQ to its source, report its progress until it ends; returns how many moved."""
    dlq = attributes(sqs, queue_url(sqs, pair.dlq), "QueueArn", "ApproximateNumberOfMessages")
    source_arn = attributes(sqs, queue_url(sqs, pair.source), "QueueArn")["QueueArn"]
    if int(dlq["ApproximateNumberOfMessages"]) == 0:
        print(f"{pair.dlq} is empty; nothing to move")
        return 0
    sqs.start_message_move_task(SourceArn=dlq["QueueArn"], DestinationArn=source_arn)
    task = wait_for_task(sqs, pair, dlq["QueueArn"], poll_seconds)
    moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
    if task["Status"] == "FAILED":
        reason = task.get("FailureReason", "no reason given")
        raise RedriveError(f"move task from {pair.dlq} to {pair.source} failed after moving {moved}: {reason}")
    if task["Status"] == "CANCELLED":
        raise RedriveError(f"move task from {pair.dlq} to {pair.source} was cancelled after moving {moved}")
    print(f"moved {moved} from {pair.dlq} to {pair.source}")
    return moved


def wait_for_task(sqs: Any, pair: Pair, dlq_arn: str, poll_seconds: float) -> dict[str, Any]:
    """Poll the newest move task of the DLQ (only one can run per queue, so it is ours) until it ends."""
    shown = ""
    while True:
        results = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1)["Results"]
        if not results:  # a task just started may not be listed yet
            time.sleep(poll_seconds)
            continue
        task: dict[str, Any] = results[0]
        moved, to_move = task.get("ApproximateNumberOfMessagesMoved", 0), task.get("ApproximateNumberOfMessagesToMove")
        line = f"  {pair.dlq}: {task['Status'].lower()}, {moved}/{'?' if to_move is None else to_move} moved"
        if line != shown:
            print(line, flush=True)
            shown = line
        if task["Status"] in _DONE:
            return task
        time.sleep(poll_seconds)


# --- anywhere: receive, send to the source, delete -------------------------------------------------------------
def redrive_by_copy(sqs: Any, pair: Pair, visibility_timeout: int = 60, wait_seconds: int = 1) -> int:
    """Copy each DLQ message to its source queue in receive order (so order within a group is kept), then delete it.

    Moves at most what the DLQ held at the start: with the pipeline running, a message that fails again comes back
    to the DLQ, and chasing it would never end.
    """
    dlq_url, source_url = queue_url(sqs, pair.dlq), queue_url(sqs, pair.source)
    budget = waiting(sqs, dlq_url)
    moved = 0
    while moved < budget:
        batch = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(10, budget - moved),
            VisibilityTimeout=visibility_timeout,
            # Long polling: short polls on AWS sample a few servers and can answer "none" while messages wait.
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            # Sent, then deleted: a crash between the two leaves the message in both queues, so it is processed
            # twice (the writer and the committer are idempotent), never lost. A rerun within 5 minutes resends
            # it under the same dedup id, which AWS drops.
            sqs.send_message(QueueUrl=source_url, **copy_of(message))
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    print(f"moved {moved} from {pair.dlq} to {pair.source}" if moved else f"{pair.dlq} is empty; nothing to move")
    if left := waiting(sqs, dlq_url):
        print(f"  {pair.dlq}: {left} more arrived while moving (failed again?); run the redrive again for them")
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
    extra = {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in message.get("MessageAttributes", {}).items()
    }
    if extra:
        copy["MessageAttributes"] = extra
    return copy


# --- choosing a way and reporting -------------------------------------------------------------------------------
def redrive(sqs: Any, pair: Pair, use_task: bool, poll_seconds: float = 2.0, wait_seconds: int = 1) -> int:
    if use_task:
        try:
            return redrive_with_task(sqs, pair, poll_seconds)
        except ClientError as exc:
            if not is_unsupported(exc):
                raise
            print(f"  {pair.dlq}: this endpoint has no message move tasks; copying message by message")
    return redrive_by_copy(sqs, pair, wait_seconds=wait_seconds)


def is_unsupported(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in _UNSUPPORTED or status == 501


def dry_run(sqs: Any, pair: Pair) -> int:
    count = waiting(sqs, queue_url(sqs, pair.dlq))
    print(f"would move {count} from {pair.dlq} to {pair.source}")
    return count


def redrive_all(sqs: Any, queue_pairs: Sequence[Pair], use_task: bool, **options: Any) -> dict[str, int]:
    """Redrive every pair, even after one fails; raises RedriveError naming every failure at the end."""
    moved: dict[str, int] = {}
    failures: list[str] = []
    for pair in queue_pairs:
        try:
            moved[pair.dlq] = redrive(sqs, pair, use_task, **options)
        except RedriveError as exc:
            failures.append(str(exc))
    if failures:
        raise RedriveError("; ".join(failures))
    return moved


# --- events the writer set aside -----------------------------------------------------------------------------------
def retry_set_aside(store: Store, queues: Queues) -> int:
    """Queue every event the writer set aside again, then forget the record (the writer makes a new one if it
    still cannot read it); returns how many were queued."""
    retried = 0
    for key in store.all_keys(UNREADABLE_PREFIX):
        found = store.read_json(key)
        if found is None:
            continue
        record = found.data
        queued = QueuedEvent.from_json(json.dumps(record["event"]))
        # Its own deduplication id: within SQS's 5 minutes the event id alone would be dropped as a duplicate.
        retry_id = hashlib.sha256(f"{queued.event_id}:retry:{record.get('set_aside_at')}".encode()).hexdigest()
        queues.send_event(queued, str(record.get("issue_id") or "unreadable"), dedup_id=retry_id)
        store.delete(key)
        retried += 1
    return retried


def stage_bucket(stage: str) -> str | None:
    """The deployed stage's bucket (CloudFormation names it), from the stack's `BucketName` output."""
    try:
        stacks = services.aws("cloudformation").describe_stacks(StackName=f"jsync-{stage}")["Stacks"]
    except (ClientError, BotoCoreError):
        return None
    outputs = {o["OutputKey"]: o["OutputValue"] for s in stacks for o in s.get("Outputs", [])}
    return outputs.get("BucketName")


def _retry_set_aside_of(stage: str | None) -> int | None:
    """`retry_set_aside` on the local stack, or on a deployed stage's bucket; None if that bucket cannot be found."""
    if stage and not os.environ.get("JSYNC_BUCKET"):
        bucket = stage_bucket(stage)
        if bucket is None:
            return None
        os.environ["JSYNC_BUCKET"] = bucket
        services.reset()
    return retry_set_aside(services.store(), services.queues())


# --- command line ------------------------------------------------------------------------------------------------
def use_local_stack() -> str:
    """Point AWS clients at the running local stack's moto server; returns its endpoint."""
    home = load_settings().home
    endpoint_file = home / "endpoint"
    if not endpoint_file.is_file():
        raise NoLocalStack(
            f"no local stack is running under {home}; start it with `make run`, or pass STAGE=name for AWS"
        )
    endpoint = endpoint_file.read_text().strip()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    # moto takes any credentials; these keep boto3 from looking for real ones.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return endpoint


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.redrive", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", help="deployed stage to redrive on AWS (default: the running local stack)")
    parser.add_argument("--dry-run", action="store_true", help="only say how many messages each DLQ holds")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.stage:
        os.environ["JSYNC_STAGE"] = args.stage
    use_task = bool(args.stage) and not os.environ.get("AWS_ENDPOINT_URL")
    try:
        if not args.stage and not os.environ.get("AWS_ENDPOINT_URL"):
            use_local_stack()
        services.reset()
        sqs, queue_pairs = services.aws("sqs"), pairs(get_settings())
        if args.dry_run:
            for pair in queue_pairs:
                dry_run(sqs, pair)
            if not use_task:
                print(f"would queue again {len(services.store().all_keys(UNREADABLE_PREFIX))} set-aside events")
            return 0
        moved = redrive_all(sqs, queue_pairs, use_task)
        retried = _retry_set_aside_of(args.stage if use_task else None)
        if retried is None:
            print("redrive: could not read the stack's BucketName output; events set aside were left", file=sys.stderr)
        elif retried:
            print(f"queued again {retried} events the writer had set aside as unreadable")
    except NoLocalStack as exc:
        print(f"redrive: {exc}", file=sys.stderr)
        return 2
    except EndpointConnectionError as exc:
        print(f"redrive: nothing answers at {exc.kwargs.get('endpoint_url')}; is the stack running?", file=sys.stderr)
        return 1
    except (RedriveError, ClientError, BotoCoreError) as exc:
        print(f"redrive: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # A move task keeps going on AWS; a copy stopped mid-message has at worst duplicated that one message.
        print(
            "redrive: interrupted; a started move task keeps going, anything else is left for a rerun", file=sys.stderr
        )
        return 130
    print(f"done: {sum(moved.values())} messages moved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
