"""The local poller on the sync queue: a long reconcile step never holds up a stop, and never loses its message."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from local.poller import LocalContext, Poller
from pipeline import services
from pipeline.settings import Settings

STEP = json.dumps({"job_id": "sync-1", "step": 3})
CONTINUATION = json.dumps({"job_id": "sync-1", "step": 4})


def sync_queue(settings: Settings) -> tuple[Any, str]:
    sqs = services.aws("sqs")
    return sqs, sqs.get_queue_url(QueueName=settings.sync_queue)["QueueUrl"]


def bodies(sqs: Any, url: str) -> list[str]:
    """Every visible message's body, each received once (so left hidden for the queue's visibility timeout)."""
    found: list[str] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        found += [m["Body"] for m in batch]
    return found


def in_flight(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_a_step_still_running_after_the_grace_is_abandoned_and_its_message_goes_back(settings: Settings) -> None:
    sqs, url = sync_queue(settings)
    # No deduplication id: the sync queue deduplicates by content
    sqs.send_message(QueueUrl=url, MessageBody=STEP, MessageGroupId="reconcile")
    entered, release = threading.Event(), threading.Event()

    def stuck(event: dict[str, Any], context: LocalContext) -> dict[str, Any]:
        entered.set()
        release.wait(30)  # a Jira call that takes its time, ignoring the clock
        return {"batchItemFailures": []}

    poller = Poller("reconcile", services.queue_bus(), settings.sync_queue, stuck, timeout=660, stop_grace=0.3)
    poller.start()
    assert entered.wait(10)
    started = time.monotonic()
    poller.stop()
    # Then the stop waited the grace and no longer, and the message is visible again, ready to be saved
    assert 0.25 < time.monotonic() - started < 2
    assert bodies(sqs, url) == [STEP]
    # And when the abandoned handler finally answers "done", its stale answer deletes nothing
    release.set()
    poller._thread.join(10)
    assert not poller._thread.is_alive()
    assert in_flight(sqs, url) == 1


def test_a_step_watching_its_clock_is_told_to_wrap_up_and_finishes_within_the_grace(settings: Settings) -> None:
    sqs, url = sync_queue(settings)
    sqs.send_message(QueueUrl=url, MessageBody=STEP, MessageGroupId="reconcile")
    entered = threading.Event()
    seen: list[int] = []

    def careful(event: dict[str, Any], context: LocalContext) -> dict[str, Any]:
        # As on Lambda: work until ~60 s are left, then save progress and queue the next step
        seen.append(context.get_remaining_time_in_millis())
        entered.set()
        while context.get_remaining_time_in_millis() > 60_000:
            time.sleep(0.01)
        seen.append(context.get_remaining_time_in_millis())
        sqs.send_message(QueueUrl=url, MessageBody=CONTINUATION, MessageGroupId="reconcile")
        return {"batchItemFailures": []}

    poller = Poller("reconcile", services.queue_bus(), settings.sync_queue, careful, timeout=660, stop_grace=5)
    poller.start()
    assert entered.wait(10)
    started = time.monotonic()
    poller.stop()
    assert time.monotonic() - started < 2  # it wrapped up at once: no waiting out the grace
    assert 600_000 < seen[0] <= 660_000 and seen[1] <= 5_000
    # Then the step it finished is deleted and only its continuation is queued
    assert bodies(sqs, url) == [CONTINUATION]


def test_without_a_timeout_the_context_keeps_saying_a_minute_is_left() -> None:
    # The writers and the committer see what they always saw
    assert LocalContext("writer", "r-1").get_remaining_time_in_millis() == 60_000
