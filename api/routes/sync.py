"""Reconcile with Jira's REST API: start a job (the reconcile function runs it) and follow its progress."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool

from api.models import SyncAccepted, SyncJob, SyncRequest, errors
from pipeline import services
from pipeline.backends import UNAVAILABLE
from pipeline.errors import JSyncError
from pipeline.ids import JOB_ID
from pipeline.reconcile import jobs
from pipeline.reconcile.jira import project_clause
from pipeline.reconcile.jobs import JobRecord
from pipeline.settings import get_settings

router = APIRouter(prefix="/sync", tags=["sync"])
JobId = Annotated[str, Path(pattern=JOB_ID.pattern, max_length=64, examples=["sync-20261125T101500Z-1a2b3c4d"])]
_NOT_CONFIGURED = (
    "Reconcile has no Jira credentials: set JSYNC_JIRA_URL, JSYNC_JIRA_EMAIL and JSYNC_JIRA_TOKEN locally, or create "
    "the secret jsync/<stage>/jira (JSON with url, email and token) and deploy again."
)


@router.post(
    "",
    status_code=202,
    response_model=SyncAccepted,
    responses=errors(400, 401, 503),
    summary="Start a reconcile against Jira's REST API",
)
async def start_sync(request: SyncRequest | None = None) -> Any:
    request = request or SyncRequest()
    project, since_ms = _project(request.project), _since(request.since)
    if not get_settings().jira_configured:
        raise JSyncError(503, "jira_not_configured", _NOT_CONFIGURED)
    now = int(time.time() * 1000)
    job = jobs.new_job(jobs.new_job_id(now), "api", project, since_ms, now)
    return await run_in_threadpool(_enqueue, job)


@router.get(
    "/{job_id}", response_model=SyncJob, responses=errors(400, 401, 404), summary="A reconcile job's state and progress"
)
async def get_sync(job_id: JobId) -> Any:
    job = await run_in_threadpool(jobs.load, services.store(), job_id)
    if job is None:
        raise JSyncError(404, "job_not_found", f"No reconcile job {job_id}; POST /api/v1/sync starts one.")
    return jobs.public(job)


def _enqueue(job: JobRecord) -> dict[str, str]:
    try:
        jobs.create(services.store(), job)
        services.queues().send_sync({"job_id": job.job_id, "step": 0})
    except UNAVAILABLE:
        raise JSyncError(503, "queue_unavailable", "The reconcile job could not be queued; try again.") from None
    return {"job_id": job.job_id, "state": job.state}


def _project(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        project_clause(value)
    except ValueError:
        raise JSyncError(
            400, "invalid_project", "project must be a Jira project key: uppercase letters, digits and _."
        ) from None
    return value


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise JSyncError(400, "invalid_since", f"since {value!r} is not an ISO-8601 time.") from None
    if moment.tzinfo is None:
        # Jira reads bare dates in the caller's own zone; refusing them avoids a silent hours-wide gap.
        raise JSyncError(400, "invalid_since", "since needs a time zone, e.g. 2026-11-01T00:00:00Z.")
    return int(moment.timestamp() * 1000)
