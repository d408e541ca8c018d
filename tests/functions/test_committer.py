"""The committer Lambda (functions/committer.py): woken by a bell, it drains the commits queue in large batches,
one push each, and loses nothing whatever fails.

Changes come from the real commits queue after the real writer ran on delivered fixtures, on both backends (SQS on
a moto server, and the embedded SQLite queues); the remote is the per-test bare git repository.
"""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions import committer
from local.poller import LocalContext
from local.resources import MAX_RECEIVE_COUNT
from local.stack import free_port
from pipeline import services
from pipeline.backends import Outgoing
from pipeline.git.store import GitStore
from pipeline.messages import Change
from pipeline.queues import change_dedup_id
from tests.builders import change_of, fixture_bytes, issue_document
from tests.environments import fresh_environment
from tests.harness import Pipeline

TOKEN = "ghp_JSYNC-SECRET-TOKEN-7f3a9c1e5b"


# --- helpers -------------------------------------------------------------------------------------


def run_writer(pipeline: Pipeline) -> None:
    """Capture everything on the events queue (the writer sends the changes to the commits queue)."""
    for _ in range(20):
        if pipeline.writer.poll_once() == 0 and pipeline.depth(pipeline.settings.events_queue) == 0:
            return
    raise AssertionError("events queue did not drain")


def queue_changes(pipeline: Pipeline, deliveries: list[tuple[str, str]]) -> None:
    """Deliver fixtures through ingest and run the writer: their changes wait on the real commits queue."""
    for name, identifier in deliveries:
        assert pipeline.deliver(fixture_bytes(name), identifier=identifier)["statusCode"] == 202
    run_writer(pipeline)


def send_raw(pipeline: Pipeline, body: str, group: str) -> None:
    services.queue_bus().send(pipeline.settings.commits_queue, [Outgoing(body, group, uuid.uuid4().hex)])


def send_change(pipeline: Pipeline, change: Change) -> None:
    bus = services.queue_bus()
    bus.send(pipeline.settings.commits_queue, [Outgoing(change.to_json(), change.issue_id, change_dedup_id(change))])


def invoke() -> dict[str, Any]:
    """What the bell's event source does: the committer with a batch of one bell."""
    bell = {"messageId": str(uuid.uuid4()), "body": '{"ring":true}', "attributes": {"MessageGroupId": "committer"}}
    return committer.lambda_handler({"Records": [bell]}, LocalContext("jsync-committer", str(uuid.uuid4())))


def waiting(pipeline: Pipeline) -> int:
    return pipeline.depth(pipeline.settings.commits_queue)


def committed(pipeline: Pipeline) -> list[str]:
    """Event ids of the commits on the remote branch, oldest first."""
    return [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())]


def assert_linear(pipeline: Pipeline) -> None:
    commits = pipeline.commits()
    for newer, older in zip(commits, commits[1:], strict=False):
        assert newer.parents == [older.sha]
    if commits:
        assert commits[-1].parents == []


def assert_in_issue_order(pipeline: Pipeline, changes: list[Change]) -> None:
    done = committed(pipeline)
    for issue in {c.issue_id for c in changes}:
        mine = [c.event_id for c in changes if c.issue_id == issue]
        assert [e for e in done if e in mine] == mine


def count_pushes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on GitStore.push; each entry is one push call."""
    calls: list[int] = []
    real_push = GitStore.push

    def spy(self: GitStore) -> None:
        calls.append(1)
        real_push(self)

    monkeypatch.setattr(GitStore, "push", spy)
    return calls


def expire_in_flight(pipeline: Pipeline) -> None:
    """What a visibility timeout does after a committer died: everything it held is visible again."""
    bus, queue = services.queue_bus(), pipeline.settings.commits_queue
    for receipt in held_receipts:
        with contextlib.suppress(Exception):  # deleted meanwhile (a spent receipt is an error)
            bus.change_visibility(queue, receipt, 0)
    held_receipts.clear()


held_receipts: list[str] = []


def remember_receipts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the receipt of everything the committer receives, so a test can play its visibility timeout."""
    bus = services.queue_bus()
    real_receive = type(bus).receive

    def receive(self: Any, queue: str, max_messages: int = 10, visibility_timeout: int | None = None) -> Any:
        got = real_receive(self, queue, max_messages, visibility_timeout)
        held_receipts.extend(m.receipt for m in got)
        return got

    monkeypatch.setattr(type(bus), "receive", receive)
    held_receipts.clear()


