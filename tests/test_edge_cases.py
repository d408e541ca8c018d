"""Orderings Jira really produces that a naive 'newest wins' gets wrong, and the committer's crash window."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from pipeline import reader, services
from pipeline.errors import JSyncError
from pipeline.git.commits import GitRecords
from pipeline.messages import Change
from tests.builders import fixture_bytes, fixture_json
from tests.harness import Pipeline


def _body(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def test_cascaded_delete_processed_first_does_not_cancel_the_issue_delete(pipeline: Pipeline) -> None:
    # Given the issue with a comment
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="c-0")
    pipeline.deliver(fixture_bytes("comment_created.json"), identifier="c-1")
    pipeline.drain()
    # When Jira's secondary comment_deleted (a later timestamp) is processed before the primary issue delete
    cascade = fixture_json("comment_created.json")
    cascade["webhookEvent"] = "comment_deleted"
    cascade["timestamp"] = fixture_json("issue_deleted.json")["timestamp"] + 1
    pipeline.deliver(_body(cascade), identifier="c-2")
    pipeline.drain()
    deleted = fixture_json("issue_deleted.json")
    deleted["issue"]["key"] = "OPS-17"
    pipeline.deliver(_body(deleted), identifier="c-3")
    pipeline.drain()
    # Then the issue is deleted in S3 and in git, for good
    assert pipeline.latest("10042")["deleted"] is True
    assert pipeline.git_file("issues/OPS/OPS-17.json") is None
    assert pipeline.commits()[0].trailers["Jira-Event"] == "jira:issue_deleted"
    assert pipeline.commits()[0].author_time == deleted["timestamp"] // 1000
    # and the history's newest entry is the deletion, though the cascade carried a later time (contract §6)
    newest = reader.history(services.store(), "10042", 2, None).items
    assert [item["event"] for item in newest] == ["jira:issue_deleted", "comment_deleted"]
    assert newest[0]["event_time"] == deleted["timestamp"]
    # and a replay of anything changes nothing
    before = [c.sha for c in pipeline.commits()]
    pipeline.deliver(_body(cascade), identifier="c-2")
    pipeline.deliver(fixture_bytes("issue_updated.json"), identifier="c-4")
    pipeline.drain()
    assert [c.sha for c in pipeline.commits()] == before


def test_comment_before_the_created_event_is_filled_in_by_it(pipeline: Pipeline) -> None:
    # Given the comment webhook overtakes the creation
    pipeline.deliver(fixture_bytes("comment_created.json"), identifier="p-1")
    pipeline.drain()
    assert pipeline.latest("10042")["partial"] is True
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="p-0")
    pipeline.drain()
    # Then the stored issue is the full one, with the comment kept
    doc = pipeline.latest("10042")["issue"]
    assert doc["fields"]["description"] and doc["fields"]["reporter"]["displayName"]
    assert [c["id"] for c in doc["fields"]["comment"]["comments"]] == ["10301"]
    stored = json.loads(pipeline.git_file("issues/OPS/OPS-17.json") or b"{}")
    assert stored == doc
    assert [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())] == ["p-1", "p-0"]
    # and a retry of either adds nothing
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="p-0")
    pipeline.deliver(fixture_bytes("comment_created.json"), identifier="p-1")
    pipeline.drain()
    assert len(pipeline.commits()) == 2


def test_delete_arriving_first_answers_as_deleted_and_leaves_no_file(pipeline: Pipeline) -> None:
    pipeline.deliver(fixture_bytes("issue_deleted.json"), identifier="d-1")
    pipeline.drain()
    latest = pipeline.latest("10042")
    assert latest["deleted"] is True and latest["issue"]["key"] == "PLAT-5"
    with pytest.raises(JSyncError) as gone:  # its key answers as deleted, not unknown
        reader.latest_issue(services.store(), "PLAT-5")
    assert gone.value.status == 410
    assert pipeline.commits() == []


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_crash_after_push_with_a_change_and_its_revert_adds_no_duplicates(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, cache: str
) -> None:
    # Given a summary change and its revert in one batch, and the committer dying after the push
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="a-0")
    pipeline.drain()
    changed = fixture_json("issue_updated.json")
    changed["issue"]["fields"]["summary"] = "Something else"
    reverted = copy.deepcopy(fixture_json("issue_updated.json"))
    reverted["timestamp"] += 1000
    reverted["changelog"]["id"] = "10800"
    reverted["issue"]["fields"] = copy.deepcopy(fixture_json("issue_created.json")["issue"]["fields"])
    pipeline.deliver(_body(changed), identifier="a-1")
    pipeline.deliver(_body(reverted), identifier="a-2")
    while pipeline.depth(pipeline.settings.events_queue):
        pipeline.writer.poll_once()
    assert pipeline.depth(pipeline.settings.commits_queue) == 2
    real = GitRecords.save

    def killed(*_: object, **__: object) -> None:
        raise ConnectionError("killed after the push")

    # Visible again at once after the crash, as after the visibility timeout
    monkeypatch.setenv("JSYNC_COMMIT_VISIBILITY_SECONDS", "0")
    services.reset()
    monkeypatch.setattr(GitRecords, "save", killed)
    pipeline.committer.poll_once()
    assert len(pipeline.commits()) == 3  # the push went through
    monkeypatch.setattr(GitRecords, "save", real)
    # When the batch comes back on a new committer instance, its /tmp kept (warm) or empty (cold: depth-1 fetch)
    services.git_store().close()
    services.git_store.cache_clear()
    services.git_records.cache_clear()
    if cache == "cold":
        shutil.rmtree(pipeline.settings.git_cache_dir)
    pipeline.drain()
    # Then each event is committed once
    assert [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())] == ["a-0", "a-1", "a-2"]


def test_change_too_big_for_sqs_still_reaches_git(pipeline: Pipeline) -> None:
    payload = fixture_json("issue_updated.json")
    big = "x" * 300_000
    payload["issue"]["fields"]["description"] = big
    payload["changelog"]["items"] = [
        {
            "field": f"customfield_{n}",
            "fieldtype": "custom",
            "from": None,
            "fromString": big,
            "to": None,
            "toString": big + str(n),
        }
        for n in range(3)
    ]
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="b-0")
    assert pipeline.deliver(_body(payload), identifier="b-1")["statusCode"] == 202
    pipeline.drain()
    stored = json.loads(pipeline.git_file("issues/OPS/OPS-17.json") or b"{}")
    assert stored["fields"]["description"] == big
    assert [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())] == ["b-0", "b-1"]


def test_retried_delivery_keeps_the_history_entry_it_first_had(pipeline: Pipeline) -> None:
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="h-0")
    pipeline.deliver(fixture_bytes("comment_created.json"), identifier="h-1")
    pipeline.drain()
    store = services.store()
    before = reader.history(store, "10042", 50, None).items
    pipeline.deliver(fixture_bytes("issue_moved.json"), identifier="h-2")
    pipeline.deliver(fixture_bytes("comment_created.json"), identifier="h-1")  # Jira's late retry
    pipeline.drain()
    after = reader.history(store, "10042", 50, None).items
    assert after[1:] == before  # below the move, each entry as it was, once
    comment = reader.version(store, "PLAT-5", before[0]["version"])
    assert comment["issue"]["key"] == "OPS-17"  # the comment's version still names OPS-17, as when it happened


def test_change_messages_are_ascii_so_sqs_takes_any_text(pipeline: Pipeline) -> None:
    payload = fixture_json("issue_updated.json")
    payload["issue"]["fields"]["summary"] = "odd \ufffe chars \u2014 ok"
    pipeline.deliver(_body(payload), identifier="u-1")
    pipeline.writer.poll_once()
    sqs = services.aws("sqs")
    url = sqs.get_queue_url(QueueName=pipeline.settings.commits_queue)["QueueUrl"]
    body = sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"]
    assert body.isascii()
    assert Change.from_json(body).document["fields"]["summary"] == "odd \ufffe chars \u2014 ok"


def test_cold_start_fetches_only_the_tip(pipeline: Pipeline) -> None:
    for n, name in enumerate(["issue_created.json", "issue_updated.json", "issue_updated_assignee.json"]):
        pipeline.deliver(fixture_bytes(name), identifier=f"s-{n}")
        pipeline.drain()
    services.git_store().close()
    services.git_store.cache_clear()
    shutil.rmtree(pipeline.settings.git_cache_dir)
    git = services.git_store()
    git.fetch()
    assert [sha for sha, _ in git.history(limit=1)] == [pipeline.commits()[0].sha.encode()]
    assert len(git.repo.get_shallow()) == 1  # one commit fetched, its parents not
    # and walking further back deepens on demand
    assert [m.split(b"\n", 1)[0] for _, m in git.history()] == [c.subject.encode() for c in pipeline.commits()]
