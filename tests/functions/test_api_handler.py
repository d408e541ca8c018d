"""The read API Lambda (functions/api.py) against contract §4 and §6, through Mangum.

Each request is a Lambda Function URL (payload 2.0) event shaped as CloudFront delivers it through origin
access control: the Function URL's own host, the viewer's host in `x-forwarded-host`, CloudFront's `via` and
`x-amz-cf-id`, a SigV4 `authorization` from OAC, and no body on a GET. The data behind it is written by the
real pipeline: fixtures delivered through the ingest handler and drained through the writer and committer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from pipeline import services
from tests.builders import fixture_bytes, fixture_json, function_url_event
from tests.environments import deploy_secret
from tests.harness import Pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
CLOUDFRONT_HOST = "d111111abcdef8.cloudfront.net"
URL_ID = "abcdefghij0123456789klmnopqrstuv"
URL_HOST = f"{URL_ID}.lambda-url.us-east-1.on.aws"
ACCOUNT = "123456789012"
ISSUE_ID, KEY = "10042", "OPS-17"
STORY = [
    "issue_created.json",
    "issue_updated.json",
    "issue_updated_assignee.json",
    "comment_created.json",
    "worklog_created.json",
]
DELETED_AT = "2025-11-24T16:08:20"  # issue_deleted.json's timestamp, 1764000500000 ms


def cloudfront_event(
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: str | None = None,
) -> dict[str, Any]:
    """A Function URL v2 event for a viewer request CloudFront forwarded with AllViewerExceptHostHeader + OAC."""
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload_hash = hashlib.sha256((body or "").encode()).hexdigest()
    cloudfront_headers = {
        "host": URL_HOST,
        "x-forwarded-host": CLOUDFRONT_HOST,
        "via": "2.0 0f3c1e4b1a2d3c4e5f60718293a4b5c6.cloudfront.net (CloudFront)",
        "x-amz-cf-id": "y0bS1sTsCqMbtY3Dc4Mu8p1ezTgqfLNzXiFpCdhTTpCYIA1GzXKZ9Q==",
        "x-forwarded-for": "198.51.100.23, 15.158.41.7",
        "x-forwarded-proto": "https",
        "x-forwarded-port": "443",
        "x-amzn-trace-id": "Root=1-6743a1b2-0123456789abcdef01234567",
        "user-agent": "curl/8.5.0",
        "accept": "*/*",
        "accept-encoding": "gzip",
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
        "x-amz-source-account": ACCOUNT,
        "x-amz-source-arn": f"arn:aws:cloudfront::{ACCOUNT}:distribution/E2QWRUHAPOMQZL",
        "authorization": (
            f"AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/{amz_date[:8]}/us-east-1/lambda/aws4_request, "
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + "0" * 64
        ),
    }
    event = function_url_event(b"", {**cloudfront_headers, **(headers or {})}, method=method, path=path, query=query)
    # What the base event (a webhook called straight at the URL) lacks: the body as text, none at all on a GET,
    # this URL's own id and host, the identity OAC signed with, and CloudFront's edge as the caller.
    event.update(body=body, isBase64Encoded=False)
    event["requestContext"].update(
        accountId=ACCOUNT,
        apiId=URL_ID,
        domainName=URL_HOST,
        domainPrefix=URL_ID,
        authorizer={
            "iam": {
                "accessKey": "ASIAEXAMPLE",
                "accountId": ACCOUNT,
                "callerId": "AROAEXAMPLE:OriginAccessSession",
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/OriginAccessControlRole/OriginAccessSession",
                "userId": "AROAEXAMPLE:OriginAccessSession",
            }
        },
    )
    event["requestContext"]["http"].update(sourceIp="15.158.41.7", userAgent="curl/8.5.0")
    return event


class Answer:
    """What the Lambda returned, decoded the way the Function URL decodes it for CloudFront."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.status: int = raw["statusCode"]
        self.headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        body = raw.get("body") or ""
        self.body = base64.b64decode(body) if raw.get("isBase64Encoded") else body.encode()

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.headers} {self.body[:300]!r}>"


Call = Callable[..., Answer]


@pytest.fixture
def call(pipeline: Pipeline) -> Call:
    """Invoke functions.api.handler, imported once the pipeline's environment is in place."""
    from functions import api

    def invoke(
        path: str,
        query: dict[str, Any] | str = "",
        headers: dict[str, str] | None = None,
        method: str = "GET",
        body: str | None = None,
    ) -> Answer:
        raw_query = query if isinstance(query, str) else urlencode(query)
        return Answer(api.handler(cloudfront_event(path, raw_query, headers, method, body), None))

    return invoke


