"""Function URL (payload v2) -> check the webhook -> queue it -> 202. Imports no fastapi, pydantic or dulwich."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from typing import Any

from pipeline import services
from pipeline.errors import WebhookRejected
from pipeline.intake import accept
from pipeline.metrics import count, metered
from pipeline.refusals import RefusalCounter, log_refusal
from pipeline.settings import SecretUnavailable, get_settings

# This instance's refusals per minute; written to S3 only on the refusing path, so accepting costs nothing more.
refusals = RefusalCounter()


# Metrics written by hand, not by Powertools: its import would cost every cold start more than ingest's own work.
@metered("jsync-ingest", powertools=False)
def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    method = event.get("requestContext", {}).get("http", {}).get("method", "POST")
    if method != "POST":
        return _respond(
            405,
            {"error": "method_not_allowed", "detail": f"{method} is not allowed; POST the webhook."},
            {"Allow": "POST"},
        )
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        accepted = accept(body, headers, get_settings(), services.queues(), services.store())
    except WebhookRejected as rejected:
        _note_refusal(rejected, headers, len(body))
        return _respond(rejected.status, rejected.body())
    except SecretUnavailable:
        # 503, so Jira retries once the secret is in place; the log names the secret.
        logging.getLogger(__name__).exception("webhook secret unavailable")
        return _respond(
            503, {"error": "misconfigured", "detail": "Ingest cannot read its webhook secret; retry later."}
        )
    count("EventsAccepted")
    return _respond(202, accepted.body())


def _note_refusal(rejected: WebhookRejected, headers: dict[str, str], size: int) -> None:
    """A refused delivery leaves a log line, a metric and a count health sees: Jira does not retry a 4xx."""
    now = time.time()
    reason = log_refusal(rejected.status, rejected.code, headers, size, os.environ.get("JSYNC_STAGE", "local"), now)
    if reason:
        # A dimension of its own line (pipeline/metrics.py): one delivery an invocation, so it never spreads.
        count("EventsRefused", dimensions={"reason": reason})
        refusals.refused(reason, services.store(), now)


def _respond(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }
