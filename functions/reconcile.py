"""SQS batch from the sync queue (one message: a reconcile job to start or continue) -> run it until it ends or the
Lambda's time is nearly up -> queue the next step. The schedule puts `{"scheduled": true, "time": ...}` on the queue."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger

from pipeline import services
from pipeline.intake import enqueue_many
from pipeline.reconcile import jobs
from pipeline.reconcile.jira import JiraClient, JiraRateLimited
from pipeline.reconcile.reconciler import Reconciler
from pipeline.settings import SecretReadFailed, SecretUnavailable, get_settings

logger = Logger(service="jsync-reconcile")
_MARGIN_SECONDS = 120  # a page in hand may still need its reads and sends; then progress is saved, the next step queued
_LOCAL_BUDGET_SECONDS = 600  # the local stack has no deadline; steps stay Lambda-sized anyway
_MAX_VISIBILITY_SECONDS = 12 * 3600


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    failures: list[dict[str, str]] = []
    for record in event.get("Records", []):
        if failures:  # FIFO: nothing after a failed message may run before it
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        try:
            run_step(record, context)
        except Exception:
            logger.exception("reconcile step failed; it is retried from its saved progress")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def run_step(record: dict[str, Any], context: Any) -> None:
    message = json.loads(record["body"])
    settings, store = get_settings(), services.store()
    now = int(time.time() * 1000)
    if message.get("scheduled"):
        job_id = scheduled_job_id(message, record["messageId"])
        job = jobs.create(store, jobs.new_job(job_id, "schedule", None, None, now))
    else:
        loaded = jobs.load(store, str(message.get("job_id")))
        if loaded is None:
            logger.warning("no such reconcile job", extra={"job_id": message.get("job_id")})
            return
        job = loaded
        if int(message.get("step") or 0) < int(job.get("step") or 0):
            return  # a duplicate of a step already continued elsewhere
    if job["state"] in jobs.TERMINAL:
        return  # a late copy of a finished job's message: the record stays as the job ended
    try:
        credentials = settings.jira_credentials()
    except SecretReadFailed:
        raise  # Secrets Manager hiccuped: the step is retried, the job is not failed for it
    except SecretUnavailable as missing:
        job.update(state="failed", phase="done", finished_at=jobs.iso(now), message=str(missing))
        jobs.save(store, job)
        return
    jira = JiraClient(credentials.url, credentials.email, credentials.token)
    deadline = time.monotonic() + _LOCAL_BUDGET_SECONDS

    def out_of_time() -> bool:
        # Asked after every page, so a deadline that moves closer (the local stack stopping) is seen in time.
        if context is not None:
            return bool(context.get_remaining_time_in_millis() < _MARGIN_SECONDS * 1000)
        return time.monotonic() > deadline

    queues = services.queues()
    reconciler = Reconciler(
        store,
        jira,
        lambda outgoing: enqueue_many(outgoing, queues, store),
        lambda: int(time.time() * 1000),
        settings.sync_lookback_minutes,
    )
    try:
        done = reconciler.run(job, out_of_time)
    except JiraRateLimited as limited:
        logger.warning("Jira rate limit outlasted our retries", extra={"job_id": job["job_id"]})
        _retry_later(record, limited.retry_after)
        raise
    logger.info("reconcile step", extra={k: job[k] for k in ("job_id", "state", "phase", "changes_fed")})
    if not done:
        # The next step is queued before it is recorded. The other way round, a failed send left the job at a step
        # this message's retry takes for a duplicate and drops: `running` for good, with nothing to carry it on.
        # This way a retry runs this step again (its progress is saved) and sends the same body, deduplicated.
        following = int(job.get("step") or 0) + 1
        queues.send_sync({"job_id": job["job_id"], "step": following})
        job["step"] = following
        jobs.save(store, job)


def scheduled_job_id(message: dict[str, Any], message_id: str) -> str:
    """The schedule's event time names its job (`scheduled-20261125T030000Z`): a redelivered or redriven message
    resumes that job instead of starting another. Without a time, the SQS message id, which redelivery keeps."""
    stamp = "".join(c for c in str(message.get("time") or "") if c.isalnum())[:20]
    return f"scheduled-{stamp}" if stamp else "scheduled-" + "".join(c for c in message_id if c.isalnum())[:50]


def _retry_later(record: dict[str, Any], seconds: float | None) -> None:
    """Come back when Jira said to, not after the queue's long visibility timeout."""
    receipt, source = record.get("receiptHandle"), record.get("eventSourceARN", "")
    if not receipt or not source:
        return
    # SQS refuses more than 12 hours, and the call's error would hide the rate limit it is about.
    wait = int(min(_MAX_VISIBILITY_SECONDS, max(30, seconds or 60)))
    services.queue_bus().change_visibility(source.rsplit(":", 1)[-1], receipt, wait)