def deliver(pipeline: Pipeline, *names: str) -> None:
    for name in names:
        content_type = "application/xml" if name.endswith(".xml") else "application/json"
        response = pipeline.deliver(fixture_bytes(name), identifier=f"api-{name}", content_type=content_type)
        assert response["statusCode"] == 202, response
    pipeline.drain()


@pytest.fixture
def story(pipeline: Pipeline) -> Pipeline:
    """OPS-17's story up to its worklog, plus OPS-18 (ADF) and OPS-19 (XML), all captured."""
    deliver(pipeline, *STORY, "issue_created_adf.json", "issue_created.xml")
    return pipeline


def assert_error(answer: Answer, status: int, code: str | None = None) -> dict[str, str]:
    """Every error answer is JSON `{"error", "detail"}` (contract §2)."""
    assert answer.status == status, answer
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    body = answer.json()
    assert set(body) >= {"error", "detail"}, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    if code is not None:
        assert body["error"] == code, body
    return body


def listing_ids(call: Call, project: str) -> list[str]:
    answer = call(f"/api/v1/projects/{project}/issues")
    assert answer.status == 200, answer
    assert answer.json()["next_cursor"] is None
    return [item["id"] for item in answer.json()["items"]]


# --- the module itself -------------------------------------------------------------------------------


def test_functions_api_imports_in_a_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JSYNC_", "AWS_"))}
    env.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    probe = (
        "import functions.api as m, mangum; "
        "assert isinstance(m.handler, mangum.Mangum), type(m.handler); "
        "assert m.handler.lifespan == 'off', m.handler.lifespan; "
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- an issue, its ETag and its history --------------------------------------------------------------


def test_issue_by_key_is_the_latest_document_with_etag_and_cache_control(story: Pipeline, call: Call) -> None:
    answer = call(f"/api/v1/issues/{KEY}")
    assert answer.status == 200, answer
    assert answer.raw.get("isBase64Encoded") is False, "JSON must reach CloudFront as text"
    assert answer.headers["content-type"].startswith("application/json")
    doc = answer.json()
    assert doc == story.latest(ISSUE_ID)["issue"]
    assert doc["key"] == KEY and str(doc["id"]) == ISSUE_ID
    assert doc["fields"]["assignee"]["displayName"] == "Grace Example"  # the assignee update, not erased later
    etag = answer.headers["etag"]
    assert len(etag) > 2 and etag.startswith(('"', 'W/"')) and etag.endswith('"'), etag
    assert answer.headers["cache-control"]
    # The numeric id answers with the same document and tag
    by_id = call(f"/api/v1/issues/{ISSUE_ID}")
    assert by_id.status == 200 and by_id.json() == doc and by_id.headers["etag"] == etag
    # Another issue has another tag
    other = call("/api/v1/issues/OPS-18")
    assert other.status == 200 and other.json()["key"] == "OPS-18"
    assert other.headers["etag"] != etag
    xml_issue = call("/api/v1/issues/OPS-19")
    assert xml_issue.status == 200 and xml_issue.json()["key"] == "OPS-19"


def test_if_none_match_answers_304_with_the_etag_and_no_body(story: Pipeline, call: Call) -> None:
    etag = call(f"/api/v1/issues/{KEY}").headers["etag"]
    strong = etag.removeprefix("W/")
    for given in (etag, f'"x", W/{strong}', f'W/{strong}, "y"', "*"):
        answer = call(f"/api/v1/issues/{KEY}", headers={"if-none-match": given})
        assert answer.status == 304, (given, answer)
        assert answer.headers["etag"] == etag
        assert answer.body == b""
        assert answer.headers.get("cache-control")
    for given in ('"x"', '"x", W/"y"'):
        answer = call(f"/api/v1/issues/{KEY}", headers={"if-none-match": given})
        assert answer.status == 200 and answer.json()["key"] == KEY, (given, answer)


def test_etag_changes_when_the_issue_changes(pipeline: Pipeline, call: Call) -> None:
    deliver(pipeline, "issue_created.json")
    before = call(f"/api/v1/issues/{KEY}").headers["etag"]
    deliver(pipeline, "issue_updated.json")
    answer = call(f"/api/v1/issues/{KEY}", headers={"if-none-match": before})
    assert answer.status == 200, answer
    assert answer.headers["etag"] != before
    assert answer.json()["fields"]["status"]["name"] == "In Progress"


def test_history_is_newest_first_and_pages_through_the_handler(story: Pipeline, call: Call) -> None:
    answer = call(f"/api/v1/issues/{ISSUE_ID}/history")
    assert answer.status == 200, answer
    body = answer.json()
    assert body["next_cursor"] is None
    items = body["items"]
    assert [i["event"] for i in items] == [
        "worklog_created",
        "comment_created",
        "jira:issue_updated",
        "jira:issue_updated",
        "jira:issue_created",
    ]
    assert [i["event_time"] for i in items] == sorted((fixture_json(n)["timestamp"] for n in STORY), reverse=True)
    assert items[1]["actor"]["displayName"] == "Grace Example"  # the comment's author
    status_change = items[3]["changes"]
    assert {"field": "status", "name": "status", "from": "To Do", "to": "In Progress"} in status_change
    # The same history by key, two at a time, with the cursor carried in rawQueryString
    paged: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 2}
    for _ in range(5):
        page = call(f"/api/v1/issues/{KEY}/history", query)
        assert page.status == 200, page
        assert len(page.json()["items"]) <= 2
        paged += page.json()["items"]
        if page.json()["next_cursor"] is None:
            break
        query = {"limit": 2, "cursor": page.json()["next_cursor"]}
    assert paged == items
    # And each version can be read back
    snap = call(f"/api/v1/issues/{KEY}/history/{items[2]['version']}")
    assert snap.status == 200, snap
    assert snap.json()["capture"]["event_type"] == "jira:issue_updated"
    assert snap.json()["issue"]["fields"]["assignee"]["displayName"] == "Grace Example"