@pytest.fixture
def stack_pipeline(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """The pipeline on the embedded backend only."""
    yield Pipeline(fresh_environment(moto_endpoint, tmp_path, monkeypatch, "embedded"))
    services.reset()


# --- a drain ---------------------------------------------------------------------------------------


def test_every_ready_change_goes_in_one_push_across_issues(
    any_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = any_pipeline
    # Given OPS-17's creation already on the remote
    queue_changes(pipeline, [("issue_created.json", "b-0")])
    assert invoke() == {"batchItemFailures": []}
    before = pipeline.commits()
    assert committed(pipeline) == ["b-0"]
    # and 24 more changes of several issues waiting: more than Lambda's ten a batch
    queue_changes(pipeline, [("issue_updated.json", "b-1"), ("issue_created_adf.json", "b-2")])
    more = [change_of(str(11000 + n), f"b-{n}", n) for n in range(3, 25)]
    for change in more:
        send_change(pipeline, change)
    assert waiting(pipeline) == 24
    pushes = count_pushes(monkeypatch)

    # When the bell rings once
    assert invoke() == {"batchItemFailures": []}

    # Then one push carried one commit per change, on top of the old tip, and the queue is empty
    assert len(pushes) == 1
    after = pipeline.commits()
    assert len(after) == 25
    assert after[-1].sha == before[0].sha
    assert sorted(committed(pipeline)) == sorted(["b-0", "b-1", "b-2", *(c.event_id for c in more)])
    assert committed(pipeline).index("b-0") < committed(pipeline).index("b-1")  # OPS-17's changes in order
    assert waiting(pipeline) == 0
    assert_linear(pipeline)

    # When the same changes come again (at-least-once) and the bell rings
    for change in more[:5]:
        send_change(pipeline, change)
    assert invoke() == {"batchItemFailures": []}
    # Then git is unchanged
    assert [c.sha for c in pipeline.commits()] == [c.sha for c in after]


def test_a_bound_splits_a_drain_into_several_pushes(any_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = any_pipeline
    monkeypatch.setenv("JSYNC_COMMIT_BATCH_CHANGES", "3")
    services.reset()
    changes = [change_of(str(20000 + n), f"s-{n}", n) for n in range(7)]
    for change in changes:
        send_change(pipeline, change)
    pushes = count_pushes(monkeypatch)
    assert invoke() == {"batchItemFailures": []}
    assert len(pushes) == 3  # 3 + 3 + 1
    assert sorted(committed(pipeline)) == sorted(c.event_id for c in changes)
    assert waiting(pipeline) == 0


def test_many_changes_of_one_issue_keep_their_order(any_pipeline: Pipeline) -> None:
    pipeline = any_pipeline
    changes = [change_of("21000", f"o-{n}", n) for n in range(23)]
    for change in changes:
        send_change(pipeline, change)
    assert invoke() == {"batchItemFailures": []}
    assert committed(pipeline) == [c.event_id for c in changes]
    assert waiting(pipeline) == 0


@pytest.mark.parametrize("body", ["not json", '{"issue_id": "10042"}', "[1, 2]", "null"])
def test_an_unreadable_message_holds_back_its_issue_only(any_pipeline: Pipeline, body: str) -> None:
    pipeline = any_pipeline
    # Given a message no committer can read, in the group of issue 30000, before that issue's good change
    send_raw(pipeline, body, "30000")
    send_change(pipeline, change_of("30000", "h-1", 1))
    send_change(pipeline, change_of("30001", "h-2", 2))

    # When the bell rings
    assert invoke() == {"batchItemFailures": []}

    # Then the other issue is committed; the bad one and its issue's later change wait on the queue
    assert committed(pipeline) == ["h-2"]
    assert waiting(pipeline) == 2


def test_a_change_whose_document_is_gone_holds_back_its_issue_only(any_pipeline: Pipeline) -> None:
    pipeline = any_pipeline
    queue_changes(pipeline, [("issue_created.json", "p-0")])
    poison = change_of("10077", "p-missing", 5, document=None)  # by reference, and the snapshot does not exist
    send_change(pipeline, poison)
    send_change(pipeline, change_of("10078", "p-2", 6))
    assert invoke() == {"batchItemFailures": []}
    assert sorted(committed(pipeline)) == ["p-0", "p-2"]
    assert waiting(pipeline) == 1


def test_a_message_that_always_fails_reaches_the_dlq_and_redrive_commits_it_once(
    any_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = any_pipeline
    settings = pipeline.settings
    remember_receipts(monkeypatch)
    # Given a change whose document cannot be read yet
    change = change_of("10090", "d-0", 7, document=None)
    send_change(pipeline, change)

    # When five drains fail it (each time its visibility timeout passes)
    for _ in range(MAX_RECEIVE_COUNT):
        assert invoke() == {"batchItemFailures": []}
        expire_in_flight(pipeline)
    invoke()  # the sixth receive moves it

    # Then it left the commits queue for its dead-letter queue, nothing committed
    assert waiting(pipeline) == 0
    assert pipeline.depth(settings.commits_dlq) == 1
    assert committed(pipeline) == []

    # When its snapshot exists again and `make redrive` runs
    services.store().put_json(change.snapshot_key, {"issue": issue_document(change.issue_id, change.key or "")})
    from pipeline.redrive import pairs, redrive_all

    moved = redrive_all(services.queue_bus(), [p for p in pairs(settings) if p.source == settings.commits_queue])
    assert sum(moved.values()) == 1
    pipeline.drain()

    # Then it is committed exactly once and both queues are empty
    assert committed(pipeline) == ["d-0"]
    assert pipeline.depth(settings.commits_queue, settings.commits_dlq) == 0


# --- the failure cases the README names --------------------------------------------------------------


def test_crash_after_push_before_delete_commits_nothing_twice(
    any_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = any_pipeline
    remember_receipts(monkeypatch)
    changes = [change_of(str(40000 + n % 4), f"c-{n}", n) for n in range(12)]
    for change in changes:
        send_change(pipeline, change)
    # Given a committer that dies after its push took, before it deleted what it pushed
    bus = services.queue_bus()
    real_delete = type(bus).delete

    def dies(self: Any, queue: str, receipts: list[str]) -> None:
        raise SystemExit("killed after the push")

    monkeypatch.setattr(type(bus), "delete", dies)
    with pytest.raises(SystemExit):
        invoke()
    pushed = [c.sha for c in pipeline.commits()]
    assert pushed, "the first batch reached the remote before the crash"

    # When a new committer (cold: no memory of the push) starts after the visibility timeout
    monkeypatch.setattr(type(bus), "delete", real_delete)
    services.reset()
    expire_in_flight(pipeline)
    pipeline.drain()

    # Then every change is in git once, each issue's in order, on top of what the crashed committer pushed
    assert sorted(committed(pipeline)) == sorted(c.event_id for c in changes)
    assert_in_issue_order(pipeline, changes)
    assert [c.sha for c in pipeline.commits()][-len(pushed) :] == pushed
    assert waiting(pipeline) == 0


def test_crash_mid_receive_loses_nothing(any_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = any_pipeline
    remember_receipts(monkeypatch)
    changes = [change_of(str(50000 + n % 22), f"r-{n}", n) for n in range(30)]
    for change in changes:
        send_change(pipeline, change)
    # Given a committer that dies on its third receive, with two batches of ten in hand
    bus = services.queue_bus()
    real_receive = type(bus).receive
    calls: list[int] = []

    def dies(self: Any, queue: str, max_messages: int = 10, visibility_timeout: int | None = None) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise SystemExit("killed mid-receive")
        return real_receive(self, queue, max_messages, visibility_timeout)

    monkeypatch.setattr(type(bus), "receive", dies)
    with pytest.raises(SystemExit):
        invoke()
    assert committed(pipeline) == []

    # When the next committer runs after the visibility timeout
    monkeypatch.setattr(type(bus), "receive", real_receive)  # still remembering receipts
    services.reset()
    expire_in_flight(pipeline)
    pipeline.drain()

    # Then every change is committed once, each issue's in its order
    assert sorted(committed(pipeline)) == sorted(c.event_id for c in changes)
    assert_in_issue_order(pipeline, changes)
    assert_linear(pipeline)


def test_a_second_committer_running_at_once_commits_nothing_twice(stack_pipeline: Pipeline, tmp_path: Path) -> None:
    """Two committers drain one queue at once: pushes race, the loser replays on the new tip.

    On the embedded backend only: it rests on no second receiver getting a group while a message of it is in
    flight, which SQS guarantees and moto does not under concurrent receives (its receive checks the held groups,
    then marks, with no lock between: moto 5.2.5 `sqs/models.py` `receive_message`)."""
    import threading

    from pipeline.git.commits import GitRecords, commit_batch
    from pipeline.git.drain import Bounds, drain

    pipeline = stack_pipeline
    changes = [change_of(str(60000 + n % 6), f"t-{n}", n) for n in range(60)]
    for change in changes:
        send_change(pipeline, change)
    settings = pipeline.settings
    bus, store = services.queue_bus(), services.store()
    errors: list[BaseException] = []

    def run_committer(name: str) -> None:
        # Its own git cache and records, as a second Lambda instance would have.
        git = GitStore(settings.git_remote, settings.git_branch, tmp_path / name, None)
        records = GitRecords(store)
        try:
            git.fetch()
            drain(
                bus,
                settings.commits_queue,
                lambda batch: commit_batch(batch, git, records, lambda c: c.document),
                Bounds(max_changes=7, max_seconds=1.0),
                lambda: 60.0,
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run_committer, args=(f"c{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert waiting(pipeline) == 0
    assert sorted(committed(pipeline)) == sorted(c.event_id for c in changes)
    assert_in_issue_order(pipeline, changes)
    assert_linear(pipeline)


# --- the remote ---------------------------------------------------------------------------------------


def test_an_unreachable_remote_leaves_every_change_queued_and_unreceived(
    any_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pipeline = any_pipeline
    queue_changes(pipeline, [("issue_created.json", "x-0"), ("issue_created_adf.json", "x-1")])
    monkeypatch.setenv("JSYNC_GIT_REMOTE", str(tmp_path / "nowhere" / "remote.git"))
    services.reset()

    # When the bell rings ten times while the remote is away
    for _ in range(10):
        assert invoke() == {"batchItemFailures": []}

    # Then nothing was received (no receive counts spent: no dead-letter queue however long the outage)
    assert waiting(pipeline) == 2
    assert pipeline.depth(pipeline.settings.commits_dlq) == 0
    # and when it is back, each change is committed once
    monkeypatch.setenv("JSYNC_GIT_REMOTE", pipeline.settings.git_remote)
    services.reset()
    assert invoke() == {"batchItemFailures": []}
    assert sorted(committed(pipeline)) == ["x-0", "x-1"]


def test_a_remote_vanishing_mid_drain_loses_nothing(any_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = any_pipeline
    remember_receipts(monkeypatch)
    queue_changes(pipeline, [("issue_created.json", "v-0")])
    assert invoke() == {"batchItemFailures": []}
    queue_changes(pipeline, [("issue_updated.json", "v-1"), ("issue_updated_assignee.json", "v-2")])
    # Given the remote disappears after the committer checked it
    remote = Path(pipeline.settings.git_remote)
    away = remote.with_name("remote-away.git")
    real_fetch = GitStore.fetch

    def fetch_then_vanish(self: GitStore) -> bytes | None:
        tip = real_fetch(self)
        remote.rename(away)
        return tip

    monkeypatch.setattr(GitStore, "fetch", fetch_then_vanish)
    try:
        assert invoke() == {"batchItemFailures": []}
    finally:
        away.rename(remote)
        monkeypatch.setattr(GitStore, "fetch", real_fetch)
    assert committed(pipeline) == ["v-0"]
    # When the changes come back and the bell rings
    services.reset()
    expire_in_flight(pipeline)
    assert invoke() == {"batchItemFailures": []}
    assert committed(pipeline) == ["v-0", "v-1", "v-2"]
    assert_linear(pipeline)


@pytest.mark.parametrize("where", ["JSYNC_GIT_TOKEN", "in-remote-url"])
def test_git_token_never_appears_in_logs_or_output(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], where: str
) -> None:
    queue_changes(pipeline, [("issue_created.json", "t-0"), ("issue_updated.json", "t-1")])

    # Given an HTTP remote on a closed port, with a token (in its own variable, or in the URL as people also write it)
    port = free_port()
    if where == "JSYNC_GIT_TOKEN":
        monkeypatch.setenv("JSYNC_GIT_TOKEN", TOKEN)
        monkeypatch.setenv("JSYNC_GIT_REMOTE", f"http://127.0.0.1:{port}/org/repo.git")
    else:
        monkeypatch.setenv("JSYNC_GIT_REMOTE", f"http://x-access-token:{TOKEN}@127.0.0.1:{port}/org/repo.git")
    services.reset()
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
        response = invoke()
    finally:
        root.removeHandler(root_handler)
        root.setLevel(old_level)

    # Then the changes wait, the failure is logged with its cause, and the token is nowhere
    assert waiting(pipeline) == 2
    out, err = capfd.readouterr()
    logged = powertools_out.getvalue()
    assert "changes wait on the commits queue" in logged
    assert "RemoteUnavailable" in logged
    for text in (logged, everything.getvalue(), out, err, repr(response), repr(services.store().push_record())):
        assert TOKEN not in text
        assert TOKEN[-10:] not in text


# --- the push record health reads instead of the remote (issue 11) -------------------------------------------


def _push_record() -> dict[str, Any] | None:
    found = services.store().read_json("gitstate/_push.json")
    return found.data if found else None


def test_pushes_are_recorded_for_health_at_most_once_a_minute(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[str] = []
    store = services.store()
    real_put = type(store.objects).put

    def spy(self: Any, key: str, *args: Any, **kwargs: Any) -> str:
        writes.append(key)
        return real_put(self, key, *args, **kwargs)

    monkeypatch.setattr(type(store.objects), "put", spy)
    queue_changes(pipeline, [("issue_created.json", "p-0")])
    # When the committer pushes
    assert invoke() == {"batchItemFailures": []}
    # Then one small record says when and which tip, and nothing failed
    record = _push_record()
    assert record is not None and record["ok"] is True and record["last_error"] is None
    assert record["last_push"]["tip"] == pipeline.commits()[0].sha
    assert writes.count("gitstate/_push.json") == 1
    # When it pushes again within the minute, the record is not written again
    queue_changes(pipeline, [("issue_updated.json", "p-1")])
    assert invoke() == {"batchItemFailures": []}
    assert committed(pipeline) == ["p-0", "p-1"]
    assert writes.count("gitstate/_push.json") == 1


def test_a_failed_push_is_recorded_with_its_cause_and_since_when(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    queue_changes(pipeline, [("issue_created.json", "f-0")])
    assert invoke() == {"batchItemFailures": []}
    pushed = _push_record()
    queue_changes(pipeline, [("issue_updated.json", "f-1")])
    monkeypatch.setenv("JSYNC_GIT_REMOTE", str(tmp_path / "nowhere.git"))
    services.reset()
    # When two attempts fail
    invoke()
    failed_once = _push_record()
    invoke()
    record = _push_record()
    # Then the record says so, from when, and still shows the last good push
    assert pushed is not None and failed_once is not None and record is not None
    assert record["ok"] is False and record["last_push"] == pushed["last_push"]
    assert record["last_error"]["error"].startswith("RemoteUnavailable: ")
    assert record["last_error"]["since"] == failed_once["last_error"]["at"]


# --- what the committer does when the branch, the store or the Lambda context fail it ---------------------------


def test_a_branch_that_keeps_moving_under_every_push_is_recorded_and_the_changes_wait(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pipeline.git.store import Person

    remember_receipts(monkeypatch)
    queue_changes(pipeline, [("issue_created.json", "k-0"), ("issue_created_adf.json", "k-1")])
    # Given someone else pushes to the branch between each fetch and push of the committer
    settings = pipeline.settings
    other = GitStore(settings.git_remote, settings.git_branch, tmp_path / "other.git")
    real_push = GitStore.push

    def someone_else_first(self: GitStore) -> None:
        if self is not other:
            other.fetch()
            other.stage({"elsewhere.txt": uuid.uuid4().bytes}, Person("Someone", "s@example.com"), 0, "elsewhere\n")
            real_push(other)
        real_push(self)

    monkeypatch.setattr(GitStore, "push", someone_else_first)
    try:
        # When the bell rings
        assert invoke() == {"batchItemFailures": []}
    finally:
        monkeypatch.setattr(GitStore, "push", real_push)
        other.close()

    # Then none of the changes is on the branch, they wait on the queue, and health's record says why
    assert all("Jira-Event-Id" not in c.trailers for c in pipeline.commits())
    assert waiting(pipeline) == 2
    record = services.store().push_record()
    assert record is not None and record["ok"] is False
    assert record["last_error"]["error"].startswith("PushRejected: ")
    # When the branch holds still again and the changes come back
    services.reset()
    expire_in_flight(pipeline)
    assert invoke() == {"batchItemFailures": []}
    # Then each is committed once, on top of the other pushes
    assert sorted(str(c.trailers.get("Jira-Event-Id")) for c in pipeline.commits()[:2]) == ["k-0", "k-1"]
    assert waiting(pipeline) == 0
    assert_linear(pipeline)


def test_run_without_a_lambda_context_it_drains_as_a_lambda_does(pipeline: Pipeline) -> None:
    # A script (or the local stack's shell) calls the handler with no context: a Lambda's time is assumed
    queue_changes(pipeline, [("issue_created.json", "n-0"), ("issue_updated.json", "n-1")])
    assert committer.lambda_handler({"Records": []}) == {"batchItemFailures": []}
    assert committed(pipeline) == ["n-0", "n-1"]
    assert waiting(pipeline) == 0


def _broken_push_record(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The store refuses the push record (and only it); returns what the committer logs."""
    from pipeline.store import Store

    def refuse(self: Store, record: dict[str, Any]) -> None:
        raise ConnectionError("storage hiccup")

    monkeypatch.setattr(Store, "put_push_record", refuse)
    logged = io.StringIO()
    monkeypatch.setattr(committer.logger.registered_handler, "stream", logged)
    return logged


def test_a_push_stands_when_its_record_for_health_cannot_be_written(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_changes(pipeline, [("issue_created.json", "w-0")])
    logged = _broken_push_record(monkeypatch)
    # When the committer pushes but cannot note the push for health
    assert invoke() == {"batchItemFailures": []}
    # Then the change is committed and off the queue, and the miss is logged
    assert committed(pipeline) == ["w-0"]
    assert waiting(pipeline) == 0
    assert "could not record the push for health" in logged.getvalue()


def test_a_failed_push_whose_record_cannot_be_written_still_leaves_the_changes_queued(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    queue_changes(pipeline, [("issue_created.json", "u-0")])
    monkeypatch.setenv("JSYNC_GIT_REMOTE", str(tmp_path / "nowhere.git"))
    services.reset()
    logged = _broken_push_record(monkeypatch)
    # When the remote is away and the store refuses the failure's record too
    assert invoke() == {"batchItemFailures": []}
    # Then the change waits, nothing is recorded, and both failures are in the log
    assert waiting(pipeline) == 1
    assert services.store().push_record() is None
    assert "changes wait on the commits queue" in logged.getvalue()
    assert "could not record the push failure for health" in logged.getvalue()
