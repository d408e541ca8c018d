"""Attachments end to end, on both backends: a webhook lists them, the writer asks for copies, the attachments
function streams them from (the fake) Jira into storage once, the API hands them out and the history says what
was skipped. Never into git."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pipeline import services
from pipeline.attachments import records
from pipeline.redrive import pairs, redrive_all
from tests.fakejira import EMAIL, TOKEN, FakeJira, JiraModel
from tests.harness import Pipeline, remote_paths

FIXTURES = Path(__file__).parent / "fixtures"
ISSUE_ID, KEY = "10042", "OPS-17"
TRACE_ID, VIDEO_ID = "10231", "10232"  # the fixture's two attachments: a 48 kB log and a 150 MB video
TRACE = b"2025-11-24T16:03:20Z ERROR payment gateway timeout\n" * 941  # 48,222 bytes, near what Jira lists
LIMIT = 1_000_000


@pytest.fixture
def model() -> JiraModel:
    return JiraModel(seed=3, issues=1)


@pytest.fixture
def jira(fake: FakeJira, any_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> FakeJira:
    """Jira credentials for the pipeline on each backend, and the fake serving the log (not the video)."""
    monkeypatch.setenv("JSYNC_JIRA_URL", fake.base_url)
    monkeypatch.setenv("JSYNC_JIRA_EMAIL", EMAIL)
    monkeypatch.setenv("JSYNC_JIRA_TOKEN", TOKEN)
    monkeypatch.setenv("JSYNC_ATTACHMENT_MAX_BYTES", str(LIMIT))
    services.reset()
    fake.attachments[TRACE_ID] = TRACE
    return fake


@pytest.fixture
def api(any_pipeline: Pipeline) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def deliver_attachments(pipeline: Pipeline) -> None:
    response = pipeline.deliver((FIXTURES / "attachment_added.json").read_bytes(), identifier="att-1")
    assert response["statusCode"] == 202, response


def content(api: TestClient, attachment_id: str, key: str = KEY) -> tuple[int, bytes, dict[str, str]]:
    """The attachment's bytes as a client gets them: following the deployed stage's redirect to S3."""
    answer = api.get(f"/api/v1/issues/{key}/attachments/{attachment_id}", follow_redirects=False)
    if answer.status_code != 307:
        return answer.status_code, answer.content, dict(answer.headers)
    with urllib.request.urlopen(answer.headers["location"], timeout=10) as presigned:  # no credentials needed
        return presigned.status, presigned.read(), dict(presigned.headers)


def test_a_new_attachment_is_copied_once_and_served_and_one_over_the_limit_is_skipped(
    any_pipeline: Pipeline, jira: FakeJira, api: TestClient
) -> None:
    # Given Jira credentials, When a webhook lists two new attachments (twice: Jira retried the delivery)
    deliver_attachments(any_pipeline)
    any_pipeline.drain()
    any_pipeline.deliver((FIXTURES / "attachment_added.json").read_bytes(), identifier="att-1-retry")
    any_pipeline.drain()

    # Then the log is stored once, the video skipped without being downloaded
    downloads = [p for p in jira.paths("GET") if "/attachment/content/" in p]
    assert downloads == [f"/rest/api/3/attachment/content/{TRACE_ID}"]
    kept = records(services.store(), ISSUE_ID)
    assert kept[TRACE_ID]["state"] == "stored" and kept[TRACE_ID]["size"] == len(TRACE)
    assert kept[VIDEO_ID]["state"] == "skipped" and "157,286,400 bytes" in kept[VIDEO_ID]["reason"]

    # And the API serves the log (bytes locally, a presigned S3 URL deployed) as a download
    status, body, headers = content(api, TRACE_ID)
    assert status == 200 and body == TRACE
    assert "attachment" in headers.get("content-disposition", headers.get("Content-Disposition", ""))
    skipped = api.get(f"/api/v1/issues/{KEY}/attachments/{VIDEO_ID}")
    assert skipped.status_code == 404 and skipped.json()["error"] == "attachment_skipped"
    assert "JSYNC_ATTACHMENT_MAX_BYTES" in skipped.json()["detail"]

    # And the listing and the history say what became of each
    listing = {a["id"]: a for a in api.get(f"/api/v1/issues/{KEY}/attachments").json()["items"]}
    assert listing[TRACE_ID]["sha256"] and listing[VIDEO_ID]["state"] == "skipped"
    newest = api.get(f"/api/v1/issues/{KEY}/history").json()["items"][0]
    assert {(a["id"], a["state"]) for a in newest["attachments"]} == {(TRACE_ID, "stored"), (VIDEO_ID, "skipped")}

    # And git holds the issue and its Markdown, never the content
    assert all(p.startswith("issues/") for p in remote_paths(any_pipeline.settings.git_remote, "main"))
    markdown = any_pipeline.git_file("issues/OPS/OPS-17.md")
    assert markdown is not None and b"trace.log" in markdown


def test_without_jira_credentials_attachments_are_metadata_only(
    any_pipeline: Pipeline, fake: FakeJira, api: TestClient
) -> None:
    deliver_attachments(any_pipeline)
    any_pipeline.drain()
    assert not fake.requests  # nothing asked of Jira
    states = {a["state"] for a in api.get(f"/api/v1/issues/{KEY}/attachments").json()["items"]}
    assert states == {"metadata_only"}
    answer = api.get(f"/api/v1/issues/{KEY}/attachments/{TRACE_ID}")
    assert answer.status_code == 404 and answer.json()["error"] == "attachment_metadata_only"


def test_jira_failing_dead_letters_the_copy_and_a_redrive_stores_it_exactly_once(
    any_pipeline: Pipeline, jira: FakeJira, api: TestClient
) -> None:
    # Given Jira failing every attempt at the log (5 receives, then the dead-letter queue)
    jira.inject(status=500, times=5, retry_after=None, path=f"/rest/api/3/attachment/content/{TRACE_ID}")
    deliver_attachments(any_pipeline)
    any_pipeline.drain()
    settings = any_pipeline.settings
    dlq = dict(settings.queue_pairs)[settings.attachments_queue]
    assert services.queue_bus().depth(dlq).total == 1
    assert api.get(f"/api/v1/issues/{KEY}/attachments/{TRACE_ID}").json()["error"] == "attachment_pending"

    # When Jira is back and the dead letters are redriven (`make redrive`)
    redrive_all(services.queue_bus(), pairs(settings))
    any_pipeline.drain()

    # Then the log is stored, once
    status, body, _ = content(api, TRACE_ID)
    assert status == 200 and body == TRACE
    assert services.queue_bus().depth(dlq).total == 0
    assert len([r for r in jira.requests if r.status == 200 and "/attachment/content/" in r.path]) == 1


def test_an_attachment_jira_deleted_before_the_copy_is_recorded_gone(
    any_pipeline: Pipeline, jira: FakeJira, api: TestClient
) -> None:
    del jira.attachments[TRACE_ID]
    deliver_attachments(any_pipeline)
    any_pipeline.drain()
    answer = api.get(f"/api/v1/issues/{KEY}/attachments/{TRACE_ID}")
    assert answer.status_code == 404 and answer.json()["error"] == "attachment_gone"


def test_unknown_and_malformed_attachment_ids_are_clear_errors(any_pipeline: Pipeline, api: TestClient) -> None:
    deliver_attachments(any_pipeline)
    any_pipeline.drain()
    unknown = api.get(f"/api/v1/issues/{KEY}/attachments/999")
    assert unknown.status_code == 404 and unknown.json()["error"] == "attachment_not_found"
    bad = api.get(f"/api/v1/issues/{KEY}/attachments/..%2Fx")
    assert bad.status_code in (400, 404) and "error" in bad.json()
    missing_issue = api.get("/api/v1/issues/NOPE-1/attachments")
    assert missing_issue.status_code == 404 and missing_issue.json()["error"] == "issue_not_found"


def test_a_reconcile_copies_the_attachments_of_issues_captured_before_jira_credentials(
    any_pipeline: Pipeline, fake: FakeJira, model: JiraModel, monkeypatch: pytest.MonkeyPatch, api: TestClient
) -> None:
    # Given an issue with an attachment, captured from its webhooks while JSync had no Jira credentials
    [issue] = model.issues.values()
    issue.attachments = [{"id": "20001", "filename": "design.pdf", "size": 9, "mimeType": "application/pdf"}]
    fake.attachments["20001"] = b"%PDF-1.7\n"
    for webhook in model.webhooks():
        assert any_pipeline.deliver(webhook.body, identifier=webhook.identifier)["statusCode"] == 202
    any_pipeline.drain()
    listing = api.get(f"/api/v1/issues/{issue.key}/attachments").json()["items"]
    assert [(a["id"], a["state"]) for a in listing] == [("20001", "metadata_only")]

    # When credentials are set and a reconcile runs
    monkeypatch.setenv("JSYNC_JIRA_URL", fake.base_url)
    monkeypatch.setenv("JSYNC_JIRA_EMAIL", EMAIL)
    monkeypatch.setenv("JSYNC_JIRA_TOKEN", TOKEN)
    services.reset()
    any_pipeline.sync()

    # Then the attachment is copied, and a second reconcile asks for nothing more
    status, body, _ = content(api, "20001", issue.key)
    assert status == 200 and body == b"%PDF-1.7\n"
    downloads = len([p for p in fake.paths("GET") if "/attachment/content/" in p])
    any_pipeline.sync()
    assert len([p for p in fake.paths("GET") if "/attachment/content/" in p]) == downloads == 1


def test_the_timeline_links_a_kept_attachment_and_says_why_another_was_not(
    any_pipeline: Pipeline, jira: FakeJira, api: TestClient
) -> None:
    deliver_attachments(any_pipeline)
    any_pipeline.drain()
    page = api.get(f"/issues/{KEY}/timeline")
    assert page.status_code == 200
    assert f'href="/api/v1/issues/{KEY}/attachments/{TRACE_ID}" download>trace.log</a>' in page.text
    assert 'screen recording.mp4: <span class="not-kept">not kept (157,286,400 bytes: over JSync' in page.text