# --- moves and deletes -------------------------------------------------------------------------------


def test_moved_issue_answers_under_its_old_key_and_lists_under_its_new_project(story: Pipeline, call: Call) -> None:
    deliver(story, "issue_moved.json")
    old = call(f"/api/v1/issues/{KEY}")
    assert old.status == 200, old
    assert "location" not in old.headers
    assert old.json()["key"] == "PLAT-5" and str(old.json()["id"]) == ISSUE_ID
    new = call("/api/v1/issues/PLAT-5")
    assert new.status == 200 and new.json() == old.json() and new.headers["etag"] == old.headers["etag"]
    # A tag from the old key is good for the new one: it is the same issue
    again = call("/api/v1/issues/PLAT-5", headers={"if-none-match": old.headers["etag"]})
    assert again.status == 304, again
    # Listed under PLAT only
    assert ISSUE_ID not in listing_ids(call, "OPS")
    assert sorted(listing_ids(call, "OPS")) == ["10050", "10060"]
    assert listing_ids(call, "PLAT") == [ISSUE_ID]
    plat = call("/api/v1/projects/PLAT/issues").json()["items"][0]
    assert plat["key"] == "PLAT-5"
    counts = {p["key"]: p["issue_count"] for p in call("/api/v1/projects").json()["items"]}
    assert counts == {"OPS": 2, "PLAT": 1}
    # History follows the id across the move
    history = call(f"/api/v1/issues/{KEY}/history").json()["items"]
    assert len(history) == len(STORY) + 1
    assert history[0]["event"] == "jira:issue_updated" and history[0]["event_time"] == 1764000400000


def test_deleted_issue_is_410_with_when_and_its_history_stays_readable(story: Pipeline, call: Call) -> None:
    deliver(story, "issue_moved.json", "issue_deleted.json")
    for ref in (KEY, "PLAT-5", ISSUE_ID):
        body = assert_error(call(f"/api/v1/issues/{ref}"), 410)
        assert DELETED_AT in body["detail"], body
    # A tag held from before the delete does not turn the 410 into a 304
    assert call(f"/api/v1/issues/{KEY}", headers={"if-none-match": "*"}).status == 410
    history = call(f"/api/v1/issues/{KEY}/history")
    assert history.status == 200, history
    items = history.json()["items"]
    assert len(items) == len(STORY) + 2
    assert items[0]["event"] == "jira:issue_deleted" and items[0]["event_time"] == 1764000500000
    assert call(f"/api/v1/issues/{ISSUE_ID}/history").json()["items"] == items
    # It has left every listing
    assert ISSUE_ID not in listing_ids(call, "PLAT")
    assert ISSUE_ID not in listing_ids(call, "OPS")
    counts = {p["key"]: p["issue_count"] for p in call("/api/v1/projects").json()["items"]}
    assert counts.get("PLAT", 0) == 0 and counts["OPS"] == 2


