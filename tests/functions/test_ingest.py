"""The ingest Lambda (functions/ingest.py) against contract §2, §3 and §5, through the real handler.

Every status in §2 is driven through `lambda_handler` with a real-shaped Function URL v2 event, and
what was (or was not) queued is checked on the moto-backed FIFO queue itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from functions import ingest
from local.stack import free_port
from pipeline import services
from pipeline.messages import QueuedEvent
from pipeline.settings import MAX_INLINE_MESSAGE_BYTES, MAX_WEBHOOK_BYTES, Settings
from pipeline.signature import sign
from tests.builders import fixture_bytes, fixture_json, function_url_event
from tests.environments import deploy_secret
from tests.harness import Pipeline, receive_all

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t"
_CODE = re.compile(r"^[a-z][a-z0-9_]{2,40}$")


# --- helpers -------------------------------------------------------------------------------------


def _events_url(settings: Settings) -> str:
    return services.aws("sqs").get_queue_url(QueueName=settings.events_queue)["QueueUrl"]


def _only_message(settings: Settings, release: bool = False) -> dict[str, Any]:
    """The one message on the events queue, with its system attributes; `release` makes it visible again."""
    url = _events_url(settings)
    messages = receive_all(url, visibility=30)
    if release:
        for m in messages:
            services.aws("sqs").change_message_visibility(
                QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
    assert len(messages) == 1, [m["Attributes"] for m in messages]
    return messages[0]


def _assert_error(response: dict[str, Any], status: int, code: str | None = None) -> dict[str, Any]:
    assert response["statusCode"] == status, response
    assert response["headers"]["content-type"] == "application/json"
    body = json.loads(response["body"])
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and _CODE.match(body["error"]), body
    if code is not None:
        assert body["error"] == code, body
    detail = body["detail"]
    assert isinstance(detail, str) and len(detail) > 10, body
    assert "\n" not in detail and detail.endswith("."), body
    return body


def _issue_with_description(description: str) -> bytes:
    doc = fixture_json("issue_created.json")
    doc["issue"]["fields"]["description"] = description
    return json.dumps(doc).encode("utf-8")


def _utc_days(before: float, after: float) -> set[str]:
    return {time.strftime("%Y/%m/%d", time.gmtime(t)) for t in (before, after)}


def _raw_day(key: str) -> str:
    match = re.match(r"^raw/(\d{4}/\d{2}/\d{2})/", key)
    assert match, key
    return match.group(1)


# --- 202: queued -----------------------------------------------------------------------------------


def test_issue_event_is_queued_with_issue_group_and_identifier_dedup_id(pipeline: Pipeline, settings: Settings) -> None:
    body = fixture_bytes("issue_created.json")
    r = pipeline.deliver(body, identifier="d-7f3a")
    assert r["statusCode"] == 202, r
    assert r["headers"]["content-type"] == "application/json"
    assert r["json"] == {"status": "queued", "issue_key": "OPS-17", "event_id": "d-7f3a"}

    message = _only_message(settings)
    attrs = message["Attributes"]
    assert attrs["MessageGroupId"] == "10042"
    assert attrs["MessageDeduplicationId"] == "d-7f3a"
    queued = QueuedEvent.from_json(message["Body"])
    assert queued.event_id == "d-7f3a"
    assert queued.content_type == "application/json"
    assert queued.body == body  # small bodies travel inline, byte for byte
    assert queued.raw_key.startswith("raw/") and queued.raw_key.endswith("/d-7f3a.json")


def test_without_identifier_event_id_is_sha256_of_body(pipeline: Pipeline, settings: Settings) -> None:
    body = fixture_bytes("issue_created.json")
    r = pipeline.deliver(body)
    expected = hashlib.sha256(body).hexdigest()
    assert r["statusCode"] == 202, r
    assert r["json"] == {"status": "queued", "issue_key": "OPS-17", "event_id": expected}
    attrs = _only_message(settings)["Attributes"]
    assert attrs["MessageGroupId"] == "10042"
    assert attrs["MessageDeduplicationId"] == expected


def test_same_identifier_twice_is_one_event(pipeline: Pipeline) -> None:
    body = fixture_bytes("issue_created.json")
    first = pipeline.deliver(body, identifier="dup-1")
    second = pipeline.deliver(body, identifier="dup-1")
    assert first["statusCode"] == second["statusCode"] == 202
    assert first["json"]["event_id"] == second["json"]["event_id"] == "dup-1"
    assert pipeline.depth() == 1  # FIFO dedup on the identifier

    pipeline.drain()
    snapshots = pipeline.keys("snapshots/10042/")
    assert len(snapshots) == 1, snapshots
    assert snapshots[0].endswith("-dup-1.json")
    assert len(pipeline.commits()) == 1
    assert pipeline.latest("10042")["capture"]["event_id"] == "dup-1"


def test_unsafe_identifier_yields_a_stable_safe_event_id(pipeline: Pipeline) -> None:
    body = fixture_bytes("issue_created.json")
    identifier = "abc/def ghi?x=1"
    first = pipeline.deliver(body, identifier=identifier)
    second = pipeline.deliver(body, identifier=identifier)
    assert first["statusCode"] == second["statusCode"] == 202, (first, second)
    event_id = first["json"]["event_id"]
    assert event_id == second["json"]["event_id"]
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,100}", event_id), event_id
    pipeline.drain()
    assert len(pipeline.keys("snapshots/10042/")) == 1
    assert len(pipeline.commits()) == 1


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml", "text/xml; charset=utf-8"])
def test_xml_payload_is_queued_and_stored_raw_as_xml(pipeline: Pipeline, settings: Settings, content_type: str) -> None:
    body = fixture_bytes("issue_created.xml")
    before = time.time()
    r = pipeline.deliver(body, identifier="x-1", content_type=content_type)
    after = time.time()
    assert r["statusCode"] == 202, r
    assert r["json"] == {"status": "queued", "issue_key": "OPS-19", "event_id": "x-1"}
    attrs = _only_message(settings, release=True)["Attributes"]
    assert attrs["MessageGroupId"] == "10060"
    assert attrs["MessageDeduplicationId"] == "x-1"

    pipeline.drain()
    raw = pipeline.keys("raw/")
    assert len(raw) == 1, raw
    assert re.fullmatch(r"raw/\d{4}/\d{2}/\d{2}/x-1\.xml", raw[0]), raw
    assert _raw_day(raw[0]) in _utc_days(before, after)
    assert services.store().get_bytes(raw[0]) == body  # as received
    assert pipeline.keys("latest/") == ["latest/10060.json"]
    assert pipeline.latest("10060")["issue"]["key"] == "OPS-19"


@pytest.mark.parametrize(
    ("fixture", "group", "identifier"),
    [("project_created.json", "project-10002", "p-1"), ("sprint_started.json", "sprint-37", "s-1")],
)
def test_non_issue_event_is_accepted_and_kept_raw_only(
    pipeline: Pipeline, settings: Settings, fixture: str, group: str, identifier: str
) -> None:
    body = fixture_bytes(fixture)
    before = time.time()
    r = pipeline.deliver(body, identifier=identifier)
    after = time.time()
    assert r["statusCode"] == 202, r
    assert r["json"] == {"status": "queued", "issue_key": None, "event_id": identifier}
    attrs = _only_message(settings, release=True)["Attributes"]
    assert attrs["MessageGroupId"] == group
    assert attrs["MessageDeduplicationId"] == identifier

    pipeline.drain()
    raw = pipeline.keys("raw/")
    assert len(raw) == 1 and raw[0].endswith(f"/{identifier}.json"), raw
    assert _raw_day(raw[0]) in _utc_days(before, after)
    assert services.store().get_bytes(raw[0]) == body
    assert pipeline.keys("snapshots/") == []
    assert pipeline.keys("latest/") == []
    assert pipeline.commits() == []


# --- 400: not a Jira webhook ---------------------------------------------------------------------

_ISSUE_WITHOUT_ID = fixture_json("issue_created.json")
del _ISSUE_WITHOUT_ID["issue"]["id"]
_ISSUE_WITH_TEXT_ID = fixture_json("issue_created.json")
_ISSUE_WITH_TEXT_ID["issue"]["id"] = "OPS-17"
_NO_WEBHOOK_EVENT = fixture_json("issue_created.json")
del _NO_WEBHOOK_EVENT["webhookEvent"]
_XML_WITH_DOCTYPE = fixture_bytes("issue_created.xml").replace(
    b'<?xml version="1.0" encoding="UTF-8"?>\n', b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE webhook>\n'
)
_XML_WITH_EXTERNAL_ENTITY = (
    fixture_bytes("issue_created.xml")
    .replace(
        b'<?xml version="1.0" encoding="UTF-8"?>\n',
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE webhook [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n',
    )
    .replace(b"<summary>Renew staging DNS records</summary>", b"<summary>&xxe;</summary>")
)

BAD_BODIES = [
    pytest.param(b'{"webhookEvent": "jira:issue_created", ', "application/json", "invalid_json", id="invalid-json"),
    pytest.param(b"\xff\xfe{}", "application/json", "invalid_json", id="not-utf8-json"),
    pytest.param(b"", "application/json", "invalid_json", id="empty-body"),
    pytest.param(b'[{"webhookEvent": "jira:issue_created"}]', "application/json", "not_a_webhook", id="json-array"),
    pytest.param(json.dumps(_NO_WEBHOOK_EVENT).encode(), "application/json", "not_a_webhook", id="no-webhookEvent"),
    pytest.param(json.dumps(_ISSUE_WITHOUT_ID).encode(), "application/json", "missing_issue_id", id="no-issue-id"),
    pytest.param(
        json.dumps(_ISSUE_WITH_TEXT_ID).encode(), "application/json", "missing_issue_id", id="non-numeric-issue-id"
    ),
    pytest.param(
        json.dumps({"webhookEvent": "comment_created", "timestamp": 1, "comment": {"id": "1"}}).encode(),
        "application/json",
        "missing_issue_id",
        id="comment-without-issue",
    ),
    pytest.param(
        b"<webhook><webhookEvent>jira:issue_created</webhook>", "application/xml", "invalid_xml", id="bad-xml"
    ),
    pytest.param(_XML_WITH_DOCTYPE, "application/xml", "invalid_xml", id="xml-doctype"),
    pytest.param(_XML_WITH_EXTERNAL_ENTITY, "text/xml", "invalid_xml", id="xml-external-entity"),
    pytest.param(fixture_bytes("billion_laughs.xml"), "application/xml", "invalid_xml", id="billion-laughs"),
    pytest.param(
        fixture_bytes("billion_laughs.xml").decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
        "application/xml",
        "invalid_xml",
        id="billion-laughs-utf16",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "code"), BAD_BODIES)
def test_bad_body_is_400_and_nothing_is_queued(pipeline: Pipeline, body: bytes, content_type: str, code: str) -> None:
    result: dict[str, Any] = {}

    def call() -> None:
        result["response"] = pipeline.deliver(body, identifier="bad-1", content_type=content_type)

    worker = threading.Thread(target=call, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "ingest hung on a hostile body"
    assert time.monotonic() - started < 10
    assert "response" in result, "ingest raised instead of answering"
    _assert_error(result["response"], 400, code)
    assert pipeline.depth() == 0
    assert pipeline.keys("raw/") == []


# --- 401: signature --------------------------------------------------------------------------------


@pytest.fixture
def signed(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    monkeypatch.setenv("JSYNC_WEBHOOK_SECRET", SECRET)
    services.reset()  # also clears the cached settings
    assert services.get_settings().webhook_secret == SECRET
    return pipeline


def _assert_secret_not_leaked(response: dict[str, Any]) -> None:
    assert SECRET not in response["body"]
    assert SECRET not in json.dumps(response["headers"])


def test_missing_signature_is_401(signed: Pipeline) -> None:
    r = signed.deliver(fixture_bytes("issue_created.json"), identifier="sig-0")
    _assert_error(r, 401)
    _assert_secret_not_leaked(r)
    assert signed.depth() == 0


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(sign("not-the-secret", fixture_bytes("issue_created.json")), id="other-secret"),
        pytest.param(sign(SECRET, fixture_bytes("issue_updated.json")), id="other-body"),
        pytest.param(sign(SECRET, fixture_bytes("issue_created.json")).replace("sha256=", "sha1="), id="other-alg"),
        pytest.param(sign(SECRET, fixture_bytes("issue_created.json"))[:-2], id="truncated"),
        pytest.param("sha256=", id="empty-digest"),
        pytest.param(SECRET, id="the-secret-itself"),
    ],
)
def test_wrong_signature_is_401(signed: Pipeline, header: str) -> None:
    r = signed.deliver(fixture_bytes("issue_created.json"), identifier="sig-1", **{"x-hub-signature": header})
    _assert_error(r, 401)
    _assert_secret_not_leaked(r)
    assert signed.depth() == 0


def test_signature_is_checked_before_the_body_is_parsed(signed: Pipeline) -> None:
    r = signed.deliver(b"not json at all", identifier="sig-2")
    _assert_error(r, 401)
    _assert_secret_not_leaked(r)


def test_correct_signature_is_202_and_queued(signed: Pipeline, settings: Settings) -> None:
    body = fixture_bytes("issue_created.json")
    r = signed.deliver(body, identifier="sig-ok", **{"x-hub-signature": sign(SECRET, body)})
    assert r["statusCode"] == 202, r
    assert r["json"] == {"status": "queued", "issue_key": "OPS-17", "event_id": "sig-ok"}
    _assert_secret_not_leaked(r)
    attrs = _only_message(settings)["Attributes"]
    assert attrs["MessageGroupId"] == "10042"
    assert attrs["MessageDeduplicationId"] == "sig-ok"


def test_signature_header_is_case_insensitive_in_its_hex(signed: Pipeline) -> None:
    body = fixture_bytes("issue_created.json")
    header = "sha256=" + sign(SECRET, body).removeprefix("sha256=").upper()
    r = signed.deliver(body, identifier="sig-upper", **{"X-Hub-Signature": header})
    assert r["statusCode"] == 202, r


# --- 413 and large-but-allowed bodies ------------------------------------------------------------


def _padded_issue(size: int) -> bytes:
    """issue_created.json with its description padded so the body is exactly `size` bytes."""
    empty = _issue_with_description("")
    body = _issue_with_description("x" * (size - len(empty)))
    assert len(body) == size
    return body


def test_body_over_6_mib_is_413_and_nothing_is_queued(pipeline: Pipeline) -> None:
    assert MAX_WEBHOOK_BYTES == 6 * 1024 * 1024
    r = pipeline.deliver(_padded_issue(MAX_WEBHOOK_BYTES + 1), identifier="huge")
    body = _assert_error(r, 413)
    assert str(MAX_WEBHOOK_BYTES) in body["detail"]
    assert pipeline.depth() == 0
    assert pipeline.keys("raw/") == []


def test_body_of_exactly_6_mib_is_accepted(pipeline: Pipeline, settings: Settings) -> None:
    body = _padded_issue(MAX_WEBHOOK_BYTES)
    r = pipeline.deliver(body, identifier="at-limit")
    assert r["statusCode"] == 202, r
    queued = QueuedEvent.from_json(_only_message(settings)["Body"])
    assert queued.body is None
    assert services.store().get_bytes(queued.raw_key) == body


def test_large_body_is_queued_by_reference_to_raw_object(pipeline: Pipeline, settings: Settings) -> None:
    description = "Large description. " + "y" * (2 * 1024 * 1024)
    body = _issue_with_description(description)
    assert MAX_INLINE_MESSAGE_BYTES < len(body) < MAX_WEBHOOK_BYTES
    r = pipeline.deliver(body, identifier="big-1")
    assert r["statusCode"] == 202, r
    assert r["json"] == {"status": "queued", "issue_key": "OPS-17", "event_id": "big-1"}

    message = _only_message(settings, release=True)
    assert message["Attributes"]["MessageGroupId"] == "10042"
    assert message["Attributes"]["MessageDeduplicationId"] == "big-1"
    assert len(message["Body"].encode()) < 64 * 1024  # a reference, not the payload
    envelope = json.loads(message["Body"])
    assert "body" not in envelope and "body_b64" not in envelope, sorted(envelope)
    assert envelope["raw_key"].endswith("/big-1.json")
    # The raw object is in S3 before any writer ran.
    assert pipeline.keys("raw/") == [envelope["raw_key"]]
    assert services.store().get_bytes(envelope["raw_key"]) == body

    pipeline.drain()
    assert pipeline.latest("10042")["issue"]["fields"]["description"] == description
    commits = pipeline.commits()
    assert len(commits) == 1
    assert commits[0].subject.startswith("OPS-17")
    git_doc = json.loads(pipeline.git_file("issues/OPS/OPS-17.json"))
    assert git_doc["fields"]["description"] == description


@pytest.mark.parametrize(
    "char", [pytest.param('"', id="quotes"), pytest.param("\\", id="backslashes"), pytest.param("\n", id="newlines")]
)
def test_body_under_inline_limit_that_grows_when_enveloped_is_still_accepted(
    pipeline: Pipeline, settings: Settings, char: str
) -> None:
    """§2: a body larger than a queue message is kept in S3 and queued by reference, never refused.

    The inline decision must be about the message SQS receives, not the raw body: JSON-escaping
    quotes, backslashes or newlines in the envelope can push a sub-700 KiB body past SQS's 1 MiB.
    """
    empty = _issue_with_description("")
    escaped_width = len(json.dumps(char)) - 2  # bytes per char in the raw body
    description = char * ((MAX_INLINE_MESSAGE_BYTES - len(empty) - 1024) // escaped_width)
    body = _issue_with_description(description)
    assert len(body) <= MAX_INLINE_MESSAGE_BYTES
    r = pipeline.deliver(body, identifier=f"esc-{escaped_width}")
    assert r["statusCode"] == 202, r["json"]
    pipeline.drain()
    assert pipeline.latest("10042")["issue"]["fields"]["description"] == description
    assert len(pipeline.commits()) == 1


# --- 415 and 405 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_other_content_type_is_415(pipeline: Pipeline, content_type: str) -> None:
    r = pipeline.deliver(fixture_bytes("issue_created.json"), identifier="ct-1", content_type=content_type)
    _assert_error(r, 415)
    assert pipeline.depth() == 0


def test_missing_content_type_is_415(pipeline: Pipeline) -> None:
    event = function_url_event(fixture_bytes("issue_created.json"), {"x-atlassian-webhook-identifier": "ct-2"})
    assert "content-type" not in event["headers"]
    r = ingest.lambda_handler(event)
    _assert_error(r, 415)
    assert pipeline.depth() == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_other_method_is_405_with_allow(pipeline: Pipeline, method: str) -> None:
    event = function_url_event(fixture_bytes("issue_created.json"), {"content-type": "application/json"}, method=method)
    assert event["requestContext"]["http"]["method"] == method
    r = ingest.lambda_handler(event)
    _assert_error(r, 405)
    allow = {k.lower(): v for k, v in r["headers"].items()}.get("allow")
    assert allow == "POST"
    assert pipeline.depth() == 0


# --- 503: queue unavailable ------------------------------------------------------------------------


def test_deleted_events_queue_is_503_never_202(pipeline: Pipeline, settings: Settings) -> None:
    sqs = services.aws("sqs")
    sqs.delete_queue(QueueUrl=_events_url(settings))
    r = pipeline.deliver(fixture_bytes("issue_created.json"), identifier="q-1")
    _assert_error(r, 503, "queue_unavailable")
    assert pipeline.depth(settings.commits_queue) == 0
    # A large body goes to S3 first; still no 202 without the queue.
    r = pipeline.deliver(_issue_with_description("z" * (1024 * 1024)), identifier="q-2")
    _assert_error(r, 503, "queue_unavailable")


def test_queue_deleted_after_its_url_was_resolved_is_503(pipeline: Pipeline, settings: Settings) -> None:
    ok = pipeline.deliver(fixture_bytes("issue_created.json"), identifier="q-3")
    assert ok["statusCode"] == 202, ok
    services.aws("sqs").delete_queue(QueueUrl=_events_url(settings))
    r = pipeline.deliver(fixture_bytes("issue_updated.json"), identifier="q-4")
    _assert_error(r, 503, "queue_unavailable")


def test_unreachable_aws_is_503_and_nothing_queued(
    pipeline: Pipeline, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = settings.aws_endpoint_url
    assert endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    services.reset()
    started = time.monotonic()
    r = pipeline.deliver(fixture_bytes("issue_created.json"), identifier="down-1")
    assert time.monotonic() - started < 30
    _assert_error(r, 503, "queue_unavailable")
    big = pipeline.deliver(_issue_with_description("w" * (1024 * 1024)), identifier="down-2")
    _assert_error(big, 503)  # storage or queue: either way Jira retries

    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    services.reset()
    assert pipeline.depth() == 0
    assert pipeline.keys("raw/") == []


# --- Function URL body encodings -------------------------------------------------------------------


def test_base64_and_plain_bodies_are_the_same_delivery(pipeline: Pipeline, settings: Settings) -> None:
    doc = fixture_json("issue_created.json")
    doc["issue"]["fields"]["summary"] = "Café ☕ — résumé"
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    expected = hashlib.sha256(body).hexdigest()

    encoded = function_url_event(body, {"content-type": "application/json"})
    assert encoded["isBase64Encoded"] is True
    assert base64.b64decode(encoded["body"]) == body
    r1 = ingest.lambda_handler(encoded)
    assert r1["statusCode"] == 202, r1
    assert json.loads(r1["body"]) == {"status": "queued", "issue_key": "OPS-17", "event_id": expected}

    plain = function_url_event(body, {"content-type": "application/json; charset=utf-8"})
    plain["body"] = body.decode("utf-8")
    plain["isBase64Encoded"] = False
    r2 = ingest.lambda_handler(plain)
    assert r2["statusCode"] == 202, r2
    assert json.loads(r2["body"])["event_id"] == expected  # same bytes, same event

    message = _only_message(settings, release=True)
    assert QueuedEvent.from_json(message["Body"]).body == body
    pipeline.drain()
    assert pipeline.latest("10042")["issue"]["fields"]["summary"] == "Café ☕ — résumé"
    assert len(pipeline.commits()) == 1


def test_plain_text_body_alone_is_queued(pipeline: Pipeline, settings: Settings) -> None:
    body = fixture_bytes("sprint_started.json")
    event = function_url_event(body, {"content-type": "application/json", "x-atlassian-webhook-identifier": "pl-1"})
    event["body"] = body.decode("utf-8")
    event["isBase64Encoded"] = False
    r = ingest.lambda_handler(event)
    assert r["statusCode"] == 202, r
    assert json.loads(r["body"]) == {"status": "queued", "issue_key": None, "event_id": "pl-1"}
    assert _only_message(settings)["Attributes"]["MessageGroupId"] == "sprint-37"


# --- the Lambda stays light ------------------------------------------------------------------------


def test_ingest_imports_no_fastapi_pydantic_or_dulwich() -> None:
    script = (
        "import functions.ingest, sys, json; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'pydantic', 'dulwich'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


# --- refused deliveries are seen (issue 11) ---------------------------------------------------------------


def _captured_logs(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> tuple[str, list[dict]]:
    """Everything the handler printed or logged, and the JSON lines among what it printed."""
    out, err = capfd.readouterr()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return out + err + caplog.text, lines


def _refusal_counts(pipeline: Pipeline) -> dict[str, int]:
    totals: dict[str, int] = {}
    for key in pipeline.keys("ops/webhook/refused/"):
        for reason, n in json.loads(services.store().get_bytes(key))["refused"].items():
            totals[reason] = totals.get(reason, 0) + n
    return totals


def test_wrong_signature_is_logged_with_reason_id_and_size_never_body_signature_or_secret(
    signed: Pipeline, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    # Given Jira signs with another secret than JSync's
    body = _issue_with_description("BODY-MARKER-5e1d9 the delivery's own words")
    header = sign("a-secret-jira-holds", body)
    capfd.readouterr()
    # When it delivers
    r = signed.deliver(body, identifier="leak-1", **{"x-hub-signature": header})
    # Then it is refused, and one line says so: status, reason, delivery id, size
    _assert_error(r, 401, "signature_invalid")
    logged, lines = _captured_logs(capfd, caplog)
    [line] = [entry for entry in lines if entry.get("message") == "webhook refused"]
    assert line["status"] == 401 and line["reason"] == "signature" and line["error"] == "signature_invalid"
    assert line["delivery_id"] == "leak-1" and line["bytes"] == len(body)
    # as a CloudWatch metric too (embedded metric format): WebhookRefused by stage and reason
    metric = line["_aws"]["CloudWatchMetrics"][0]
    assert metric["Namespace"] == "JSync" and metric["Metrics"] == [{"Name": "WebhookRefused", "Unit": "Count"}]
    assert metric["Dimensions"] == [["stage", "reason"]] and line["WebhookRefused"] == 1 and line["stage"]
    # and nothing of the body, the signature or either secret is anywhere in what was printed or logged
    for secret in ("BODY-MARKER-5e1d9", header, header.removeprefix("sha256="), SECRET, "a-secret-jira-holds"):
        assert secret not in logged, secret


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"{not json", "application/json", 400, "shape"),
        (b'{"timestamp": 1}', "application/json", 400, "shape"),
        (b"{}", "text/plain", 415, "shape"),
    ],
    ids=["unparseable", "not-a-webhook", "media-type"],
)
def test_each_refusal_is_logged_and_counted_under_its_reason(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    body: bytes,
    content_type: str,
    status: int,
    reason: str,
) -> None:
    monkeypatch.setattr(ingest.refusals, "flush_seconds", 0.0)  # every refusal written, whatever the clock
    capfd.readouterr()
    r = pipeline.deliver(body, identifier="bad-1", content_type=content_type)
    _assert_error(r, status)
    [line] = [json.loads(x) for x in capfd.readouterr().out.splitlines() if '"webhook refused"' in x]
    assert (line["status"], line["reason"], line["delivery_id"], line["bytes"]) == (status, reason, "bad-1", len(body))
    assert body.decode() not in json.dumps({k: v for k, v in line.items() if k != "bytes"})
    assert _refusal_counts(pipeline) == {"signature": 0, "size": 0, "shape": 1}


def test_too_large_is_counted_as_size(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest.refusals, "flush_seconds", 0.0)
    _assert_error(pipeline.deliver(_padded_issue(MAX_WEBHOOK_BYTES + 1), identifier="huge-2"), 413)
    assert _refusal_counts(pipeline) == {"signature": 0, "size": 1, "shape": 0}


def test_accepted_and_unavailable_answers_are_not_counted(
    pipeline: Pipeline, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    assert pipeline.deliver(fixture_bytes("issue_created.json"), identifier="fine-1")["statusCode"] == 202
    sqs = services.aws("sqs")
    sqs.delete_queue(QueueUrl=_events_url(settings))
    services.reset()
    capfd.readouterr()
    r = pipeline.deliver(fixture_bytes("issue_updated.json"), identifier="later-1")
    _assert_error(r, 503)
    # A 503 is retried by Jira: logged, not counted as a refusal
    [line] = [json.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    assert line["status"] == 503 and line["reason"] is None and "_aws" not in line
    assert pipeline.keys("ops/webhook/refused/") == []


def test_a_store_that_fails_never_changes_the_answer(signed: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.store import Store

    def down(self: Store, key: str, data: dict) -> None:
        raise ConnectionError("S3 unavailable")

    monkeypatch.setattr(Store, "put_json", down)
    r = signed.deliver(fixture_bytes("issue_created.json"), identifier="s3-down", **{"x-hub-signature": "sha256=00"})
    _assert_error(r, 401)


# --- a body too large, and a secret that is not there ---------------------------------------------------------------


def test_a_body_too_large_that_names_no_issue_is_413_with_nothing_noted(pipeline: Pipeline) -> None:
    doc = fixture_json("project_created.json")
    doc["padding"] = "p" * MAX_WEBHOOK_BYTES
    r = pipeline.deliver(json.dumps(doc).encode(), identifier="huge-project")
    body = _assert_error(r, 413, "body_too_large")
    assert "reconcile" not in body["detail"]
    assert pipeline.depth() == 0
    assert pipeline.keys("sync/pending/") == []


def test_a_body_too_large_is_503_when_its_note_for_reconcile_cannot_be_kept(
    pipeline: Pipeline, settings: Settings
) -> None:
    # Given the bucket is gone (Jira never retries a 413, so the issue would be lost with it)
    services.aws("s3").delete_bucket(Bucket=settings.bucket)
    # When a body too large for the pipeline arrives
    r = pipeline.deliver(_padded_issue(MAX_WEBHOOK_BYTES + 1), identifier="huge-3")
    # Then the answer is a 503, which Jira retries, and nothing is queued
    _assert_error(r, 503, "storage_unavailable")
    assert pipeline.depth() == 0


def test_an_empty_webhook_secret_is_503_misconfigured_and_nothing_is_queued(
    pipeline: Pipeline, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the deployed secret exists but holds nothing (never to be taken as "no authentication")
    deploy_secret(monkeypatch, "JSYNC_WEBHOOK_SECRET_NAME", "jsync/webhook", "   ")
    # When a delivery arrives
    r = pipeline.deliver(fixture_bytes("issue_created.json"), identifier="nosecret-1")
    # Then it is refused with a 503, which Jira retries once the secret is set, and nothing is queued
    _assert_error(r, 503, "misconfigured")
    assert pipeline.depth() == 0
