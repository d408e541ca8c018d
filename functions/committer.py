"""A bell (or the schedule's) -> drain the commits queue: everything ready, one commit per change, one push per
batch of up to a thousand -> the bells are done, whatever git said: the changes wait on their own queue."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger

from pipeline import fields, services
from pipeline.events_out import events_for
from pipeline.git.commits import commit_batch, commit_fields
from pipeline.git.drain import Bounds, drain
from pipeline.git.store import PushRejected, RemoteUnavailable
from pipeline.messages import Change
from pipeline.metrics import metered
from pipeline.settings import get_settings

logger = Logger(service="jsync-committer")
_MARGIN_SECONDS = 30  # stop starting batches this long before Lambda's timeout: a batch and its push fit in it


@metered(logger.service)
def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    settings = get_settings()
    deadline = time.monotonic() + _remaining_seconds(context) - _MARGIN_SECONDS
    try:
        git = services.git_store()
        # Ask the remote first: while it is down, changes stay queued, untouched, and use up none of their receives.
        git.fetch()
        catalogue = fields.load(services.store())
        commit_fields(git, catalogue, time.time())
        names = fields.names_in(catalogue)
        result = drain(
            services.queue_bus(),
            settings.commits_queue,
            lambda changes: commit_batch(changes, git, services.git_records(), _document, names),
            Bounds(settings.commit_batch_changes, settings.commit_batch_seconds, settings.commit_visibility_seconds),
            lambda: deadline - time.monotonic(),
            # Before the delete: a committer that dies in between finds the changes in git and publishes nothing twice.
            lambda changes, done: services.publisher().publish(events_for(changes, done, names, time.time())),
        )
        services.publisher().publish([])  # events an earlier run could not publish, when no batch carried them
    except RemoteUnavailable as exc:
        logger.exception("git remote unavailable; the changes wait on the commits queue")
        _record_push_failure(f"RemoteUnavailable: {exc}")
        services.forget_git()
        return _done()
    except PushRejected as exc:
        logger.exception("the branch kept moving under every push; the changes will be retried")
        _record_push_failure(f"PushRejected: {exc}")
        return _done()
    except Exception:
        # What the batch held comes back when its visibility timeout ends; anything it pushed is then recognised.
        logger.exception("batch not finished; its changes come back after their visibility timeout")
        return _done()
    logger.info(
        "drained",
        extra={"pushes": result.pushes, "commits": result.commits, "skipped": result.skipped, "left": result.left},
    )
    _record_push(git.tip.decode() if git.tip else None)
    return _done()


def _document(change: Change) -> Any:
    return json.loads(services.store().get_bytes(change.snapshot_key))["issue"]


def _remaining_seconds(context: Any) -> float:
    try:
        return float(context.get_remaining_time_in_millis()) / 1000
    except AttributeError:  # called without a Lambda context (a script, a test): a Lambda's worth
        return 120.0


def _done() -> dict[str, Any]:
    # The bells are spent either way: the schedule rings again, and a change never depends on its bell surviving.
    return {"batchItemFailures": []}


def _record_push(tip: str | None) -> None:
    try:
        services.push_log().pushed(tip, time.time())
    except Exception:  # the push stands; only health's view of it is late
        logger.warning("could not record the push for health", exc_info=True)


def _record_push_failure(error: str) -> None:
    try:
        services.push_log().failed(error, time.time(), secrets=(_token(),))
    except Exception:
        logger.warning("could not record the push failure for health", exc_info=True)


def _token() -> str | None:
    try:
        return get_settings().git_token
    except Exception:  # an unreadable token is not one that can leak
        return None
