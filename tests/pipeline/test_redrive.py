"""`make redrive`: dead-lettered events and changes go back to their queues, in their groups, and are stored once."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber

from local.poller import Poller
from local.stack import LocalStack
from pipeline import capture as capture_module
from pipeline import redrive, services
from pipeline.backends import Outgoing
from pipeline.backends.aws import SqsQueues
from pipeline.git.store import GitStore
from pipeline.redrive import Pair
from pipeline.settings import Settings
from pipeline.snapshot import issue_document
from pipeline.store import Store, unreadable_key
from tests.builders import fixture_bytes, queued_event, stub_depth, summary_edit
from tests.environments import stack_env
from tests.harness import Pipeline, receive_all, remote_commits

ROOT = Path(__file__).resolve().parents[2]


def make_event(issue: int, version: int) -> tuple[str, bytes]:
    return f"rd-{issue}-{version}", summary_edit(30000 + issue, f"OPS-{200 + issue}", version, 60000 + version)


def deliver(pipeline: Pipeline, issue: int, version: int) -> None:
    identifier, body = make_event(issue, version)
    assert pipeline.deliver(body, identifier=identifier)["statusCode"] == 202


def s3_down(self: Store, *args: object, **kwargs: object) -> bool:
    raise ConnectionError("S3 unavailable")


def poll_until_dead_lettered(pipeline: Pipeline, *queues: str) -> None:
    """Fail every attempt until moto moves the messages to the DLQ (it does so on the receive after the 5th)."""
    for _ in range(30):
        pipeline.writer.poll_once()
        pipeline.committer.poll_once()
        if pipeline.depth(*queues) == 0:
            return
    raise AssertionError(f"{queues} never emptied into their dead-letter queues")


def sqs_bus() -> SqsQueues:
    """The tests' queues: SQS on the moto server, redriven by copying (moto has no message move tasks)."""
    bus = services.queue_bus()
    assert isinstance(bus, SqsQueues) and not bus.use_move_tasks
    return bus


def snapshot_ids_of(keys: list[str]) -> list[str]:
    return sorted(k.rsplit("/", 1)[1].removesuffix(".json").split("-", 1)[1] for k in keys)


def snapshot_event_ids(pipeline: Pipeline, issue: int) -> list[str]:
    return snapshot_ids_of(pipeline.keys(f"snapshots/{30000 + issue}/"))


