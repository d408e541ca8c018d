"""SQS batch from the commits queue -> commits on the git branch, one push per batch -> partial-batch response."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from pipeline import services
from pipeline.commits import commit_batch
from pipeline.gitstore import RemoteUnavailable
from pipeline.messages import Change

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
        result = commit_batch(changes, services.git_store(), services.git_records(), _document)
    except RemoteUnavailable:
        # Nothing of the batch reached the remote: all of it goes back to the queue.
        logger.exception("git remote unavailable; the batch will be retried")
        services.forget_git()
        return _failures(records)
    except Exception:
        logger.exception("batch not committed; it will be retried")
        return _failures(records)
    logger.info("committed", extra={"commits": len(result.commits), "skipped": len(result.skipped)})
    return _failures(records[result.processed :])


def _document(change: Change) -> Any:
    return json.loads(services.store().get_bytes(change.snapshot_key))["issue"]


def _failures(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}
