"""One step of a job as a sync-queue message asks for it: which job, read as whom, run until its time is nearly up,
its next step queued."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline.intake import enqueue_many
from pipeline.queues import Queues
from pipeline.reconcile import jobs
from pipeline.reconcile.jira import JiraClient
from pipeline.reconcile.jobs import JobRecord
from pipeline.reconcile.reconciler import Reconciler
from pipeline.settings import SecretReadFailed, SecretUnavailable, Settings
from pipeline.store import Store

MARGIN_SECONDS = 120  # a page in hand may still need its reads and sends; then progress is saved, the next step queued
LOCAL_BUDGET_SECONDS = 600  # the local stack has no deadline; steps stay Lambda-sized anyway


class NoSuchJob(Exception):
    """The message names a job no record holds."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no reconcile job {job_id}")
        self.job_id = job_id


def job_for(message: dict[str, Any], message_id: str, store: Store, now_ms: int) -> JobRecord | None:
    """The job the message asks to start or continue; None when there is nothing to do. Raises NoSuchJob."""
    if message.get("scheduled"):
        job = jobs.create(store, jobs.new_job(scheduled_job_id(message, message_id), "schedule", None, None, now_ms))
    else:
        loaded = jobs.load(store, str(message.get("job_id")))
        if loaded is None:
            raise NoSuchJob(str(message.get("job_id")))
        job = loaded
        if int(message.get("step") or 0) < job.step:
            return None  # a duplicate of a step already continued elsewhere
    if job.state in jobs.TERMINAL:
        return None  # a late copy of a finished job's message: the record stays as the job ended
    return job


def scheduled_job_id(message: dict[str, Any], message_id: str) -> str:
    """The schedule's event time names its job (`scheduled-20261125T030000Z`): a redelivered or redriven message
    resumes that job instead of starting another. Without a time, the SQS message id, which redelivery keeps."""
    stamp = "".join(c for c in str(message.get("time") or "") if c.isalnum())[:20]
    return f"scheduled-{stamp}" if stamp else "scheduled-" + "".join(c for c in message_id if c.isalnum())[:50]


def deadline(remaining_ms: Callable[[], int] | None) -> Callable[[], bool]:
    """Whether the step should stop: within the margin of the Lambda's end, or past the local budget."""
    if remaining_ms is not None:
        # Asked after every page, so a deadline that moves closer (the local stack stopping) is seen in time.
        return lambda: remaining_ms() < MARGIN_SECONDS * 1000
    local_end = time.monotonic() + LOCAL_BUDGET_SECONDS
    return lambda: time.monotonic() > local_end


def run(job: JobRecord, store: Store, queues: Queues, settings: Settings, out_of_time: Callable[[], bool]) -> bool:
    """Run the job for one step, then queue the next unless it ended. False if it could not run: without Jira
    credentials the job fails (Secrets Manager failing to answer raises instead, and the step is retried)."""
    try:
        credentials = settings.jira_credentials()
    except SecretReadFailed:
        raise
    except SecretUnavailable as missing:
        job.state, job.phase, job.finished_at, job.message = "failed", "done", jobs.iso(_now_ms()), str(missing)
        jobs.save(store, job)
        return False
    jira = JiraClient(credentials.url, credentials.email, credentials.token)
    reconciler = Reconciler(
        store,
        jira,
        lambda outgoing: enqueue_many(outgoing, queues, store),
        _now_ms,
        settings.sync_lookback_minutes,
        queues.send_copies,
    )
    ended = reconciler.run(job, out_of_time)
    if reconciler.fields_changed:
        queues.ring()  # the committer commits `fields.json` when it next runs: now, not at the next schedule
    if not ended:
        # The next step is queued before it is recorded. The other way round, a failed send left the job at a step
        # this message's retry takes for a duplicate and drops: `running` for good, with nothing to carry it on.
        # This way a retry runs this step again (its progress is saved) and sends the same body, deduplicated.
        following = job.step + 1
        queues.send_sync({"job_id": job.job_id, "step": following})
        job.step = following
        jobs.save(store, job)
    return True


def _now_ms() -> int:
    return int(time.time() * 1000)