def test_dead_lettered_events_and_changes_are_redriven_and_stored_once(
    pipeline: Pipeline, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    # Given S3 snapshot writes fail: three issues, three events each, end in the events DLQ
    real_put = Store.put_snapshot
    monkeypatch.setattr(Store, "put_snapshot", s3_down)
    for issue in (1, 2, 3):
        for version in (0, 1, 2):
            deliver(pipeline, issue, version)
    poll_until_dead_lettered(pipeline, settings.events_queue)
    assert pipeline.depth(settings.events_dlq) == 9
    # And, S3 back but every commit failing (a remote down leaves changes unreceived: it never dead-letters them),
    # three captured changes end in the commits DLQ; visible again after 1 s, so five failures come quickly
    monkeypatch.setattr(Store, "put_snapshot", real_put)
    monkeypatch.setenv("JSYNC_COMMIT_VISIBILITY_SECONDS", "1")
    services.reset()
    real_stage = GitStore.stage
    monkeypatch.setattr(GitStore, "stage", s3_down)
    # One change per issue: moto hands out a group's later message first once an earlier one's visibility timeout
    # ends (moto 5.2.5; SQS does not), so two of one issue would reach the DLQ reversed. Order within a group through
    # the DLQ and back is test_redrive_keeps_groups_and_order_within_a_group's.
    deliver(pipeline, 1, 3)  # newer than everything of issue 1 still in the DLQ
    deliver(pipeline, 4, 0)
    poll_until_dead_lettered(pipeline, settings.events_queue)
    for _ in range(15):  # each round a bell, as the schedule rings it, once the failed changes are visible again
        services.queues().ring()
        pipeline.committer.poll_once()
        if pipeline.depth(settings.commits_queue) == 0 and pipeline.depth(settings.commits_dlq) == 2:
            break
        time.sleep(1.1)
    assert pipeline.depth(settings.commits_dlq) == 2
    assert pipeline.commits() == []

    # When the faults are fixed and both DLQs are redriven: events in-process, the rest through the CLI
    monkeypatch.setattr(GitStore, "stage", real_stage)
    monkeypatch.delenv("JSYNC_COMMIT_VISIBILITY_SECONDS")
    services.reset()
    capsys.readouterr()
    assert redrive.redrive_all(sqs_bus(), [Pair(settings.events_dlq, settings.events_queue)]) == {
        settings.events_dlq: 9
    }
    assert redrive.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "moved 9 from jsync-local-events-dlq.fifo to jsync-local-events.fifo",
        "jsync-local-events-dlq.fifo is empty; nothing to move",
        "moved 2 from jsync-local-commits-dlq.fifo to jsync-local-commits.fifo",
        "jsync-local-sync-dlq.fifo is empty; nothing to move",
        "jsync-local-bell-dlq.fifo is empty; nothing to move",
        "jsync-local-attachments-dlq.fifo is empty; nothing to move",
        "done: 2 messages moved",
    ]
    pipeline.drain()

    # Then every event is one snapshot, latest/ and git hold the newest version, one commit per advancing event
    assert pipeline.depth(settings.events_dlq, settings.commits_dlq) == 0
    for issue, versions in {1: 4, 2: 3, 3: 3, 4: 1}.items():
        assert snapshot_event_ids(pipeline, issue) == [f"rd-{issue}-{v}" for v in range(versions)]
        newest = json.loads(make_event(issue, versions - 1)[1])["issue"]
        assert pipeline.latest(str(30000 + issue))["issue"] == issue_document(newest)
        assert json.loads(pipeline.git_file(f"issues/OPS/OPS-{200 + issue}.json") or b"{}") == issue_document(newest)
    committed = [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())]
    assert len(committed) == len(set(committed))
    # issue 1's older events came back after its newest one was committed: they add no commit
    expected = {1: ["rd-1-3"], 2: ["rd-2-0", "rd-2-1", "rd-2-2"], 3: ["rd-3-0", "rd-3-1", "rd-3-2"]}
    expected[4] = ["rd-4-0"]
    for issue, events_of_issue in expected.items():
        assert [e for e in committed if e.startswith(f"rd-{issue}-")] == events_of_issue


def _send_to_dlq(bus: SqsQueues, dlq: str, group: str, body: str) -> None:
    bus.send(dlq, [Outgoing(body, group, dedup_id=f"orig-{body}")])


def test_redrive_keeps_groups_and_order_within_a_group(settings: Settings) -> None:
    # Given 15 dead letters (more than one receive) in three interleaved groups
    bus = sqs_bus()
    dlq_url = bus.url(settings.events_dlq)
    sent = [(f"3000{n % 3}", f"m{n:02d}") for n in range(15)]
    for group, body in sent:
        _send_to_dlq(bus, settings.events_dlq, group, body)
    # When they are redriven
    moved = bus.redrive_by_copy(settings.events_dlq, settings.events_queue)
    # Then the source queue holds each in its group, in order, under a fresh dedup id; the DLQ is empty
    assert moved == 15
    received = receive_all(bus.url(settings.events_queue), delete=True)
    for group in ("30000", "30001", "30002"):
        got = [m["Body"] for m in received if m["Attributes"]["MessageGroupId"] == group]
        assert got == [body for g, body in sent if g == group]
    assert len(received) == 15
    assert all(m["Attributes"]["MessageDeduplicationId"].startswith("redrive-") for m in received)
    assert receive_all(dlq_url, delete=True) == []