# --- projects, errors and the rest of §4 -------------------------------------------------------------


def test_projects_with_counts(story: Pipeline, call: Call) -> None:
    answer = call("/api/v1/projects")
    assert answer.status == 200, answer
    assert answer.json() == {"items": [{"key": "OPS", "name": "Operations", "issue_count": 3}]}
    assert sorted(listing_ids(call, "OPS")) == ["10042", "10050", "10060"]
    items = call("/api/v1/projects/OPS/issues", {"limit": 1}).json()
    assert len(items["items"]) == 1 and items["items"][0]["id"] == "10042" and items["next_cursor"]
    assert set(items["items"][0]) == {"key", "id", "summary", "status", "updated"}


def test_unknown_issue_is_404(story: Pipeline, call: Call) -> None:
    for path in ("/api/v1/issues/OPS-999", "/api/v1/issues/99999", "/api/v1/issues/OPS-999/history"):
        assert_error(call(path), 404)
    assert_error(call(f"/api/v1/issues/{KEY}/history/1764000000123-nope"), 404)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/issues/ops-17", ""),
        ("/api/v1/issues/OPS-17x", ""),
        ("/api/v1/issues/OPS-17/history", "limit=0"),
        ("/api/v1/issues/OPS-17/history", "limit=201"),
        ("/api/v1/issues/OPS-17/history", "limit=ten"),
        ("/api/v1/issues/OPS-17/history", "cursor=not-a-cursor"),
        ("/api/v1/projects/ops/issues", ""),
        ("/api/v1/projects/OPS/issues", "limit=-1"),
        ("/api/v1/projects/OPS/issues", "cursor=%%%"),
        ("/api/v1/projects/OPS/issues", "cursor=" + "A" * 2001),
        ("/api/v1/projects/OPS/issues", "cursor=" + base64.urlsafe_b64encode(b'{"after": 7}').decode()),
    ],
)
def test_bad_key_limit_or_cursor_is_400(story: Pipeline, call: Call, path: str, query: str) -> None:
    assert_error(call(path, query), 400)


def test_a_cursor_from_another_listing_is_400(story: Pipeline, call: Call) -> None:
    ops_cursor = call("/api/v1/projects/OPS/issues", {"limit": 1}).json()["next_cursor"]
    history_cursor = call(f"/api/v1/issues/{KEY}/history", {"limit": 1}).json()["next_cursor"]
    assert ops_cursor and history_cursor
    assert_error(call("/api/v1/projects/PLAT/issues", {"cursor": ops_cursor}), 400, "invalid_cursor")
    assert_error(call("/api/v1/projects/OPS/issues", {"cursor": history_cursor}), 400, "invalid_cursor")
    assert_error(call("/api/v1/issues/OPS-18/history", {"cursor": history_cursor}), 400, "invalid_cursor")


def test_sync_without_jira_credentials_is_a_clear_503(story: Pipeline, call: Call) -> None:
    body = json.dumps({"project": "OPS", "since": None})
    answer = call("/api/v1/sync", method="POST", body=body, headers={"content-type": "application/json"})
    assert_error(answer, 503, "jira_not_configured")
    assert "JSYNC_JIRA_URL" in answer.json()["detail"]
    assert_error(call("/api/v1/sync/job-1"), 404, "job_not_found")


def test_api_keys(story: Pipeline, call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSYNC_API_KEYS", "alpha-key, beta-key")
    services.reset()
    issue = f"/api/v1/issues/{KEY}"
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": ""}, {"x-api-key": "alpha-key, beta-key"}):
        assert_error(call(issue, headers=headers), 401, "unauthorized")
    assert_error(call("/api/v1/projects"), 401)
    assert_error(call(f"{issue}/history"), 401)
    for key in ("alpha-key", "beta-key"):
        answer = call(issue, headers={"x-api-key": key})
        assert answer.status == 200 and answer.json()["key"] == KEY, answer
    assert call("/api/v1/projects", headers={"x-api-key": "beta-key"}).status == 200
    # Health and the documentation need no key
    health = call("/api/v1/health")
    assert health.status == 200, health
    assert health.json()["status"] == "ok"
    assert call("/openapi.json").status == 200
    assert call("/docs").status == 200


def test_health_through_the_handler(story: Pipeline, call: Call) -> None:
    answer = call("/api/v1/health")
    assert answer.status == 200, answer
    body = answer.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) >= {"storage", "queues", "git"}
    assert all(c["ok"] for c in body["checks"].values()), body


