"""What only the AWS backend (pipeline/backends/aws.py) has to get right: translating S3's and SQS's errors and
answers in several parts, and running SQS message move tasks. Against a stubbed client (botocore's Stubber): AWS
answers moto does not give (partial failures, pages, move tasks) are played exactly as AWS documents them."""

from __future__ import annotations

import logging
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from pipeline.backends import UNAVAILABLE, Outgoing, PreconditionFailed, RedriveError
from pipeline.backends.aws import S3Objects, SqsQueues, copy_of
from tests.builders import stub_depth

BUCKET = "jsync-prod"
DLQ, SOURCE = "jsync-prod-events-dlq.fifo", "jsync-prod-events.fifo"
DLQ_URL, SOURCE_URL = f"https://sqs.us-east-1.amazonaws.com/1/{DLQ}", f"https://sqs.us-east-1.amazonaws.com/1/{SOURCE}"
ARN = "arn:aws:sqs:us-east-1:123456789012"


def client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return client("s3")


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return client("sqs")


def quiet() -> tuple[list[str], Any]:
    lines: list[str] = []
    return lines, lines.append


# --- S3 -------------------------------------------------------------------------------------------------------------


def test_a_failed_unconditional_write_is_an_outage_never_a_lost_race(s3: Any) -> None:
    objects = S3Objects(s3, BUCKET)
    with Stubber(s3) as stubber:
        stubber.add_client_error("put_object", "NoSuchBucket", http_status_code=404)
        stubber.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
        # A plain write to a bucket that is gone: callers must answer 503 / retry, not "someone wrote first"
        with pytest.raises(UNAVAILABLE) as raised:
            objects.put("latest/10042.json", b"{}")
        assert not isinstance(raised.value, PreconditionFailed)
        # while the same status on a conditional write is the race it means
        with pytest.raises(PreconditionFailed):
            objects.put("latest/10042.json", b"{}", if_none_match=True)


def test_a_read_s3_refuses_is_an_error_not_a_missing_object(s3: Any) -> None:
    objects = S3Objects(s3, BUCKET)
    with Stubber(s3) as stubber:
        stubber.add_client_error("get_object", "AccessDenied", http_status_code=403)
        stubber.add_client_error("get_object", "NoSuchKey", http_status_code=404)
        with pytest.raises(ClientError):
            objects.get("latest/10042.json")  # never "no such issue" when S3 would not say
        assert objects.get("latest/10043.json") is None


def test_a_listing_s3_answers_in_pages_comes_back_whole_and_in_order(s3: Any) -> None:
    objects = S3Objects(s3, BUCKET)
    with Stubber(s3) as stubber:
        # S3 may answer with fewer keys than asked and a continuation token
        stubber.add_response(
            "list_objects_v2",
            {"Contents": [{"Key": "raw/a"}, {"Key": "raw/b"}], "IsTruncated": True, "NextContinuationToken": "t1"},
            {"Bucket": BUCKET, "Prefix": "raw/", "StartAfter": "raw/0", "MaxKeys": 5},
        )
        stubber.add_response(
            "list_objects_v2",
            {"Contents": [{"Key": "raw/c"}], "IsTruncated": True, "NextContinuationToken": "t2"},
            {"Bucket": BUCKET, "Prefix": "raw/", "StartAfter": "raw/0", "ContinuationToken": "t1", "MaxKeys": 3},
        )
        stubber.add_response(
            "list_objects_v2",
            {"Contents": [{"Key": "raw/d"}], "IsTruncated": False},
            {"Bucket": BUCKET, "Prefix": "raw/", "StartAfter": "raw/0", "ContinuationToken": "t2", "MaxKeys": 2},
        )
        assert objects.list_keys("raw/", "raw/0", 5) == (["raw/a", "raw/b", "raw/c", "raw/d"], False)
        stubber.assert_no_pending_responses()