def test_dead_lettered_reconcile_steps_go_back_to_the_sync_queue_in_their_group(
    settings: Settings, capsys: Any
) -> None:
    # Given two reconcile steps that failed five times each (Jira down, say) and were dead-lettered
    bus = sqs_bus()
    steps = [json.dumps({"job_id": "sync-a", "step": 0}), json.dumps({"job_id": "sync-b", "step": 0})]
    for body in steps:
        bus.send(settings.sync_queue, [Outgoing(body, "reconcile")])

    def jira_down(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    failing = Poller("reconcile", bus, settings.sync_queue, jira_down, retry_delay=0, timeout=660)
    for _ in range(30):
        failing.poll_once()
        if bus.depth(settings.sync_queue).total == 0 and bus.depth(settings.sync_dlq).waiting == 2:
            break
    assert bus.depth(settings.sync_dlq).waiting == 2
    # When `make redrive` runs
    capsys.readouterr()
    assert redrive.main([]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "jsync-local-events-dlq.fifo is empty; nothing to move",
        "jsync-local-commits-dlq.fifo is empty; nothing to move",
        "moved 2 from jsync-local-sync-dlq.fifo to jsync-local-sync.fifo",
        "jsync-local-bell-dlq.fifo is empty; nothing to move",
        "jsync-local-attachments-dlq.fifo is empty; nothing to move",
        "done: 2 messages moved",
    ]
    # Then both steps are back on the sync queue, in the one reconcile group, in their order
    received = receive_all(bus.url(settings.sync_queue), delete=True)
    assert [(m["Body"], m["Attributes"]["MessageGroupId"]) for m in received] == [(b, "reconcile") for b in steps]
    assert bus.depth(settings.sync_dlq).total == 0


def test_a_redrive_stopped_between_send_and_delete_loses_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = sqs_bus()
    _send_to_dlq(bus, settings.commits_dlq, "commits", "change-1")

    def crash(**kwargs: Any) -> None:
        raise ConnectionError("killed before the delete")

    # Given a redrive dies after sending its message but before deleting it from the DLQ
    monkeypatch.setattr(bus.sqs, "delete_message", crash)
    with pytest.raises(ConnectionError):
        bus.redrive_by_copy(settings.commits_dlq, settings.commits_queue, visibility_timeout=1)
    monkeypatch.undo()
    time.sleep(1.1)
    # When it runs again, the message is moved once more: at worst a duplicate (this one has the same dedup id)
    assert bus.redrive_by_copy(settings.commits_dlq, settings.commits_queue) == 1
    bodies = [m["Body"] for m in receive_all(bus.url(settings.commits_queue), delete=True)]
    assert set(bodies) == {"change-1"} and 1 <= len(bodies) <= 2
    assert receive_all(bus.url(settings.commits_dlq), delete=True) == []


def test_messages_failing_again_during_a_redrive_are_left_for_the_next_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    bus = sqs_bus()
    for n in range(3):
        _send_to_dlq(bus, settings.commits_dlq, "commits", f"change-{n}")
    dlq_url, real_send = bus.url(settings.commits_dlq), bus.sqs.send_message

    def send_and_fail_again(**kwargs: Any) -> Any:
        # As if the running committer failed the copy five more times at once: it is back in the DLQ.
        answer = real_send(**kwargs)
        again = f"again-{answer['MessageId']}"
        real_send(QueueUrl=dlq_url, MessageBody=again, MessageGroupId="commits", MessageDeduplicationId=again)
        return answer

    monkeypatch.setattr(bus.sqs, "send_message", send_and_fail_again)
    pair = Pair(settings.commits_dlq, settings.commits_queue)
    # When the redrive runs, it moves what the DLQ held at its start, and stops
    assert redrive.redrive_all(bus, [pair]) == {settings.commits_dlq: 3}
    assert capsys.readouterr().out.splitlines() == [
        "  jsync-local-commits-dlq.fifo: 3 more arrived while moving (failed again?); run the redrive again for them",
        "moved 3 from jsync-local-commits-dlq.fifo to jsync-local-commits.fifo",
    ]
    assert bus.depth(settings.commits_dlq).waiting == 3


# --- AWS: message move tasks, against a stubbed client ----------------------------------------------------------
ACCOUNT = "arn:aws:sqs:us-east-1:123456789012"


@pytest.fixture
def aws_sqs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A plain SQS client that would talk to AWS, with no endpoint override: every call is stubbed."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")


def queue_urls(pair: Pair) -> tuple[str, str]:
    return f"https://sqs.us-east-1.amazonaws.com/123456789012/{pair.dlq}", f"https://q/{pair.source}"


