"""`make redrive`: dead-lettered events and changes go back to their queues, in their groups, and are stored once."""

from __future__ import annotations

import copy
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
from pipeline.redrive import Pair
from pipeline.settings import Settings
from pipeline.snapshot import issue_document
from pipeline.store import Store
from tests.conftest import stack_env
from tests.harness import Pipeline, fixture_bytes, fixture_json, receive_all, remote_commits

ROOT = Path(__file__).resolve().parents[2]
BASE = fixture_json("issue_updated.json")


def make_event(issue: int, version: int) -> tuple[str, bytes]:
    """Version `version` of issue `issue`: later versions have later timestamps and new summaries."""
    payload = copy.deepcopy(BASE)
    payload["timestamp"] = 1764000000000 + version * 1000
    payload["issue"]["id"] = str(30000 + issue)
    payload["issue"]["key"] = f"OPS-{200 + issue}"
    payload["issue"]["fields"]["summary"] = f"issue {issue} version {version}"
    payload["changelog"] = {"id": str(60000 + version), "items": []}
    return f"rd-{issue}-{version}", json.dumps(payload).encode()


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


def snapshot_event_ids(pipeline: Pipeline, issue: int) -> list[str]:
    keys = pipeline.keys(f"snapshots/{30000 + issue}/")
    return sorted(k.rsplit("/", 1)[1].removesuffix(".json").split("-", 1)[1] for k in keys)


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
    # And, S3 back but the git remote gone, three captured changes end in the commits DLQ
    monkeypatch.setattr(Store, "put_snapshot", real_put)
    remote, hidden = settings.git_remote, tmp_path / "hidden.git"
    os.rename(remote, hidden)
    deliver(pipeline, 1, 3)  # newer than everything of issue 1 still in the DLQ
    deliver(pipeline, 4, 0)
    deliver(pipeline, 4, 1)
    poll_until_dead_lettered(pipeline, settings.events_queue, settings.commits_queue)
    assert pipeline.depth(settings.commits_dlq) == 3
    assert remote_commits(str(hidden), settings.git_branch) == []

    # When the faults are fixed and both DLQs are redriven: events in-process, the rest through the CLI
    os.rename(hidden, remote)
    capsys.readouterr()
    events = Pair(settings.events_dlq, settings.events_queue)
    assert redrive.redrive_by_copy(services.aws("sqs"), events, wait_seconds=0) == 9
    assert redrive.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "moved 9 from jsync-local-events-dlq.fifo to jsync-local-events.fifo",
        "jsync-local-events-dlq.fifo is empty; nothing to move",
        "moved 3 from jsync-local-commits-dlq.fifo to jsync-local-commits.fifo",
        "jsync-local-sync-dlq.fifo is empty; nothing to move",
        "done: 3 messages moved",
    ]
    pipeline.drain()

    # Then every event is one snapshot, latest/ and git hold the newest version, one commit per advancing event
    assert pipeline.depth(settings.events_dlq, settings.commits_dlq) == 0
    for issue, versions in {1: 4, 2: 3, 3: 3, 4: 2}.items():
        assert snapshot_event_ids(pipeline, issue) == [f"rd-{issue}-{v}" for v in range(versions)]
        newest = json.loads(make_event(issue, versions - 1)[1])["issue"]
        assert pipeline.latest(str(30000 + issue))["issue"] == issue_document(newest)
        assert json.loads(pipeline.git_file(f"issues/OPS/OPS-{200 + issue}.json") or b"{}") == issue_document(newest)
    committed = [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())]
    assert len(committed) == len(set(committed))
    # issue 1's older events came back after its newest one was committed: they add no commit
    expected = {1: ["rd-1-3"], 2: ["rd-2-0", "rd-2-1", "rd-2-2"], 3: ["rd-3-0", "rd-3-1", "rd-3-2"]}
    expected[4] = ["rd-4-0", "rd-4-1"]
    for issue, events_of_issue in expected.items():
        assert [e for e in committed if e.startswith(f"rd-{issue}-")] == events_of_issue


def _send_to_dlq(sqs: Any, url: str, group: str, body: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=f"orig-{body}")