# --- SQS ------------------------------------------------------------------------------------------------------------


def test_a_batch_send_sqs_partly_refuses_is_an_error_naming_the_first_refusal(sqs: Any) -> None:
    queues = SqsQueues(sqs)
    with Stubber(sqs) as stubber:
        stubber.add_response("get_queue_url", {"QueueUrl": SOURCE_URL}, {"QueueName": SOURCE})
        stubber.add_response(
            "send_message_batch",
            {
                "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "x"}],
                "Failed": [{"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad char"}],
            },
        )
        # Never a silent loss: the caller (ingest, the writer) fails and the delivery or batch is retried
        with pytest.raises(ClientError) as raised:
            queues.send(SOURCE, [Outgoing("a", "g", "d0"), Outgoing("b\ufffe", "g", "d1")])
    assert raised.value.response["Error"] == {"Code": "InvalidMessageContents", "Message": "bad char"}


def test_a_delete_sqs_refuses_is_logged_and_left_to_come_back(sqs: Any, caplog: pytest.LogCaptureFixture) -> None:
    queues = SqsQueues(sqs)
    with Stubber(sqs) as stubber:
        stubber.add_response("get_queue_url", {"QueueUrl": SOURCE_URL}, {"QueueName": SOURCE})
        stubber.add_response(
            "delete_message_batch",
            {
                "Successful": [{"Id": "0"}],
                "Failed": [{"Id": "1", "SenderFault": True, "Code": "ReceiptHandleIsInvalid"}],
            },
        )
        with caplog.at_level(logging.WARNING, logger="jsync.queues"):
            queues.delete(SOURCE, ["r0", "r1"])  # does not raise: the message is handled again, idempotently
    assert [r.getMessage() for r in caplog.records] == [
        f"could not delete a message from {SOURCE}: ReceiptHandleIsInvalid"
    ]


def stub_urls(stubber: Stubber) -> None:
    stubber.add_response("get_queue_url", {"QueueUrl": DLQ_URL}, {"QueueName": DLQ})
    stubber.add_response("get_queue_url", {"QueueUrl": SOURCE_URL}, {"QueueName": SOURCE})


def stub_arns(stubber: Stubber) -> None:
    for name, url in ((DLQ, DLQ_URL), (SOURCE, SOURCE_URL)):
        stubber.add_response(
            "get_queue_attributes",
            {"Attributes": {"QueueArn": f"{ARN}:{name}"}},
            {"QueueUrl": url, "AttributeNames": ["QueueArn"]},
        )


def stub_started_task(stubber: Stubber, waiting: int) -> None:
    """SQS starts a move task from the DLQ, which holds `waiting` messages, to the source."""
    stub_depth(stubber, DLQ_URL, waiting)
    stub_arns(stubber)
    stubber.add_response("start_message_move_task", {"TaskHandle": "h"})


def task(status: str, moved: int, started_ms: float | None = None, **more: Any) -> dict[str, Any]:
    return {
        "SourceArn": f"{ARN}:{DLQ}",
        "DestinationArn": f"{ARN}:{SOURCE}",
        "Status": status,
        "ApproximateNumberOfMessagesMoved": moved,
        "StartedTimestamp": int(time.time() * 1000 if started_ms is None else started_ms),
        **more,
    }


def test_a_queue_sqs_will_not_show_stops_the_redrive_with_its_error(sqs: Any) -> None:
    with Stubber(sqs) as stubber:
        stubber.add_client_error("get_queue_url", "AccessDenied", http_status_code=403)
        # Not "the queue does not exist; deploy again": the operator's credentials are what is wrong
        with pytest.raises(ClientError) as raised:
            SqsQueues(sqs, report=quiet()[1]).redrive(DLQ, SOURCE)
    assert raised.value.response["Error"]["Code"] == "AccessDenied"