def stub_queues(stubber: Stubber, pair: Pair, waiting: int) -> None:
    """What `SqsQueues.redrive` asks before a move task: both URLs, the DLQ's depth, and (if it holds any) the
    ARNs of both queues."""
    dlq_url, source_url = queue_urls(pair)
    stubber.add_response("get_queue_url", {"QueueUrl": dlq_url}, {"QueueName": pair.dlq})
    stubber.add_response("get_queue_url", {"QueueUrl": source_url}, {"QueueName": pair.source})
    stub_depth(stubber, dlq_url, waiting)
    if not waiting:
        return  # empty: nothing to start a task for
    for name, url in ((pair.dlq, dlq_url), (pair.source, source_url)):
        stubber.add_response(
            "get_queue_attributes",
            {"Attributes": {"QueueArn": f"{ACCOUNT}:{name}"}},
            {"QueueUrl": url, "AttributeNames": ["QueueArn"]},
        )


def stub_task(stubber: Stubber, pair: Pair, *states: dict[str, Any]) -> None:
    arns = {"SourceArn": f"{ACCOUNT}:{pair.dlq}", "DestinationArn": f"{ACCOUNT}:{pair.source}"}
    stubber.add_response("start_message_move_task", {"TaskHandle": f"handle-{pair.dlq}"}, arns)
    for state in states:
        result = {**arns, "StartedTimestamp": int(time.time() * 1000), **state}
        stubber.add_response(
            "list_message_move_tasks", {"Results": [result]}, {"SourceArn": arns["SourceArn"], "MaxResults": 1}
        )


EVENTS = Pair("jsync-prod-events-dlq.fifo", "jsync-prod-events.fifo")
COMMITS = Pair("jsync-prod-commits-dlq.fifo", "jsync-prod-commits.fifo")
SYNC = Pair("jsync-prod-sync-dlq.fifo", "jsync-prod-sync.fifo")
BELL = Pair("jsync-prod-bell-dlq.fifo", "jsync-prod-bell.fifo")
ATTACHMENTS = Pair("jsync-prod-attachments-dlq.fifo", "jsync-prod-attachments.fifo")