def test_redrive_keeps_groups_and_order_within_a_group(settings: Settings) -> None:
    # Given 15 dead letters (more than one receive) in three interleaved groups
    sqs = services.aws("sqs")
    dlq_url = sqs.get_queue_url(QueueName=settings.events_dlq)["QueueUrl"]
    sent = [(f"3000{n % 3}", f"m{n:02d}") for n in range(15)]
    for group, body in sent:
        _send_to_dlq(sqs, dlq_url, group, body)
    # When they are redriven
    moved = redrive.redrive_by_copy(sqs, Pair(settings.events_dlq, settings.events_queue), wait_seconds=0)
    # Then the source queue holds each in its group, in order, under a fresh dedup id; the DLQ is empty
    assert moved == 15
    received = receive_all(sqs.get_queue_url(QueueName=settings.events_queue)["QueueUrl"], delete=True)
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
    sqs = services.aws("sqs")
    sync_url, dlq_url = redrive.queue_url(sqs, settings.sync_queue), redrive.queue_url(sqs, settings.sync_dlq)
    steps = [json.dumps({"job_id": "sync-a", "step": 0}), json.dumps({"job_id": "sync-b", "step": 0})]
    for body in steps:
        sqs.send_message(QueueUrl=sync_url, MessageBody=body, MessageGroupId="reconcile")

    def jira_down(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    failing = Poller("reconcile", sqs, sync_url, jira_down, retry_delay=0, timeout=660)
    for _ in range(30):
        failing.poll_once()
        if redrive.waiting(sqs, sync_url) == 0 and redrive.waiting(sqs, dlq_url) == 2:
            break
    assert redrive.waiting(sqs, dlq_url) == 2
    # When `make redrive` runs
    capsys.readouterr()
    assert redrive.main([]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "jsync-local-events-dlq.fifo is empty; nothing to move",
        "jsync-local-commits-dlq.fifo is empty; nothing to move",
        "moved 2 from jsync-local-sync-dlq.fifo to jsync-local-sync.fifo",
        "done: 2 messages moved",
    ]
    # Then both steps are back on the sync queue, in the one reconcile group, in their order
    received = receive_all(sync_url, delete=True)
    assert [(m["Body"], m["Attributes"]["MessageGroupId"]) for m in received] == [(b, "reconcile") for b in steps]
    assert redrive.waiting(sqs, dlq_url) == 0


def test_a_redrive_stopped_between_send_and_delete_loses_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = services.aws("sqs")
    dlq_url = sqs.get_queue_url(QueueName=settings.commits_dlq)["QueueUrl"]
    _send_to_dlq(sqs, dlq_url, "commits", "change-1")
    pair = Pair(settings.commits_dlq, settings.commits_queue)

    def crash(**kwargs: Any) -> None:
        raise ConnectionError("killed before the delete")

    # Given a redrive dies after sending its message but before deleting it from the DLQ
    monkeypatch.setattr(sqs, "delete_message", crash)
    with pytest.raises(ConnectionError):
        redrive.redrive_by_copy(sqs, pair, visibility_timeout=1, wait_seconds=0)
    monkeypatch.undo()
    time.sleep(1.1)
    # When it runs again, the message is moved once more: at worst a duplicate (this one has the same dedup id)
    assert redrive.redrive_by_copy(sqs, pair, wait_seconds=0) == 1
    commits_url = sqs.get_queue_url(QueueName=settings.commits_queue)["QueueUrl"]
    bodies = [m["Body"] for m in receive_all(commits_url, delete=True)]
    assert set(bodies) == {"change-1"} and 1 <= len(bodies) <= 2
    assert receive_all(dlq_url, delete=True) == []


def test_messages_failing_again_during_a_redrive_are_left_for_the_next_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    sqs = services.aws("sqs")
    dlq_url = sqs.get_queue_url(QueueName=settings.commits_dlq)["QueueUrl"]
    for n in range(3):
        _send_to_dlq(sqs, dlq_url, "commits", f"change-{n}")
    real_send = sqs.send_message

    def send_and_fail_again(**kwargs: Any) -> Any:
        # As if the running committer failed the copy five more times at once: it is back in the DLQ.
        answer = real_send(**kwargs)
        again = f"again-{answer['MessageId']}"
        real_send(QueueUrl=dlq_url, MessageBody=again, MessageGroupId="commits", MessageDeduplicationId=again)
        return answer

    monkeypatch.setattr(sqs, "send_message", send_and_fail_again)
    pair = Pair(settings.commits_dlq, settings.commits_queue)
    # When the redrive runs, it moves what the DLQ held at its start, and stops
    assert redrive.redrive_by_copy(sqs, pair, wait_seconds=0) == 3
    assert capsys.readouterr().out.splitlines() == [
        "moved 3 from jsync-local-commits-dlq.fifo to jsync-local-commits.fifo",
        "  jsync-local-commits-dlq.fifo: 3 more arrived while moving (failed again?); run the redrive again for them",
    ]


# --- AWS: message move tasks, against a stubbed client ----------------------------------------------------------
ACCOUNT = "arn:aws:sqs:us-east-1:123456789012"


@pytest.fixture
def aws_sqs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A plain SQS client that would talk to AWS, with no endpoint override: every call is stubbed."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")


