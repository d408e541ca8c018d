"""Builders for what crosses JSync's edges in tests: real-shaped Lambda events, queued webhooks, changes, and the
Jira payloads under `tests/fixtures/`. Tests import these; `conftest.py` holds only fixtures."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from botocore.stub import Stubber

from pipeline.ids import Order
from pipeline.messages import Change, QueuedEvent
from pipeline.settings import Settings
from pipeline.store import raw_key

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(name))


def summary_edit(issue_id: int, key: str, version: int, changelog_id: int) -> bytes:
    """Version `version` of an issue as Jira sends an `issue_updated` webhook: each version a second later, with a
    new summary and the changelog entry that says so, so every version is a change."""
    payload = fixture_json("issue_updated.json")
    payload["timestamp"] = 1764000000000 + version * 1000
    payload["issue"]["id"] = str(issue_id)
    payload["issue"]["key"] = key
    payload["issue"]["fields"]["summary"] = f"{key} version {version}"
    item = {"field": "summary", "fieldtype": "jira", "fieldId": "summary", "from": None, "to": None}
    was = f"{key} version {version - 1}"
    payload["changelog"] = {
        "id": str(changelog_id),
        "items": [{**item, "fromString": was, "toString": f"{key} version {version}"}],
    }
    return json.dumps(payload).encode()


def function_url_event(
    body: bytes,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/webhook",
    query: str = "",
) -> dict[str, Any]:
    """A Lambda Function URL (payload 2.0) event, as AWS delivers it; `query` is the raw query string."""
    now = time.time()
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "host": "abc.lambda-url.us-east-1.on.aws",
            "user-agent": "Atlassian Webhook HTTP Client",
            **lowered,
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "x",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
    if query:  # AWS leaves the parsed parameters out when there are none
        event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True))
    return event


ACCOUNT = "123456789012"
_sequence = iter(range(18_000_000_000_000_000_000, 19_000_000_000_000_000_000))


def queued_event(event_id: str, body: bytes, content_type: str = "application/json") -> QueuedEvent:
    """A webhook as ingest would have queued it (raw body inline)."""
    received_ms = int(time.time() * 1000)
    return QueuedEvent(event_id, received_ms, content_type, raw_key(event_id, received_ms, "json"), body)


def sqs_record(settings: Settings, body: str, group: str, message_id: str | None = None) -> dict[str, Any]:
    """One record of a Lambda SQS FIFO event, as the event source mapping delivers it."""
    message_id = message_id or str(uuid.uuid4())
    now = str(int(time.time() * 1000))
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{hashlib.sha256(message_id.encode()).hexdigest()}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": now,
            "SenderId": "AROAEXAMPLE:jsync-ingest",
            "ApproximateFirstReceiveTimestamp": now,
            "SequenceNumber": str(next(_sequence)),
            "MessageGroupId": group,
            "MessageDeduplicationId": hashlib.sha256(body.encode()).hexdigest(),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{settings.region}:{ACCOUNT}:{settings.events_queue}",
        "awsRegion": settings.region,
    }


def event_record(settings: Settings, event: QueuedEvent, group: str) -> dict[str, Any]:
    return sqs_record(settings, event.to_json(), group)


def sqs_batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def issue_document(issue_id: str, key: str) -> dict[str, Any]:
    return {"id": issue_id, "key": key, "fields": {"summary": f"issue {issue_id}", "project": {"key": "BIG"}}}


def change_of(issue_id: str, event_id: str, n: int, document: Any = "inline") -> Change:
    """Change `n` of issue `issue_id` (in project BIG), its document inline unless `document` says otherwise."""
    key = f"BIG-{issue_id}"
    return Change(
        issue_id=issue_id,
        key=key,
        previous_key=None,
        event_id=event_id,
        event_name="jira:issue_updated",
        order=Order(1764000000000 + n * 1000, n + 1, event_id),
        actor={"displayName": "Ada", "accountId": "ada"},
        subject=f"update {n}",
        changes=[{"field": "summary", "from": None, "to": f"v{n}"}],
        deleted=False,
        snapshot_key=f"snapshots/{issue_id}/{1764000000000 + n * 1000}-{event_id}.json",
        document={**issue_document(issue_id, key), "fields": {"summary": f"v{n}"}} if document == "inline" else None,
    )


def stub_depth(stubber: Stubber, url: str, waiting: int) -> None:
    """SQS's answer, through botocore's Stubber, when asked how many messages wait on `url`."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {names[0]: str(waiting), names[1]: "0"}},
        {"QueueUrl": url, "AttributeNames": names},
    )


def json_safe(value: Any) -> bool:
    """Whether `value` has a strict JSON form (no NaN or infinity), so it can be read back from JSON."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True