def test_on_aws_a_move_task_moves_each_dlq_and_reports_progress(aws_sqs: Any, capsys: Any) -> None:
    with Stubber(aws_sqs) as stubber:
        stub_queues(stubber, EVENTS, waiting=5)
        stub_task(
            stubber,
            EVENTS,
            {"Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 2, "ApproximateNumberOfMessagesToMove": 5},
            {"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 5, "ApproximateNumberOfMessagesToMove": 5},
        )
        stub_queues(stubber, COMMITS, waiting=0)  # empty: no task is started
        stub_queues(stubber, SYNC, waiting=1)
        stub_task(
            stubber,
            SYNC,
            {"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 1, "ApproximateNumberOfMessagesToMove": 1},
        )
        bus = SqsQueues(aws_sqs, use_move_tasks=True)
        # a task's progress is polled every 2 s; here at once
        bus.redrive_with_task = functools.partial(bus.redrive_with_task, poll_seconds=0)  # type: ignore[method-assign]
        moved = redrive.redrive_all(bus, [EVENTS, COMMITS, SYNC])
        stubber.assert_no_pending_responses()
    assert moved == {EVENTS.dlq: 5, COMMITS.dlq: 0, SYNC.dlq: 1}
    assert capsys.readouterr().out.splitlines() == [
        "  jsync-prod-events-dlq.fifo: running, 2/5 moved",
        "  jsync-prod-events-dlq.fifo: completed, 5/5 moved",
        "moved 5 from jsync-prod-events-dlq.fifo to jsync-prod-events.fifo",
        "jsync-prod-commits-dlq.fifo is empty; nothing to move",
        "  jsync-prod-sync-dlq.fifo: completed, 1/1 moved",
        "moved 1 from jsync-prod-sync-dlq.fifo to jsync-prod-sync.fifo",
    ]


def test_on_aws_a_stage_without_the_sync_queue_still_redrives_the_others(
    aws_sqs: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("JSYNC_STAGE", "unset-by-monkeypatch")  # main sets both; monkeypatch restores them
    monkeypatch.setenv("JSYNC_BACKEND", "embedded")
    monkeypatch.setattr(services, "aws", functools.cache(lambda service: aws_sqs))
    done = {"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 2, "ApproximateNumberOfMessagesToMove": 2}
    with Stubber(aws_sqs) as stubber:
        stub_queues(stubber, EVENTS, waiting=2)
        stub_task(stubber, EVENTS, done)
        stub_queues(stubber, COMMITS, waiting=0)
        # deployed before issue #7: no sync queues yet
        stubber.add_client_error(
            "get_queue_url",
            "AWS.SimpleQueueService.NonExistentQueue",
            http_status_code=400,
            expected_params={"QueueName": SYNC.dlq},
        )
        stub_queues(stubber, BELL, waiting=0)
        stub_queues(stubber, ATTACHMENTS, waiting=0)
        assert redrive.main(["--stage", "prod"]) == 1
        stubber.assert_no_pending_responses()
    out, err = capsys.readouterr()
    assert "moved 2 from jsync-prod-events-dlq.fifo to jsync-prod-events.fifo" in out
    assert err.strip() == "redrive: queue jsync-prod-sync-dlq.fifo does not exist; deploy the stage again to create it"


def test_on_aws_a_failed_move_task_is_an_error_exit_naming_its_reason(
    aws_sqs: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    failed = {
        "Status": "FAILED",
        "ApproximateNumberOfMessagesMoved": 1,
        "ApproximateNumberOfMessagesToMove": 4,
        "FailureReason": "AccessDenied: kms:Decrypt",
    }
    done = {"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 2, "ApproximateNumberOfMessagesToMove": 2}
    monkeypatch.setenv("JSYNC_STAGE", "unset-by-monkeypatch")  # main sets both; monkeypatch restores them
    monkeypatch.setenv("JSYNC_BACKEND", "embedded")
    monkeypatch.setattr(services, "aws", functools.cache(lambda service: aws_sqs))
    with Stubber(aws_sqs) as stubber:
        stub_queues(stubber, EVENTS, waiting=4)
        stub_task(stubber, EVENTS, failed)
        stub_queues(stubber, COMMITS, waiting=2)  # a failure in one queue does not stop the other
        stub_task(stubber, COMMITS, done)
        stub_queues(stubber, SYNC, waiting=0)
        stub_queues(stubber, BELL, waiting=0)
        stub_queues(stubber, ATTACHMENTS, waiting=0)
        assert redrive.main(["--stage", "prod"]) == 1
        stubber.assert_no_pending_responses()
    out, err = capsys.readouterr()
    assert "moved 2 from jsync-prod-commits-dlq.fifo to jsync-prod-commits.fifo" in out
    assert err.strip() == (
        "redrive: move task from jsync-prod-events-dlq.fifo to jsync-prod-events.fifo failed after moving 1: "
        "AccessDenied: kms:Decrypt"
    )


def receive_args(url: str, count: int) -> dict[str, Any]:
    return {
        "QueueUrl": url,
        "MaxNumberOfMessages": count,
        "VisibilityTimeout": 60,
        "WaitTimeSeconds": 1,
        "AttributeNames": ["All"],
        "MessageSystemAttributeNames": ["All"],
        "MessageAttributeNames": ["All"],
    }


def test_without_move_tasks_the_redrive_copies_message_by_message(aws_sqs: Any, capsys: Any) -> None:
    dlq_url, source_url = queue_urls(EVENTS)
    with Stubber(aws_sqs) as stubber:
        stub_queues(stubber, EVENTS, waiting=1)
        stubber.add_client_error("start_message_move_task", "UnsupportedOperation", http_status_code=400)
        stub_depth(stubber, dlq_url, 1)
        message = {
            "MessageId": "m-1",
            "ReceiptHandle": "rh-1",
            "Body": "{}",
            "Attributes": {"MessageGroupId": "10042", "MessageDeduplicationId": "wh-1"},
        }
        stubber.add_response("receive_message", {"Messages": [message]}, receive_args(dlq_url, 1))
        stubber.add_response(
            "send_message",
            {"MessageId": "m-2"},
            {
                "QueueUrl": source_url,
                "MessageBody": "{}",
                "MessageGroupId": "10042",
                "MessageDeduplicationId": "redrive-m-1",
            },
        )
        stubber.add_response("delete_message", {}, {"QueueUrl": dlq_url, "ReceiptHandle": "rh-1"})
        stub_depth(stubber, dlq_url, 0)
        assert redrive.redrive_all(SqsQueues(aws_sqs, use_move_tasks=True), [EVENTS]) == {EVENTS.dlq: 1}
        stubber.assert_no_pending_responses()
    assert capsys.readouterr().out.splitlines() == [
        "  jsync-prod-events-dlq.fifo: this endpoint has no message move tasks; copying message by message",
        "moved 1 from jsync-prod-events-dlq.fifo to jsync-prod-events.fifo",
    ]


# --- the command line, locally -----------------------------------------------------------------------------------
# What would point the redrive elsewhere than the local stack's embedded backend.
_NOT_LOCAL = ("AWS_ENDPOINT_URL", "JSYNC_STAGE", "JSYNC_BACKEND")


def test_cli_without_a_local_stack_exits_2_saying_how_to_start_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in _NOT_LOCAL}
    env["JSYNC_HOME"] = str(tmp_path / "empty")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.redrive"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"redrive: no local stack state under {tmp_path / 'empty'}; "
        "start it with `make run`, or pass STAGE=name for AWS"
    )
    assert not (tmp_path / "empty" / "jsync.db").exists()  # it looked, and made nothing


def test_cli_redrives_the_running_local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in stack_env(tmp_path / "home").items():
        monkeypatch.setenv(k, v)
    for name in ("JSYNC_GIT_REMOTE", *_NOT_LOCAL):
        monkeypatch.delenv(name, raising=False)
    stack = LocalStack(retry_delay=0)
    stack.start()
    try:
        assert stack.settings.backend == "embedded" and stack.settings.database.is_file()
        bus = services.queue_bus()
        # Given an event dead-lettered while S3 was failing
        real_put = Store.put_snapshot
        monkeypatch.setattr(Store, "put_snapshot", s3_down)
        identifier, body = make_event(7, 0)
        headers = {"content-type": "application/json", "x-atlassian-webhook-identifier": identifier}
        assert httpx.post(stack.urls.webhook, content=body, headers=headers, timeout=10).status_code == 202
        deadline = time.monotonic() + 30
        while bus.depth(stack.settings.events_dlq).waiting == 0:
            assert time.monotonic() < deadline, "the event never reached the DLQ"
            time.sleep(0.1)
        monkeypatch.setattr(Store, "put_snapshot", real_put)
        assert remote_commits(stack.settings.git_remote, "main") == []
        # When `make redrive` runs in another process, finding the stack's queues by $JSYNC_HOME alone
        env = {k: v for k, v in os.environ.items() if k not in _NOT_LOCAL}
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.redrive"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        # Then it moves the event back, and the stack captures and commits it, once
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "moved 1 from jsync-local-events-dlq.fifo to jsync-local-events.fifo",
            "jsync-local-commits-dlq.fifo is empty; nothing to move",
            "jsync-local-sync-dlq.fifo is empty; nothing to move",
            "jsync-local-bell-dlq.fifo is empty; nothing to move",
            "jsync-local-attachments-dlq.fifo is empty; nothing to move",
            "done: 1 messages moved",
        ]
        stack.wait_idle()
        assert [c.trailers["Jira-Event-Id"] for c in remote_commits(stack.settings.git_remote, "main")] == [identifier]
        assert bus.depth(stack.settings.events_dlq).total == 0
        assert snapshot_ids_of(services.store().all_keys(f"snapshots/{30000 + 7}/")) == [identifier]
    finally:
        stack.stop()
        services.reset()


def test_events_the_writer_set_aside_are_queued_again_and_stored_once_it_can_read_them(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a writer that cannot interpret issue 10042's creation (a bug no test foresaw)
    real_apply = capture_module.apply_event

    def broken(previous: Any, event: Any) -> Any:
        raise TypeError("argument of type 'NoneType' is not iterable")

    monkeypatch.setattr(capture_module, "apply_event", broken)
    assert pipeline.deliver(fixture_bytes("issue_created.json"), identifier="sa-1")["statusCode"] == 202
    pipeline.drain()
    # it set the event aside instead of failing it five times into the dead-letter queue
    store = services.store()
    assert pipeline.depth() == 0
    assert pipeline.latest("10042") is None
    assert store.all_keys("index/unreadable/") == ["index/unreadable/sa-1.json"]
    assert store.read_json("sync/pending/10042.json") is not None  # and reconcile will read the issue from Jira

    # When the writer is fixed and the operator runs the redrive, within SQS's 5-minute deduplication window
    monkeypatch.setattr(capture_module, "apply_event", real_apply)
    assert redrive.retry_set_aside(store, services.queues()) == 1
    pipeline.drain()

    # Then the event is captured and committed once, and nothing is left set aside
    assert pipeline.latest("10042")["capture"]["event_id"] == "sa-1"
    assert [c.trailers["Jira-Event-Id"] for c in pipeline.commits()] == ["sa-1"]
    assert store.all_keys("index/unreadable/") == []
    assert redrive.retry_set_aside(store, services.queues()) == 0


def test_a_deployed_stage_s_bucket_is_found_from_its_stack_output(monkeypatch: pytest.MonkeyPatch) -> None:
    # CloudFormation names the deployed bucket, so set-aside events of a stage are found through the stack's output
    cfn = boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(services, "aws", functools.cache(lambda service: cfn))
    outputs = [{"OutputKey": "WebhookUrl", "OutputValue": "https://x"}]
    outputs.append({"OutputKey": "BucketName", "OutputValue": "b1"})
    stack = {"StackName": "jsync-prod", "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": "UPDATE_COMPLETE"}
    with Stubber(cfn) as stubber:
        found = {"Stacks": [{**stack, "Outputs": outputs}]}
        stubber.add_response("describe_stacks", found, {"StackName": "jsync-prod"})
        stubber.add_client_error("describe_stacks", "ValidationError", http_status_code=400)
        assert redrive.stage_bucket("prod") == "b1"
        assert redrive.stage_bucket("gone") is None  # no such stack: the redrive says so and leaves them


# --- the command line, in this process ----------------------------------------------------------------------------


def set_aside(store: Store, event_id: str, body: bytes, issue_id: str) -> None:
    """An accepted event as the writer sets it aside when it cannot interpret it: its body kept raw, and a record
    under `index/unreadable/` naming it by reference (the shape `retry_set_aside` reads)."""
    queued = queued_event(event_id, body)
    store.put_raw(queued.raw_key, body, queued.content_type)
    record = {
        "event": json.loads(dataclasses.replace(queued, body=None).to_json()),
        "issue_id": issue_id,
        "reason": "TypeError",
        "detail": "a writer bug",
        "set_aside_at": int(time.time() * 1000),
    }
    store.put_json(unreadable_key(event_id), record)


def test_a_dry_run_says_what_it_would_move_and_the_real_run_then_moves_it(
    pipeline: Pipeline, settings: Settings, capsys: Any
) -> None:
    # Given an event dead-lettered, and another the writer set aside as unreadable
    identifier, body = make_event(8, 0)
    services.queue_bus().send(settings.events_dlq, [Outgoing(queued_event(identifier, body).to_json(), "30008", "x")])
    set_aside(services.store(), "sa-2", fixture_bytes("issue_created.json"), "10042")
    capsys.readouterr()

    # When the operator asks first what a redrive would do
    assert redrive.main(["--dry-run"]) == 0

    # Then it says so for every queue and the set-aside events, and moves nothing
    assert capsys.readouterr().out.splitlines() == [
        "would move 1 from jsync-local-events-dlq.fifo to jsync-local-events.fifo",
        "would move 0 from jsync-local-commits-dlq.fifo to jsync-local-commits.fifo",
        "would move 0 from jsync-local-sync-dlq.fifo to jsync-local-sync.fifo",
        "would move 0 from jsync-local-bell-dlq.fifo to jsync-local-bell.fifo",
        "would move 0 from jsync-local-attachments-dlq.fifo to jsync-local-attachments.fifo",
        "would queue again 1 set-aside events",
    ]
    assert pipeline.depth(settings.events_dlq) == 1
    assert services.store().all_keys("index/unreadable/") == ["index/unreadable/sa-2.json"]

    # When the redrive runs
    assert redrive.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "moved 1 from jsync-local-events-dlq.fifo to jsync-local-events.fifo"
    assert out[-2:] == ["queued again 1 events the writer had set aside as unreadable", "done: 1 messages moved"]
    pipeline.drain()
    # Then both are captured and committed
    assert pipeline.latest("10042") is not None and pipeline.latest("30008") is not None
    assert sorted(c.trailers["Jira-Event-Id"] for c in pipeline.commits()) == sorted([identifier, "sa-2"])


def test_a_set_aside_event_another_redrive_took_meanwhile_is_not_queued_twice(
    pipeline: Pipeline, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services.store()
    set_aside(store, "sa-0", fixture_bytes("issue_created.json"), "10042")
    set_aside(store, "sa-1", fixture_bytes("issue_created_adf.json"), "10043")
    # Given a second operator's redrive queues and forgets sa-1 between this one's listing and its read
    real_all_keys = store.all_keys

    def listed_then_taken(prefix: str) -> list[str]:
        keys = real_all_keys(prefix)
        store.delete("index/unreadable/sa-1.json")
        return keys

    monkeypatch.setattr(store, "all_keys", listed_then_taken)
    # When this redrive runs, it queues only what is still set aside
    assert redrive.retry_set_aside(store, services.queues()) == 1
    assert pipeline.depth(settings.events_queue) == 1


def test_running_it_with_no_local_stack_as_a_module_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import runpy
    import warnings

    for name in ("AWS_ENDPOINT_URL", "JSYNC_STAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JSYNC_BACKEND", "embedded")
    monkeypatch.setenv("JSYNC_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "argv", ["python -m pipeline.redrive"])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as exited:
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is imported already (by this test)
        runpy.run_module("pipeline.redrive", run_name="__main__")
    assert exited.value.code == 2
    assert "redrive: no local stack state under" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "jsync.db").exists()


def test_nothing_answering_at_the_endpoint_is_exit_1_saying_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from local.stack import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("JSYNC_BACKEND", "aws")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert redrive.main([]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"redrive: nothing answers at {endpoint}")
    assert err.endswith("; is the stack running?")


def test_ctrl_c_mid_redrive_exits_130_saying_what_is_left(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def interrupted(self: SqsQueues, dlq: str, source: str) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(SqsQueues, "redrive", interrupted)
    assert redrive.main([]) == 130
    assert capsys.readouterr().err.strip() == (
        "redrive: interrupted; a started move task keeps going, anything else is left for a rerun"
    )


@pytest.mark.parametrize("bucket", [None, "jsync-prod-bucket-1a2b3c"])
def test_on_a_deployed_stage_set_aside_events_are_looked_for_in_the_stack_s_bucket(
    aws_sqs: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any, bucket: str | None
) -> None:
    cfn = boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    clients = {"sqs": aws_sqs, "cloudformation": cfn, "s3": s3}
    monkeypatch.setattr(services, "aws", functools.cache(lambda service: clients[service]))
    monkeypatch.setenv("JSYNC_STAGE", "unset-by-monkeypatch")  # main sets these; monkeypatch restores them
    monkeypatch.setenv("JSYNC_BACKEND", "embedded")
    monkeypatch.setenv("JSYNC_BUCKET", "unset-by-monkeypatch")
    monkeypatch.delenv("JSYNC_BUCKET")
    with Stubber(aws_sqs) as sqs_stub, Stubber(cfn) as cfn_stub, Stubber(s3) as s3_stub:
        for pair in (EVENTS, COMMITS, SYNC, BELL, ATTACHMENTS):
            stub_queues(sqs_stub, pair, waiting=0)
        if bucket is None:  # the stack is gone, or was never deployed under this name
            cfn_stub.add_client_error("describe_stacks", "ValidationError", http_status_code=400)
        else:
            stack: dict[str, Any] = {"StackName": "jsync-prod", "CreationTime": "2026-01-01T00:00:00Z"}
            stack["StackStatus"] = "CREATE_COMPLETE"
            stack["Outputs"] = [{"OutputKey": "BucketName", "OutputValue": bucket}]
            cfn_stub.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "jsync-prod"})
            s3_stub.add_response(
                "list_objects_v2", {"KeyCount": 0}, {"Bucket": bucket, "Prefix": "index/unreadable/", "MaxKeys": 1000}
            )
        assert redrive.main(["--stage", "prod"]) == 0
        for stub in (sqs_stub, cfn_stub, s3_stub):
            stub.assert_no_pending_responses()
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "done: 0 messages moved"
    if bucket is None:
        assert err.strip() == "redrive: could not read the stack's BucketName output; events set aside were left"
    else:
        assert err == ""
