"""POST/GET /api/v1/sync end to end: the local stack (uvicorn, pollers, the reconcile function) against a fake Jira."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from api.models import SyncJob
from local.stack import LocalStack
from pipeline import services
from pipeline.reconcile import jobs
from pipeline.reconcile.jobs import Resume, SyncIssueError
from pipeline.snapshot import issue_document
from tests.api.test_http import assert_error
from tests.environments import stack_env
from tests.fakejira import EMAIL, TOKEN, FakeJira, JiraModel


@pytest.fixture
def model() -> JiraModel:
    return JiraModel(seed=3, issues=8, max_changes=4)


@pytest.fixture
def jira_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: JiraModel) -> Iterator[LocalStack]:
    for name in ("JSYNC_WEBHOOK_SECRET", "JSYNC_API_KEYS", "JSYNC_GIT_REMOTE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for k, v in stack_env(tmp_path / "home").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("JSYNC_GIT_REMOTE")
    with FakeJira(model) as fake:
        monkeypatch.setenv("JSYNC_JIRA_URL", fake.base_url)
        monkeypatch.setenv("JSYNC_JIRA_EMAIL", EMAIL)
        monkeypatch.setenv("JSYNC_JIRA_TOKEN", TOKEN)
        stack = LocalStack()
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()
            services.reset()


@pytest.fixture
def api(jira_stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{jira_stack.settings.port}/api/v1", timeout=10) as client:
        yield client


def wait_for(api: httpx.Client, job_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api.get(f"/sync/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in {timeout} s")


def test_a_sync_started_over_http_captures_jira_and_reports_its_progress(
    jira_stack: LocalStack, api: httpx.Client, model: JiraModel
) -> None:
    r = api.post("/sync", json={"project": None, "since": None})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["state"] == "queued"

    job = wait_for(api, job_id)
    jira_stack.wait_idle()

    TypeAdapter(SyncJob).validate_python(job)  # the job as served matches the documented model
    assert job["state"] == "succeeded", job
    assert job["trigger"] == "api" and job["phase"] == "done"
    assert job["issues_scanned"] == job["issues_estimated"] == len(model.issues)
    assert job["pages_scanned"] >= 1 and job["elapsed_seconds"] is not None
    assert job["requested_at"] <= job["started_at"] <= job["updated_at"] and job["finished_at"] <= job["updated_at"]
    assert job["changes_fed"] == sum(len(i.histories) + 1 for i in model.issues.values())
    for issue in model.visible_issues():
        r = api.get(f"/issues/{issue.key}")
        assert r.status_code == 200
        assert r.json() == issue_document(model.issue_json(issue.id, api=2))
        history = api.get(f"/issues/{issue.key}/history", params={"limit": 200}).json()["items"]
        assert len(history) == len(issue.histories) + 1

    # A sync of one project since a given time is its own job
    r = api.post("/sync", json={"project": model.projects[0], "since": "2026-01-01T00:00:00Z"})
    assert r.status_code == 202
    again = wait_for(api, r.json()["job_id"])
    assert again["project"] == model.projects[0] and again["since"] == "2026-01-01T00:00:00.000Z"
    assert again["state"] == "succeeded" and again["changes_fed"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"project": "ops"}, "invalid_project"),
        ({"project": 'OPS" OR project = "X'}, "invalid_project"),
        ({"since": "yesterday"}, "invalid_since"),
        ({"since": "2026-11-01T00:00:00"}, "invalid_since"),  # no zone: Jira would read it in its own
    ],
)
def test_a_bad_sync_request_is_a_400_that_says_what(api: httpx.Client, body: dict[str, Any], code: str) -> None:
    assert_error(api.post("/sync", json=body), 400, code)


def test_unknown_jobs_and_unknown_fields_are_refused(api: httpx.Client) -> None:
    assert_error(api.get("/sync/sync-20990101T000000Z-00000000"), 404, "job_not_found")
    assert_error(api.get("/sync/not%20a%20job"), 400)
    assert_error(api.post("/sync", json={"projects": ["OPS"]}), 400)


def test_a_job_that_lists_only_some_of_its_issues_says_how_many_it_left_out(
    api: httpx.Client, jira_stack: LocalStack
) -> None:
    # Given a finished job whose lists were cut at their limit, as reconcile records it
    job = jobs.new_job("sync-20990101T000000Z-0000abcd", "api", None, None, int(time.time() * 1000))
    job.state, job.phase = "finished_with_errors", "done"
    job.errors = [SyncIssueError("10001", 500, "Jira answered 500")]
    job.errors_omitted, job.deleted_omitted, job.not_visible_omitted = 7, 2, 3
    job.resume = Resume(started_ms=1, token="page-2")
    jobs.save(services.store(), job)

    # When a reader asks for it over HTTP
    body = api.get(f"/sync/{job.job_id}").json()

    # Then the counts of what was left out reach the reader, and the resume bookkeeping does not
    assert (body["errors_omitted"], body["deleted_omitted"], body["not_visible_omitted"]) == (7, 2, 3)
    assert body["errors"] == [{"issue_id": "10001", "status": 500, "message": "Jira answered 500"}]
    assert not {"resume", "step", "since_ms"} & set(body)