def stub_queues(stubber: Stubber, pair: Pair, waiting: int) -> None:
    dlq_url, source_url = f"https://sqs.us-east-1.amazonaws.com/123456789012/{pair.dlq}", f"https://q/{pair.source}"
    stubber.add_response("get_queue_url", {"QueueUrl": dlq_url}, {"QueueName": pair.dlq})
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": f"{ACCOUNT}:{pair.dlq}", "ApproximateNumberOfMessages": str(waiting)}},
        {"QueueUrl": dlq_url, "AttributeNames": ["QueueArn", "ApproximateNumberOfMessages"]},
    )
    stubber.add_response("get_queue_url", {"QueueUrl": source_url}, {"QueueName": pair.source})
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": f"{ACCOUNT}:{pair.source}"}},
        {"QueueUrl": source_url, "AttributeNames": ["QueueArn"]},
    )


def stub_task(stubber: Stubber, pair: Pair, *states: dict[str, Any]) -> None:
    arns = {"SourceArn": f"{ACCOUNT}:{pair.dlq}", "DestinationArn": f"{ACCOUNT}:{pair.source}"}
    stubber.add_response("start_message_move_task", {"TaskHandle": f"handle-{pair.dlq}"}, arns)
    for state in states:
        result = {**arns, "StartedTimestamp": 1764000000000, **state}
        stubber.add_response(
            "list_message_move_tasks", {"Results": [result]}, {"SourceArn": arns["SourceArn"], "MaxResults": 1}
        )


EVENTS = Pair("jsync-prod-events-dlq.fifo", "jsync-prod-events.fifo")
COMMITS = Pair("jsync-prod-commits-dlq.fifo", "jsync-prod-commits.fifo")
SYNC = Pair("jsync-prod-sync-dlq.fifo", "jsync-prod-sync.fifo")


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
        moved = redrive.redrive_all(aws_sqs, [EVENTS, COMMITS, SYNC], use_task=True, poll_seconds=0)
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
    monkeypatch.setenv("JSYNC_STAGE", "unset-by-monkeypatch")
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
    monkeypatch.setenv("JSYNC_STAGE", "unset-by-monkeypatch")  # main sets it; monkeypatch restores it
    monkeypatch.setattr(services, "aws", functools.cache(lambda service: aws_sqs))
    with Stubber(aws_sqs) as stubber:
        stub_queues(stubber, EVENTS, waiting=4)
        stub_task(stubber, EVENTS, failed)
        stub_queues(stubber, COMMITS, waiting=2)  # a failure in one queue does not stop the other
        stub_task(stubber, COMMITS, done)
        stub_queues(stubber, SYNC, waiting=0)
        assert redrive.main(["--stage", "prod"]) == 1
        stubber.assert_no_pending_responses()
    out, err = capsys.readouterr()
    assert "moved 2 from jsync-prod-commits-dlq.fifo to jsync-prod-commits.fifo" in out
    assert err.strip() == (
        "redrive: move task from jsync-prod-events-dlq.fifo to jsync-prod-events.fifo failed after moving 1: "
        "AccessDenied: kms:Decrypt"
    )


