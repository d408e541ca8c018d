"""Faults: a crash mid-capture, S3 or git down, a remote that moved on. Every accepted change ends stored once."""

from __future__ import annotations

import json

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from pipeline import services
from pipeline.git.commits import GitRecords
from pipeline.ids import Order
from pipeline.messages import Change
from pipeline.queues import Queues
from pipeline.store import Store
from tests.builders import fixture_bytes
from tests.harness import Pipeline


def test_crash_between_s3_write_and_commit_send_is_retried_without_duplicate(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the commits queue refuses the first send, after latest/ was written
    real_send = Queues.send_changes
    calls = {"n": 0}

    def flaky(self: Queues, changes: list[Change]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("simulated crash before the send")
        real_send(self, changes)

    monkeypatch.setattr(Queues, "send_changes", flaky)
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="crash-1")
    # When the writer's first attempt dies and SQS redelivers
    pipeline.drain()
    # Then there is one snapshot, latest/ is that event, and exactly one commit
    assert calls["n"] == 2
    assert pipeline.keys("snapshots/10042/") == ["snapshots/10042/1764000000123-crash-1.json"]
    assert pipeline.latest("10042")["capture"]["event_id"] == "crash-1"
    assert [c.trailers["Jira-Event-Id"] for c in pipeline.commits()] == ["crash-1"]


def test_committer_crash_after_push_before_record_adds_no_commit(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the committer dies right after a successful push, before it records it; its changes visible again at
    # once, as after their visibility timeout
    monkeypatch.setenv("JSYNC_COMMIT_VISIBILITY_SECONDS", "0")
    services.reset()
    real_save = GitRecords.save
    calls = {"n": 0}

    def flaky(self: GitRecords, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("simulated crash after push")
        real_save(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(GitRecords, "save", flaky)
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="c-1")
    pipeline.deliver(fixture_bytes("issue_updated.json"), identifier="c-2")
    # When the batch is redelivered after the crash (a cold start forgets the warm cache, too)
    pipeline.writer.poll_once()
    pipeline.committer.poll_once()
    services.git_store().close()
    services.git_store.cache_clear()
    services.git_records.cache_clear()
    pipeline.drain()
    # Then git holds each event once
    assert [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())] == ["c-1", "c-2"]


def test_replayed_and_older_changes_add_no_commit(pipeline: Pipeline) -> None:
    for n, name in enumerate(["issue_created.json", "issue_updated.json", "issue_updated_assignee.json"]):
        pipeline.deliver(fixture_bytes(name), identifier=f"r-{n}")
    pipeline.drain()
    before = pipeline.commits()
    # When Jira retries every delivery, late and out of order, and the commits queue replays an old change
    for n, name in reversed(
        list(enumerate(["issue_created.json", "issue_updated.json", "issue_updated_assignee.json"]))
    ):
        assert pipeline.deliver(fixture_bytes(name), identifier=f"r-{n}")["statusCode"] == 202
    pipeline.deliver(fixture_bytes("issue_updated_stale.json"), identifier="stale")
    snapshot = json.loads(services.store().get_bytes("snapshots/10042/1764000100456-r-1.json"))
    services.queues().send_change(
        Change(
            "10042",
            "OPS-17",
            "OPS-17",
            "r-1",
            "jira:issue_updated",
            Order.from_list(snapshot["capture"]["order"]),
            None,
            "updated status",
            [],
            False,
            "snapshots/10042/1764000100456-r-1.json",
            snapshot["issue"],
        )
    )
    pipeline.drain()
    # Then git is unchanged and latest/ did not go back
    assert [c.sha for c in pipeline.commits()] == [c.sha for c in before]
    assert pipeline.latest("10042")["capture"]["event_id"] == "r-2"
    # but the older event is kept as a snapshot all the same
    assert "snapshots/10042/1764000150000-stale.json" in pipeline.keys("snapshots/10042/")


def test_viewer_only_change_adds_no_commit(pipeline: Pipeline) -> None:
    pipeline.deliver(fixture_bytes("issue_updated_assignee.json"), identifier="v-1")
    pipeline.drain()
    pipeline.deliver(fixture_bytes("issue_updated_viewer_only.json"), identifier="v-2")
    pipeline.drain()
    assert [c.trailers["Jira-Event-Id"] for c in pipeline.commits()] == ["v-1"]
    assert pipeline.latest("10042")["capture"]["event_id"] == "v-2"


def test_delete_before_first_event_leaves_no_file_and_no_commit(pipeline: Pipeline) -> None:
    pipeline.deliver(fixture_bytes("issue_deleted.json"), identifier="d-1")
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="d-0")  # older, arrives later
    pipeline.drain()
    assert pipeline.commits() == []
    assert pipeline.latest("10042")["deleted"] is True


def _foreign_commit(remote: str, path: bytes, content: bytes) -> bytes:
    """Someone else pushes to the branch: a commit on top of the remote tip."""
    repo = Repo(remote)
    try:
        parent = repo.refs[b"refs/heads/main"]
        blob = Blob.from_string(content)
        root = repo[repo[parent].tree]
        assert isinstance(root, Tree)
        root.add(path, 0o100644, blob.id)
        commit = Commit()
        commit.tree, commit.parents = root.id, [parent]
        commit.author = commit.committer = b"Someone <someone@example.invalid>"
        commit.author_time = commit.commit_time = 1764000000
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = b"unrelated change\n"
        repo.object_store.add_objects([(blob, None), (root, None), (commit, None)])
        repo.refs[b"refs/heads/main"] = commit.id
        return commit.id
    finally:
        repo.close()


def test_remote_moved_on_is_fetched_and_replayed_never_forced(pipeline: Pipeline) -> None:
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="m-1")
    pipeline.drain()
    foreign = _foreign_commit(pipeline.settings.git_remote, b"README.md", b"hello\n")
    # When the committer, still on the old tip, pushes its next batch
    pipeline.deliver(fixture_bytes("issue_updated.json"), identifier="m-2")
    pipeline.drain()
    commits = pipeline.commits()
    # Then its commit sits on top of the foreign one: linear, nothing lost
    assert commits[0].trailers["Jira-Event-Id"] == "m-2"
    assert commits[0].parents == [foreign.decode()]
    assert pipeline.git_file("README.md") == b"hello\n"
    assert all(len(c.parents) <= 1 for c in commits)


def test_git_remote_down_keeps_changes_queued_until_it_returns(pipeline: Pipeline, tmp_path) -> None:
    remote = pipeline.settings.git_remote
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="g-0")
    pipeline.drain()
    hidden = tmp_path / "hidden.git"
    # Given the remote disappears
    import os

    os.rename(remote, hidden)
    pipeline.deliver(fixture_bytes("issue_updated.json"), identifier="g-1")
    pipeline.writer.poll_once()
    pipeline.committer.poll_once()
    # Then the change waits on the commits queue
    assert pipeline.depth(pipeline.settings.commits_queue) == 1
    # When it comes back, the change is committed once
    os.rename(hidden, remote)
    pipeline.drain()
    assert [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())] == ["g-0", "g-1"]


def test_s3_down_keeps_events_queued_until_it_returns(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="s-1")
    real = Store.put_raw

    def down(self: Store, *a: object, **k: object) -> None:
        raise ConnectionError("S3 unavailable")

    monkeypatch.setattr(Store, "put_raw", down)
    pipeline.writer.poll_once()
    assert pipeline.depth(pipeline.settings.events_queue) == 1
    monkeypatch.setattr(Store, "put_raw", real)
    pipeline.drain()
    assert len(pipeline.keys("snapshots/10042/")) == 1
    assert len(pipeline.commits()) == 1
