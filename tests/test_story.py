"""The life of one issue, end to end through the handlers: S3 and git agree at every step."""

import json

from tests.builders import fixture_bytes
from tests.harness import Pipeline

STORY = [
    ("issue_created.json", "OPS-17: created: Rotate certificates"),
    ("issue_updated.json", "OPS-17: updated status"),
    ("issue_updated_assignee.json", "OPS-17: updated assignee"),
    ("comment_created.json", "OPS-17: comment 10301 created by Grace Example"),
    ("worklog_created.json", "OPS-17: worklog 10500 created by Grace Example"),
    ("issue_moved.json", "PLAT-5: moved from OPS-17"),
    ("issue_deleted.json", "PLAT-5: deleted"),
]


def test_story_in_order(any_pipeline: Pipeline) -> None:
    pipeline = any_pipeline
    for n, (name, _) in enumerate(STORY):
        assert pipeline.deliver(fixture_bytes(name), identifier=f"story-{n}")["statusCode"] == 202
        pipeline.drain()
    subjects = [c.subject for c in reversed(pipeline.commits())]
    assert subjects == [s for _, s in STORY]
    moved, deleted = pipeline.commits()[1], pipeline.commits()[0]
    # Then the move is one rename, the delete one removal, and each author is who acted in Jira
    assert "Key: OPS-17 -> PLAT-5" in moved.message
    assert pipeline.git_file("issues/OPS/OPS-17.json") is None
    assert pipeline.git_file("issues/PLAT/PLAT-5.json") is None
    assert deleted.trailers == {
        "Jira-Event-Id": "story-6",
        "Jira-Event": "jira:issue_deleted",
        "Jira-Issue-Id": "10042",
        "Jira-Issue-Key": "PLAT-5",
        "Jira-Event-Time": "1764000500000",
        "Jira-Changelog-Id": "0",
    }
    comment = pipeline.commits()[3]
    assert comment.author.startswith("Grace Example <")
    assert comment.author_time == 1764000300
    assert all(c.committer.startswith("JSync <") for c in pipeline.commits())
    # And S3 holds one snapshot per event and a deleted latest state
    assert len(pipeline.keys("snapshots/10042/")) == len(STORY)
    latest = pipeline.latest("10042")
    assert latest["deleted"] is True and latest["deleted_at"] == 1764000500000


def test_each_step_file_matches_latest(any_pipeline: Pipeline) -> None:
    pipeline = any_pipeline
    for n, (name, _) in enumerate(STORY[:-1]):
        pipeline.deliver(fixture_bytes(name), identifier=f"s-{n}")
        pipeline.drain()
        latest = pipeline.latest("10042")
        key = latest["issue"]["key"]
        stored = pipeline.git_file(f"issues/{key.split('-')[0]}/{key}.json")
        assert stored is not None and json.loads(stored) == latest["issue"]
        assert stored.endswith(b"\n") and b"isWatching" not in stored and b"lastViewed" not in stored
