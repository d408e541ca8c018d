"""The local stack over real HTTP: committed changes as NDJSON lines in `$JSYNC_HOME/events.ndjson`, and what the
functions counted at `GET /api/v1/metrics`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from local.stack import LocalStack
from pipeline import services
from tests.environments import keyed_stack
from tests.harness import remote_commits
from tests.local.test_stack import post


def metrics_of(stack: LocalStack, **headers: str) -> httpx.Response:
    return httpx.get(stack.urls.metrics, headers=headers, timeout=10)


def test_webhooks_through_the_stack_are_counted_and_published_as_ndjson(stack: LocalStack) -> None:
    # Given the running stack, nothing counted yet
    assert metrics_of(stack).json()["counters"] == {}
    # When Jira posts a created and an updated event, and something posts a body that is no webhook
    assert post(stack, "issue_created.json", "x-1").status_code == 202
    assert post(stack, "issue_updated.json", "x-2").status_code == 202
    bad = httpx.post(stack.urls.webhook, content=b"{nope", headers={"content-type": "application/json"}, timeout=10)
    assert bad.status_code == 400
    stack.wait_idle()

    # Then the metrics say what each function did since the stack started
    answer = metrics_of(stack)
    assert answer.status_code == 200
    report = answer.json()
    assert report["counters"]["jsync-ingest"] == {"EventsAccepted": 2, "EventsRefused{reason=shape}": 1}
    assert report["counters"]["jsync-writer"] == {"EventsCaptured": 2}
    assert report["counters"]["jsync-committer"] == {"ChangesCommitted": 2, "EventsPublished": 2}
    assert report["timings"]["jsync-committer"]["CommitLagMs"]["samples"] >= 1
    assert report["since"].endswith("Z")

    # ... and each commit is one line of $JSYNC_HOME/events.ndjson, in order, naming its commit
    path = Path(stack.settings.home) / "events.ndjson"
    assert stack.urls.events == f"NDJSON lines in {path}"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    commits = list(reversed(remote_commits(stack.settings.git_remote, "main")))
    assert [(line["detail"]["version"].split("-", 1)[1], line["detail"]["commit"]) for line in lines] == [
        (c.trailers["Jira-Event-Id"], c.sha) for c in commits
    ]
    assert {(line["source"], line["detail-type"]) for line in lines} == {("jsync", "Jira issue changed")}


def test_metrics_need_the_api_key_when_keys_are_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with keyed_stack(tmp_path / "home", monkeypatch, "k-123") as stack:
        assert metrics_of(stack).status_code == 401
        assert metrics_of(stack, **{"X-API-Key": "wrong"}).status_code == 401
        assert metrics_of(stack, **{"X-API-Key": "k-123"}).status_code == 200


def test_deployed_the_metrics_are_in_cloudwatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSYNC_HOME", str(tmp_path))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "jsync-prod-api")
    monkeypatch.delenv("JSYNC_API_KEYS", raising=False)
    services.reset()
    try:
        answer = TestClient(create_app()).get("/api/v1/metrics")
    finally:
        services.reset()
    assert answer.status_code == 404
    assert answer.json()["error"] == "metrics_in_cloudwatch" and "CloudWatch" in answer.json()["detail"]
