"""SQS batch from the sync queue (one message: a reconcile job to start or continue) -> run it until it ends or the
Lambda's time is nearly up -> queue the next step. The schedule puts `{"scheduled": true, "time": ...}` on the queue."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger

from pipeline import services
from pipeline.metrics import count, metered
from pipeline.reconcile import step
from pipeline.reconcile.jira import JiraRateLimited
from pipeline.settings import get_settings

logger = Logger(service="jsync-reconcile")
_MAX_VISIBILITY_SECONDS = 12 * 3600


@metered(logger.service)
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
    try:
        job = step.job_for(message, record["messageId"], store, int(time.time() * 1000))
    except step.NoSuchJob as missing:
        logger.warning("no such reconcile job", extra={"job_id": missing.job_id})
        return
    if job is None:
        return
    out_of_time = step.deadline(context.get_remaining_time_in_millis if context is not None else None)
    scanned = job.issues_scanned
    try:
        ran = step.run(job, store, services.queues(), settings, out_of_time)
    except JiraRateLimited as limited:
        logger.warning("Jira rate limit outlasted our retries", extra={"job_id": job.job_id})
        _retry_later(record, limited.retry_after)
        raise
    finally:
        count("ReconcileIssues", job.issues_scanned - scanned)
    if ran:
        logger.info(
            "reconcile step",
            extra={"job_id": job.job_id, "state": job.state, "phase": job.phase, "changes_fed": job.changes_fed},
        )


def _retry_later(record: dict[str, Any], seconds: float | None) -> None:
    """Come back when Jira said to, not after the queue's long visibility timeout."""
    receipt, source = record.get("receiptHandle"), record.get("eventSourceARN", "")
    if not receipt or not source:
        return
    # SQS refuses more than 12 hours, and the call's error would hide the rate limit it is about.
    wait = int(min(_MAX_VISIBILITY_SECONDS, max(30, seconds or 60)))
    services.queue_bus().change_visibility(source.rsplit(":", 1)[-1], receipt, wait)