def test_a_move_task_sqs_refuses_is_an_error_not_a_copy_by_hand(sqs: Any) -> None:
    lines, report = quiet()
    with Stubber(sqs) as stubber:
        stub_urls(stubber)
        stub_depth(stubber, DLQ_URL, 3)
        stub_arns(stubber)
        stubber.add_client_error("start_message_move_task", "AccessDenied", http_status_code=403)
        with pytest.raises(ClientError):
            SqsQueues(sqs, report=report).redrive(DLQ, SOURCE)
        stubber.assert_no_pending_responses()  # nothing was received or copied
    assert lines == []


def test_a_cancelled_move_task_is_an_error_saying_how_many_moved(sqs: Any) -> None:
    lines, report = quiet()
    queues = SqsQueues(sqs, report=report)
    with Stubber(sqs) as stubber:
        stub_started_task(stubber, waiting=4)
        stubber.add_response("list_message_move_tasks", {"Results": [task("CANCELLED", 1)]})
        queues._urls = {DLQ: DLQ_URL, SOURCE: SOURCE_URL}
        with pytest.raises(RedriveError) as raised:
            queues.redrive_with_task(DLQ, SOURCE, poll_seconds=0)
    assert str(raised.value) == f"move task from {DLQ} to {SOURCE} was cancelled after moving 1"
    assert lines == [f"  {DLQ}: cancelled, 1/? moved"]


def test_a_move_task_is_waited_for_until_sqs_lists_it_and_an_older_one_is_not_taken_for_it(sqs: Any) -> None:
    lines, report = quiet()
    queues = SqsQueues(sqs, report=report)
    with Stubber(sqs) as stubber:
        stub_started_task(stubber, waiting=2)
        # just started: not listed yet; then the DLQ's previous task, finished an hour ago; then ours
        stubber.add_response("list_message_move_tasks", {"Results": []})
        old = task("COMPLETED", 40, started_ms=time.time() * 1000 - 3_600_000, ApproximateNumberOfMessagesToMove=40)
        stubber.add_response("list_message_move_tasks", {"Results": [old]})
        # ours, polled twice at the same progress, then done
        for _ in range(2):
            running = task("RUNNING", 1, ApproximateNumberOfMessagesToMove=2)
            stubber.add_response("list_message_move_tasks", {"Results": [running]})
        stubber.add_response(
            "list_message_move_tasks", {"Results": [task("COMPLETED", 2, ApproximateNumberOfMessagesToMove=2)]}
        )
        queues._urls = {DLQ: DLQ_URL, SOURCE: SOURCE_URL}
        assert queues.redrive_with_task(DLQ, SOURCE, poll_seconds=0) == 2
        stubber.assert_no_pending_responses()
    # each state of progress said once, never the old task's
    assert lines == [f"  {DLQ}: running, 1/2 moved", f"  {DLQ}: completed, 2/2 moved"]


def test_a_copy_redrive_stops_when_the_dlq_hands_out_nothing(sqs: Any) -> None:
    # Another redrive (or a console user) holds the two messages: this one does not spin, and says to run again
    lines, report = quiet()
    queues = SqsQueues(sqs, use_move_tasks=False, report=report)
    with Stubber(sqs) as stubber:
        stub_urls(stubber)
        stub_depth(stubber, DLQ_URL, 2)
        stubber.add_response("receive_message", {"Messages": []})
        stub_depth(stubber, DLQ_URL, 2)
        assert queues.redrive(DLQ, SOURCE) == 0
        stubber.assert_no_pending_responses()
    assert lines == [f"  {DLQ}: 2 more arrived while moving (failed again?); run the redrive again for them"]


def test_a_dead_letter_without_a_group_is_refused_rather_than_sent_out_of_order() -> None:
    message = {"MessageId": "m-9", "ReceiptHandle": "r", "Body": "{}", "Attributes": {}}
    with pytest.raises(RedriveError, match="message m-9 has no MessageGroupId; is the queue FIFO"):
        copy_of(message)