def test_openapi_and_docs_through_the_handler(story: Pipeline, call: Call) -> None:
    schema = call("/openapi.json")
    assert schema.status == 200, schema
    assert schema.raw.get("isBase64Encoded") is False
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/health",
        "/api/v1/projects",
        "/api/v1/projects/{project}/issues",
        "/api/v1/issues/{key_or_id}",
        "/api/v1/issues/{key_or_id}/history",
        "/api/v1/issues/{key_or_id}/history/{version}",
        "/api/v1/sync",
        "/api/v1/sync/{job_id}",
    ):
        assert path in paths, path
    assert "422" not in json.dumps(paths), "JSync answers 400, not FastAPI's 422"
    for page in ("/docs", "/redoc"):
        answer = call(page)
        assert answer.status == 200, answer
        assert answer.headers["content-type"].startswith("text/html")
        assert b"/openapi.json" in answer.body


def test_unknown_path_is_404_json(story: Pipeline, call: Call) -> None:
    for path in ("/api/v1/nothing", "/", "/api/v2/issues/OPS-17"):
        assert_error(call(path), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/v1/projects/", f"/api/v1/issues/{KEY}/", "/docs/"])
def test_trailing_slash_never_sends_the_viewer_past_cloudfront(story: Pipeline, call: Call, path: str) -> None:
    """Behind CloudFront the Host is the Function URL's; a redirect built from it sends the viewer to an
    origin that only CloudFront may call (AWS_IAM), so it must use x-forwarded-host, stay relative, or not
    redirect at all (then it is an error in the JSON shape)."""
    answer = call(path)
    if 300 <= answer.status < 400:
        location = answer.headers.get("location", "")
        assert URL_HOST not in location, f"redirects the viewer to the origin: {location}"
        assert location.startswith(("/", f"https://{CLOUDFRONT_HOST}/")), location
    else:
        assert_error(answer, 404)


def test_wrong_method_is_405_json_with_allow(story: Pipeline, call: Call) -> None:
    answer = call(f"/api/v1/issues/{KEY}", method="POST", body="{}", headers={"content-type": "application/json"})
    assert_error(answer, 405)
    allow = {m.strip() for m in answer.headers.get("allow", "").split(",")}
    assert "GET" in allow, answer
    assert "POST" not in allow
    for method in ("DELETE", "PUT"):
        answer = call("/api/v1/projects", method=method)
        assert_error(answer, 405)
        assert "GET" in answer.headers.get("allow", ""), answer


# --- when a part behind the API fails ----------------------------------------------------------------------------


def test_an_empty_api_keys_secret_is_503_misconfigured_never_an_open_api(
    story: Pipeline, call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the deployed API keys secret exists but holds nothing
    deploy_secret(monkeypatch, "JSYNC_API_KEYS_SECRET_NAME", "jsync/api-keys", " ")
    # Then every keyed endpoint answers 503, with or without a key, and says what is wrong
    for headers in ({}, {"x-api-key": "anything"}):
        body = assert_error(call(f"/api/v1/issues/{KEY}", headers=headers), 503, "misconfigured")
        assert "jsync/api-keys" in body["detail"]


def test_an_object_damaged_in_the_bucket_is_a_500_in_the_error_shape(
    story: Pipeline, call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    services.store().put_raw(f"latest/{ISSUE_ID}.json", b"\x00 not json", "application/json")
    answer = call(f"/api/v1/issues/{KEY}")
    body = assert_error(answer, 500, "internal_error")
    assert "Traceback" not in body["detail"] and "json" not in body["detail"].lower()
    assert any(r.getMessage() == "unexpected error" and r.exc_info for r in caplog.records)
    # Other issues still answer
    assert call("/api/v1/issues/OPS-18").status == 200


def test_storage_that_does_not_answer_is_503_with_retry_after(
    story: Pipeline, call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    from local.stack import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    services.reset()
    answer = call(f"/api/v1/issues/{KEY}")
    assert_error(answer, 503, "storage_unavailable")
    assert answer.headers.get("retry-after") == "5"
