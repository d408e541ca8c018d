"""The committer Lambda (functions/committer.py): exact partial-batch answers, one push per batch, nothing lost.

Changes come from the real commits queue after the real writer ran on delivered fixtures; the remote is the
per-test bare git repository; the DLQ test goes through the moto FIFO queues and their redrive policy.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from functions import committer
from local.poller import LocalContext
from local.resources import MAX_RECEIVE_COUNT
from local.stack import free_port
from pipeline import services
from pipeline.backends.aws import received
from pipeline.gitstore import GitStore
from pipeline.messages import Change
from pipeline.settings import Settings
from pipeline.store import Store
from tests.harness import Pipeline, fixture_bytes, receive_all, remote_commits

TOKEN = "ghp_JSYNC-SECRET-TOKEN-7f3a9c1e5b"


# --- helpers -------------------------------------------------------------------------------------


def _url(name: str) -> str:
    return str(services.aws("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def _arn(name: str) -> str:
    attrs = services.aws("sqs").get_queue_attributes(QueueUrl=_url(name), AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


def run_writer(pipeline: Pipeline) -> None:
    """Capture everything on the events queue (the writer sends the changes to the commits queue)."""
    for _ in range(20):
        if pipeline.writer.poll_once() == 0 and pipeline.depth(pipeline.settings.events_queue) == 0:
            return
    raise AssertionError("events queue did not drain")


def raw_record(body: str, settings: Settings) -> dict[str, Any]:
    """A hand-built record on the commits queue with an arbitrary body."""
    message_id = str(uuid.uuid4())
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1764000000000",
            "SenderId": "AROAEXAMPLE:jsync-writer",
            "ApproximateFirstReceiveTimestamp": "1764000000000",
            "SequenceNumber": "18849496460467696128",
            "MessageGroupId": "commits",
            "MessageDeduplicationId": hashlib.sha256(body.encode()).hexdigest(),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{settings.region}:123456789012:{settings.commits_queue}",
        "awsRegion": settings.region,
    }


def change_records(pipeline: Pipeline, deliveries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Deliver fixtures through ingest, run the writer, and take the changes off the real commits queue."""
    for name, identifier in deliveries:
        assert pipeline.deliver(fixture_bytes(name), identifier=identifier)["statusCode"] == 202
    run_writer(pipeline)
    queue = pipeline.settings.commits_queue
    # The test now holds them as records: delete them so the in-flight group does not hold back later receives.
    messages = receive_all(_url(queue), delete=True)
    assert len(messages) == len(deliveries), "every delivery should advance its issue"
    arn = _arn(queue)
    return [received(m).lambda_record(arn) for m in messages]


def event_ids(records: list[dict[str, Any]]) -> list[str]:
    return [Change.from_json(r["body"]).event_id for r in records]


def invoke(records: list[dict[str, Any]]) -> dict[str, Any]:
    return committer.lambda_handler({"Records": records}, LocalContext("jsync-committer", str(uuid.uuid4())))


def failures(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}


def committed(pipeline: Pipeline) -> list[str]:
    """Event ids of the commits on the remote branch, oldest first."""
    return [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())]


def assert_linear(pipeline: Pipeline) -> None:
    commits = pipeline.commits()
    for newer, older in zip(commits, commits[1:], strict=False):
        assert newer.parents == [older.sha]
    if commits:
        assert commits[-1].parents == []