def test_without_move_tasks_the_redrive_copies_message_by_message(aws_sqs: Any, capsys: Any) -> None:
    dlq_url, source_url = "https://q/dlq", "https://q/source"
    with Stubber(aws_sqs) as stubber:
        stub_queues(stubber, EVENTS, waiting=1)
        stubber.add_client_error("start_message_move_task", "UnsupportedOperation", http_status_code=400)
        stubber.add_response("get_queue_url", {"QueueUrl": dlq_url}, {"QueueName": EVENTS.dlq})
        stubber.add_response("get_queue_url", {"QueueUrl": source_url}, {"QueueName": EVENTS.source})
        stubber.add_response(
            "get_queue_attributes",
            {"Attributes": {"ApproximateNumberOfMessages": "1"}},
            {"QueueUrl": dlq_url, "AttributeNames": ["ApproximateNumberOfMessages"]},
        )
        message = {
            "MessageId": "m-1",
            "ReceiptHandle": "rh-1",
            "Body": "{}",
            "Attributes": {"MessageGroupId": "10042", "MessageDeduplicationId": "wh-1"},
        }
        stubber.add_response("receive_message", {"Messages": [message]})
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
        stubber.add_response(
            "get_queue_attributes",
            {"Attributes": {"ApproximateNumberOfMessages": "0"}},
            {"QueueUrl": dlq_url, "AttributeNames": ["ApproximateNumberOfMessages"]},
        )
        assert redrive.redrive(aws_sqs, EVENTS, use_task=True) == 1
        stubber.assert_no_pending_responses()
    assert capsys.readouterr().out.splitlines() == [
        "  jsync-prod-events-dlq.fifo: this endpoint has no message move tasks; copying message by message",
        "moved 1 from jsync-prod-events-dlq.fifo to jsync-prod-events.fifo",
    ]


# --- the command line, locally -----------------------------------------------------------------------------------
def test_cli_without_a_local_stack_exits_2_saying_how_to_start_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "JSYNC_STAGE")}
    env["JSYNC_HOME"] = str(tmp_path / "empty")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.redrive"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"redrive: no local stack is running under {tmp_path / 'empty'}; "
        "start it with `make run`, or pass STAGE=name for AWS"
    )


def _dlq_depth(stack: LocalStack) -> int:
    sqs = services.aws("sqs")
    return redrive.waiting(sqs, sqs.get_queue_url(QueueName=stack.settings.events_dlq)["QueueUrl"])


def test_cli_redrives_the_running_local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in stack_env(tmp_path / "home").items():
        monkeypatch.setenv(k, v)
    for name in ("JSYNC_GIT_REMOTE", "AWS_ENDPOINT_URL", "JSYNC_STAGE"):
        monkeypatch.delenv(name, raising=False)
    stack = LocalStack(retry_delay=0)
    stack.start()
    endpoint = stack.settings.home / "endpoint"
    try:
        assert endpoint.read_text().strip() == os.environ["AWS_ENDPOINT_URL"]
        # Given an event dead-lettered while S3 was failing
        real_put = Store.put_snapshot
        monkeypatch.setattr(Store, "put_snapshot", s3_down)
        identifier, body = make_event(7, 0)
        headers = {"content-type": "application/json", "x-atlassian-webhook-identifier": identifier}
        assert httpx.post(stack.urls.webhook, content=body, headers=headers, timeout=10).status_code == 202
        deadline = time.monotonic() + 30
        while _dlq_depth(stack) == 0:
            assert time.monotonic() < deadline, "the event never reached the DLQ"
            time.sleep(0.1)
        monkeypatch.setattr(Store, "put_snapshot", real_put)
        # When `make redrive` runs in another process, finding the stack by $JSYNC_HOME alone
        env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "JSYNC_STAGE")}
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.redrive"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        # Then it moves the event back, and the stack captures and commits it
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "moved 1 from jsync-local-events-dlq.fifo to jsync-local-events.fifo",
            "jsync-local-commits-dlq.fifo is empty; nothing to move",
            "jsync-local-sync-dlq.fifo is empty; nothing to move",
            "done: 1 messages moved",
        ]
        stack.wait_idle()
        assert [c.trailers["Jira-Event-Id"] for c in remote_commits(stack.settings.git_remote, "main")] == [identifier]
    finally:
        stack.stop()
        services.reset()
    assert not endpoint.exists()


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
