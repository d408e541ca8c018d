"""pipeline.reconcile.jobs without storage: a record saved before the typed records (or before some of its fields
existed) loads and resumes where it stopped, and saves back meaning the same to the code that wrote it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeline.reconcile import jobs
from pipeline.reconcile.jobs import JobRecord, JobView, Resume, SyncIssue, SyncIssueError

# A job as the untyped reconciler saved it mid-census: before `*_omitted` existed, so without them.
OLD_RECORD: dict[str, Any] = {
    "job_id": "sync-20261125T101500Z-1a2b3c4d",
    "state": "running",
    "trigger": "api",
    "project": None,
    "since": None,
    "phase": "census",
    "requested_at": "2026-11-25T10:15:00.000Z",
    "updated_at": "2026-11-25T10:21:07.412Z",
    "started_at": "2026-11-25T10:15:01.000Z",
    "finished_at": None,
    "elapsed_seconds": None,
    "pages_scanned": 3,
    "issues_scanned": 120,
    "issues_estimated": 118,
    "issues_changed": 4,
    "changes_fed": 9,
    "deletes_found": 1,
    "deleted": [{"id": "10001", "key": "OPS-1"}],
    "not_visible": [{"id": "10002", "key": None}],
    "errors": [{"issue_id": "10005", "status": 400, "message": "Jira answered 400."}],
    "message": None,
    "since_ms": None,
    "step": 4,
    "resume": {
        "started_ms": 1_764_065_701_000,
        "bound_ms": 1_763_979_301_000,
        "jql": "updated >= 1763979301000 ORDER BY id ASC",
        "token": None,
        "pending_after": "sync/pending/10007.json",
        "pending_done": ["10007"],
        "projects": ["OPS", "WEB"],
        "project_index": 1,
        "vanished": ["10003", "10004"],
    },
}


def test_a_record_saved_before_the_typed_records_resumes_where_it_stopped() -> None:
    # Given a mid-census record as the untyped reconciler stored it
    stored = copy.deepcopy(OLD_RECORD)

    # When it is loaded
    job = JobRecord.from_json(stored)

    # Then every key of its resume is a typed field holding the same value
    assert job.resume == Resume(**OLD_RECORD["resume"])
    assert job.deleted == [SyncIssue("10001", "OPS-1")] and job.not_visible == [SyncIssue("10002", None)]
    assert job.errors == [SyncIssueError("10005", 400, "Jira answered 400.")]
    # And the fields it was saved without take their defaults
    assert (job.deleted_omitted, job.not_visible_omitted, job.errors_omitted) == (0, 0, 0)
    # And saved again it holds what it held, plus those defaults, and loads back the same
    assert job.to_json() == {**OLD_RECORD, "deleted_omitted": 0, "not_visible_omitted": 0, "errors_omitted": 0}
    assert JobRecord.from_json(job.to_json()) == job


def test_a_resume_keeps_out_the_keys_a_job_has_not_reached_as_the_untyped_one_did() -> None:
    # Given a job just started: its search fixed, nothing read yet
    started = {"started_ms": 5, "bound_ms": 0, "jql": "updated >= 0 ORDER BY id ASC", "token": None}

    # When its resume is loaded and saved again
    saved = Resume.from_json(started).to_json()

    # Then the census and the pending phase have not begun, as the code before read it (`"projects" not in`),
    # and the token is there: the first page
    assert not {"projects", "vanished", "pending_after"} & set(saved)
    assert {key: saved[key] for key in started} == started
    # And a queued job's empty resume, or a key stored as null, loads as not reached
    assert Resume.from_json({}) == Resume() and Resume.from_json({"pending_done": None}).pending_done == []


def test_a_job_lists_what_it_found_up_to_the_limit_and_counts_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "MAX_REPORTED", 1)
    job = jobs.new_job("sync-20261125T101500Z-1a2b3c4d", "api", None, None, 1_764_065_700_000)

    for issue_id in ("1", "2", "1"):  # the census finds again what the pending phase found
        job.report_deleted(SyncIssue(issue_id, None))
        job.report_not_visible(SyncIssue(issue_id, None))
    job.report_error(SyncIssueError("3", 400, "no"))
    job.report_error(SyncIssueError("4", 400, "no"))

    assert (job.deletes_found, [i.id for i in job.deleted], job.deleted_omitted) == (2, ["1"], 1)
    assert ([i.id for i in job.not_visible], job.not_visible_omitted) == (["1"], 1)
    assert ([e.issue_id for e in job.errors], job.errors_omitted) == (["3"], 1)


def test_readers_see_the_public_part_only() -> None:
    view = jobs.public(JobRecord.from_json(OLD_RECORD))
    assert type(view) is JobView and not hasattr(view, "resume") and not hasattr(view, "step")