def count_pushes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on GitStore.push; each entry is one push call."""
    calls: list[int] = []
    real_push = GitStore.push

    def spy(self: GitStore) -> None:
        calls.append(1)
        real_push(self)

    monkeypatch.setattr(GitStore, "push", spy)
    return calls


# --- tests ---------------------------------------------------------------------------------------


def test_batch_from_commits_queue_makes_one_commit_per_change_in_one_push(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the remote already holds OPS-17's creation
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="b-0")
    pipeline.drain()
    before = pipeline.commits()
    assert [c.trailers["Jira-Event-Id"] for c in before] == ["b-0"]
    # and three more changes (two issues) wait on the commits queue
    records = change_records(
        pipeline,
        [("issue_updated.json", "b-1"), ("issue_created_adf.json", "b-2"), ("issue_updated_assignee.json", "b-3")],
    )
    assert sorted(event_ids(records)) == ["b-1", "b-2", "b-3"]
    pushes = count_pushes(monkeypatch)

    # When the committer handles the batch
    response = invoke(records)

    # Then nothing failed, one push carried one commit per change, in batch order, on top of the old tip
    assert response == {"batchItemFailures": []}
    assert len(pushes) == 1
    after = pipeline.commits()
    assert len(after) == len(before) + 3
    assert after[3].sha == before[0].sha
    assert committed(pipeline) == ["b-0", *event_ids(records)]
    assert_linear(pipeline)
    assert pipeline.git_file("issues/OPS/OPS-18.json") is not None
    assert b"OPS-17" in (pipeline.git_file("issues/OPS/OPS-17.json") or b"")

    # When the same batch is delivered again (at-least-once)
    assert invoke(records) == {"batchItemFailures": []}
    # Then git is unchanged
    assert [c.sha for c in pipeline.commits()] == [c.sha for c in after]


def test_unreadable_record_fails_with_everything_after_it(pipeline: Pipeline) -> None:
    # Given four changes with an unreadable record in the middle
    records = change_records(
        pipeline,
        [
            ("issue_created.json", "u-0"),
            ("issue_updated.json", "u-1"),
            ("issue_created_adf.json", "u-2"),
            ("issue_updated_assignee.json", "u-3"),
        ],
    )
    assert len(records) == 4
    bad = raw_record("not json", pipeline.settings)
    batch = [records[0], records[1], bad, records[2], records[3]]

    # When the committer handles it
    response = invoke(batch)

    # Then the bad record and every record after it are reported, and the ones before it are committed
    assert response == failures([bad, records[2], records[3]])
    assert committed(pipeline) == event_ids(records[:2])

    # When Lambda retries the rest (the bad one aside)
    assert invoke([records[2], records[3]]) == {"batchItemFailures": []}
    # Then every change is in git exactly once
    assert committed(pipeline) == event_ids(records)
    assert_linear(pipeline)


@pytest.mark.parametrize(
    "body",
    ['{"issue_id": "10042"}', "[1, 2]", "null", ""],
    ids=["missing-fields", "json-list", "json-null", "empty"],
)
def test_record_that_is_not_a_change_stops_the_batch_there(pipeline: Pipeline, body: str) -> None:
    records = change_records(pipeline, [("issue_created.json", "n-0"), ("issue_updated.json", "n-1")])
    bad = raw_record(body, pipeline.settings)
    assert invoke([records[0], bad, records[1]]) == failures([bad, records[1]])
    assert committed(pipeline) == event_ids(records[:1])


def test_change_whose_document_cannot_be_read_fails_with_everything_after_it(pipeline: Pipeline) -> None:
    # Given a readable change whose document is not inline (too big) and whose snapshot is gone from S3,
    # between good changes: the committer cannot make its commit, but it can make the ones before it
    records = change_records(
        pipeline,
        [("issue_created.json", "p-0"), ("issue_created_adf.json", "p-1"), ("issue_updated.json", "p-2")],
    )
    missing = Change(
        issue_id="10077",
        key="OPS-19",
        previous_key=None,
        event_id="p-missing",
        event_name="jira:issue_created",
        order=[1764000060000, 0, "p-missing"],
        actor=None,
        subject="created",
        changes=[],
        deleted=False,
        snapshot_key="snapshots/10077/1764000060000-p-missing.json",
        document=None,
    )
    poison = raw_record(missing.to_json(), pipeline.settings)
    batch = [records[0], records[1], poison, records[2]]

    # When the committer handles it
    response = invoke(batch)

    # Then, as for any FIFO batch, the failing record and those after it come back, and those before it are
    # committed: failing the whole batch would walk good changes into the DLQ with the poison one
    assert response == failures([poison, records[2]])
    assert committed(pipeline) == event_ids(records[:2])


def test_unreachable_remote_fails_every_record_and_loses_nothing(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = pipeline.settings
    records = change_records(
        pipeline,
        [("issue_created.json", "x-0"), ("issue_created_adf.json", "x-1"), ("issue_updated.json", "x-2")],
    )
    assert len(records) == 3

    # Given the remote is a path that does not exist
    monkeypatch.setenv("JSYNC_GIT_REMOTE", str(tmp_path / "nowhere" / "remote.git"))
    services.reset()

    # When the committer handles the batch
    response = invoke(records)

    # Then every record is reported failed and nothing reached the real remote
    assert response == failures(records)
    assert pipeline.commits() == []

    # When the remote is back and Lambda redelivers the batch (twice, as at-least-once allows)
    monkeypatch.setenv("JSYNC_GIT_REMOTE", settings.git_remote)
    services.reset()
    assert invoke(records) == {"batchItemFailures": []}
    assert invoke(records) == {"batchItemFailures": []}

    # Then each change was committed exactly once
    assert committed(pipeline) == event_ids(records)
    assert_linear(pipeline)


def test_remote_vanishing_after_a_good_batch_fails_the_next_batch_whole(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a warm committer that already pushed once
    first = change_records(pipeline, [("issue_created.json", "v-0")])
    assert invoke(first) == {"batchItemFailures": []}
    remote = Path(pipeline.settings.git_remote)
    away = remote.with_name("remote-away.git")
    # and the remote directory then disappears
    second = change_records(pipeline, [("issue_updated.json", "v-1"), ("issue_updated_assignee.json", "v-2")])
    remote.rename(away)
    try:
        # When / Then the push fails and every record of the batch comes back
        assert invoke(second) == failures(second)
    finally:
        away.rename(remote)
    assert committed(pipeline) == ["v-0"]
    # and the retry after the remote came back commits each change once
    assert invoke(second) == {"batchItemFailures": []}
    assert committed(pipeline) == ["v-0", "v-1", "v-2"]
    assert_linear(pipeline)


@pytest.mark.parametrize("where", ["JSYNC_GIT_TOKEN", "in-remote-url"])
def test_git_token_never_appears_in_logs_or_output(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], where: str
) -> None:
    records = change_records(pipeline, [("issue_created.json", "t-0"), ("issue_updated.json", "t-1")])

    # Given an HTTP remote on a closed port, with a token (in its own variable, or in the URL as people also write it)
    port = free_port()
    if where == "JSYNC_GIT_TOKEN":
        monkeypatch.setenv("JSYNC_GIT_TOKEN", TOKEN)
        monkeypatch.setenv("JSYNC_GIT_REMOTE", f"http://127.0.0.1:{port}/org/repo.git")
    else:
        monkeypatch.setenv("JSYNC_GIT_REMOTE", f"http://x-access-token:{TOKEN}@127.0.0.1:{port}/org/repo.git")
    services.reset()
    # Capture the Powertools logger's own stream, and every other logger at DEBUG through the root
    powertools_out = io.StringIO()
    monkeypatch.setattr(committer.logger.registered_handler, "stream", powertools_out)
    everything = io.StringIO()
    root_handler = logging.StreamHandler(everything)
    root_handler.setLevel(logging.DEBUG)
    root_handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(root_handler)
    root.setLevel(logging.DEBUG)
    try:
        # When the committer cannot reach the remote
        response = invoke(records)
    finally:
        root.removeHandler(root_handler)
        root.setLevel(old_level)

    # Then the batch is retried whole, the failure is logged with its cause, and the token is nowhere
    assert response == failures(records)
    out, err = capfd.readouterr()
    logged = powertools_out.getvalue()
    assert "will be retried" in logged
    assert "RemoteUnavailable" in logged
    for text in (logged, everything.getvalue(), out, err, repr(response)):
        assert TOKEN not in text
        assert TOKEN[-10:] not in text


def test_message_reaches_the_dlq_after_five_receives_and_redrive_commits_it_once(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    sqs = services.aws("sqs")
    # Given one change on the commits queue
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="dlq-0")
    run_writer(pipeline)
    assert pipeline.depth(settings.commits_queue) == 1
    # and a remote that has gone away
    remote = Path(settings.git_remote)
    away = remote.with_name("remote-away.git")
    remote.rename(away)

    # When the committer fails it on every receive
    invocations = 0
    for _ in range(10):
        if pipeline.depth(settings.commits_queue) == 0:
            break
        invocations += pipeline.committer.poll_once()

    # Then after maxReceiveCount (5) failed invocations it left the commits queue for the commits DLQ
    assert invocations == MAX_RECEIVE_COUNT == 5
    assert pipeline.depth(settings.commits_queue) == 0
    dead = receive_all(_url(settings.commits_dlq), visibility=60)  # hidden until the test redrives it
    assert len(dead) == 1
    assert dead[0]["Attributes"]["MessageGroupId"] == "commits"
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= MAX_RECEIVE_COUNT
    assert Change.from_json(dead[0]["Body"]).event_id == "dlq-0"
    assert remote_commits(str(away), settings.git_branch) == []

    # When the remote is back and the message is redriven by hand: receive, send (same group), delete
    away.rename(remote)
    sqs.send_message(
        QueueUrl=_url(settings.commits_queue),
        MessageBody=dead[0]["Body"],
        MessageGroupId=dead[0]["Attributes"]["MessageGroupId"],
        # AWS replaces the dedup id by the message id on the move to the DLQ; the original id may still be
        # inside its 5-minute window on the source queue, so resending with it could be silently dropped.
        MessageDeduplicationId=dead[0]["MessageId"],
    )
    sqs.delete_message(QueueUrl=_url(settings.commits_dlq), ReceiptHandle=dead[0]["ReceiptHandle"])
    pipeline.drain()

    # Then it is committed exactly once and both queues are empty
    assert committed(pipeline) == ["dlq-0"]
    assert pipeline.depth(settings.commits_queue, settings.commits_dlq) == 0


# --- the push record health reads instead of the remote (issue 11) -------------------------------------------


def _push_record() -> dict[str, Any] | None:
    found = services.store().read_json("gitstate/_push.json")
    return found.data if found else None


def test_each_batch_that_reaches_the_remote_records_its_push_in_one_write(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = change_records(pipeline, [("issue_created.json", "p-0"), ("issue_updated.json", "p-1")])
    writes: list[str] = []
    real_put = Store.put_json
    monkeypatch.setattr(Store, "put_json", lambda self, key, data: (writes.append(key), real_put(self, key, data))[1])
    # When the committer pushes a batch
    assert invoke(records) == {"batchItemFailures": []}
    # Then one small record says when and which tip, and nothing failed
    record = _push_record()
    assert record is not None and record["ok"] is True and record["last_error"] is None
    assert record["last_push"]["tip"] == pipeline.commits()[0].sha
    assert writes.count("gitstate/_push.json") == 1
    # When a warm committer gets only replays, it never talks to the remote, and writes nothing about it
    assert invoke(records) == {"batchItemFailures": []}
    assert writes.count("gitstate/_push.json") == 1


def test_a_failed_push_is_recorded_with_its_cause_and_since_when(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = change_records(pipeline, [("issue_created.json", "f-0")])
    assert invoke(first) == {"batchItemFailures": []}
    pushed = _push_record()
    second = change_records(pipeline, [("issue_updated.json", "f-1")])
    monkeypatch.setenv("JSYNC_GIT_REMOTE", str(tmp_path / "nowhere.git"))
    services.reset()
    # When two attempts fail
    assert invoke(second) == failures(second)
    failed_once = _push_record()
    assert invoke(second) == failures(second)
    record = _push_record()
    # Then the record says so, from when, and still shows the last good push
    assert pushed is not None and failed_once is not None and record is not None
    assert record["ok"] is False and record["last_push"] == pushed["last_push"]
    assert record["last_error"]["error"].startswith("RemoteUnavailable: ")
    assert record["last_error"]["since"] == failed_once["last_error"]["at"]
