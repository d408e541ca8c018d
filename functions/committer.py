"""SQS batch from the commits queue -> commits on the git branch, one push per batch -> partial-batch response."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger

from pipeline import services
from pipeline.commits import commit_batch
from pipeline.gitstore import PushRejected, RemoteUnavailable
from pipeline.messages import Change
from pipeline.settings import get_settings

logger = Logger(service="jsync-committer")


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    records = event.get("Records") or []
    changes: list[Change] = []
    for record in records:
        try:
            changes.append(Change.from_json(record["body"]))
        except (KeyError, TypeError, ValueError):
            logger.error(
                "unreadable change; it and the rest of the batch wait for retry",
                extra={"message_id": record.get("messageId")},
            )
            break
    try:
        git = services.git_store()
        reaches_remote = not git.fetched  # a batch of replays alone never talks to the remote: nothing to report
        result = commit_batch(changes, git, services.git_records(), _document)
    except RemoteUnavailable as exc:
        # Nothing of the batch reached the remote: all of it goes back to the queue.
        logger.exception("git remote unavailable; the batch will be retried")
        _record_push_failure(f"RemoteUnavailable: {exc}")
        services.forget_git()
        return _failures(records)
    except PushRejected as exc:
        logger.exception("the branch kept moving under every push; the batch will be retried")
        _record_push_failure(f"PushRejected: {exc}")
        return _failures(records)
    except Exception:
        logger.exception("batch not committed; it will be retried")
        return _failures(records)
    logger.info("committed", extra={"commits": len(result.commits), "skipped": len(result.skipped)})
    if reaches_remote or result.commits:
        _record_push(git.tip.decode() if git.tip else None)
    return _failures(records[result.processed :])


def _document(change: Change) -> Any:
    return json.loads(services.store().get_bytes(change.snapshot_key))["issue"]


def _failures(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}


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
