"""The read API end to end: uvicorn on a real port, populated by the real pipeline from the fixture webhooks.

Each test posts Jira's webhooks to the stack's /webhook (the same port as the API), waits for the writer and the
committer, then reads /api/v1 over HTTP the way a client would.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.stack import LocalStack
from tests import environments
from tests.builders import fixture_bytes

BEFORE_THE_MOVE = [
    ("issue_created.json", "application/json"),  # OPS-17 (10042), To Do, Ada
    ("issue_updated.json", "application/json"),  # status To Do -> In Progress
    ("issue_updated_assignee.json", "application/json"),  # assignee Ada -> Grace
    ("comment_created.json", "application/json"),  # comment 10301 by Grace
    ("issue_created_adf.json", "application/json"),  # OPS-18 (10050)
    ("issue_created.xml", "application/xml"),  # OPS-19 (10060)
]
MOVE = ("issue_moved.json", "application/json")  # OPS-17 -> PLAT-5
DELETE = ("issue_deleted.json", "application/json")  # PLAT-5 deleted by Ada
ERROR_SHAPE = {"error", "detail"}
LISTING_FIELDS = {"key", "id", "summary", "status", "updated"}
HISTORY_FIELDS = {"version", "event", "event_time", "actor", "changes", "attachments"}


def deliver(stack: LocalStack, *webhooks: tuple[str, str], prefix: str = "http") -> list[str]:
    """POST each webhook with its own identifier, then wait until it is captured and committed."""
    identifiers = []
    for name, content_type in webhooks:
        identifier = f"{prefix}-{name.replace('.', '-')}"
        r = httpx.post(
            stack.urls.webhook,
            content=fixture_bytes(name),
            headers={"content-type": content_type, "x-atlassian-webhook-identifier": identifier},
            timeout=10,
        )
        assert r.status_code == 202, (name, r.status_code, r.text)
        assert r.json()["event_id"] == identifier
        identifiers.append(identifier)
    stack.wait_idle()
    return identifiers


@pytest.fixture
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.port}/api/v1", timeout=10) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_SHAPE and all(isinstance(v, str) and v for v in body.values()), body
    if code:
        assert body["error"] == code, body
    return body


def counts(api: httpx.Client) -> dict[str, int]:
    r = api.get("/projects")
    assert r.status_code == 200
    return {p["key"]: p["issue_count"] for p in r.json()["items"]}


def listing(api: httpx.Client, project: str, **params: str | int) -> dict:
    r = api.get(f"/projects/{project}/issues", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"items", "next_cursor"}
    for item in body["items"]:
        assert set(item) == LISTING_FIELDS, item
    return body


def forged_cursor(after: object) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


# --- one port: webhook in, API and its documentation out -------------------------------------------


def test_webhook_api_and_docs_share_one_port(stack: LocalStack, api: httpx.Client) -> None:
    port = stack.settings.port
    assert stack.urls.webhook == f"http://127.0.0.1:{port}/webhook"
    assert stack.urls.health == f"http://127.0.0.1:{port}/api/v1/health"
    health = api.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert set(health.json()["checks"]) == {"storage", "queues", "dead_letters", "git", "webhook", "set_aside"}
    # What the webhook takes on that port, the API serves on that port
    deliver(stack, BEFORE_THE_MOVE[0])
    assert api.get("/issues/OPS-17").status_code == 200
    # And the interactive documentation, from the schema on that port
    base = f"http://127.0.0.1:{port}"
    for page in ("/docs", "/redoc"):
        r = httpx.get(base + page, timeout=10)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "<html" in r.text.lower() and "/openapi.json" in r.text
    schema = httpx.get(base + "/openapi.json", timeout=10)
    assert schema.status_code == 200 and schema.headers["content-type"].startswith("application/json")
    paths = schema.json()["paths"]
    assert {
        "/api/v1/health",
        "/api/v1/projects",
        "/api/v1/projects/{project}/issues",
        "/api/v1/issues/{key_or_id}",
        "/api/v1/issues/{key_or_id}/history",
        "/api/v1/issues/{key_or_id}/history/{version}",
    } <= set(paths)
    assert "422" not in json.dumps(paths)  # validation errors are documented as the 400 they are


def test_health_reports_refused_deliveries_and_names_webhook_when_all_are_refused(
    stack: LocalStack, api: httpx.Client
) -> None:
    # Given deliveries that are all refused (not Jira webhooks)
    for n in range(2):
        r = httpx.post(
            stack.urls.webhook,
            content=b'{"not": "a webhook"}',
            headers={"content-type": "application/json", "x-atlassian-webhook-identifier": f"junk-{n}"},
            timeout=10,
        )
        assert r.status_code == 400, r.text
    # Then health is 503, names the webhook check alone, and counts the refusals by reason
    bad = api.get("/health")
    assert bad.status_code == 503, bad.text
    body = bad.json()
    assert body["status"] == "failing" and body["detail"] == "Failing checks: webhook."
    webhook = body["checks"]["webhook"]
    assert webhook["ok"] is False and webhook["refused_last_hour"]["shape"] >= 1
    assert webhook["refused_last_hour"]["signature"] == webhook["refused_last_hour"]["size"] == 0
    # When a delivery is accepted, health is 200 again and still shows the hour's refusals
    deliver(stack, BEFORE_THE_MOVE[0])
    good = api.get("/health")
    assert good.status_code == 200, good.text
    checks = good.json()["checks"]
    assert checks["webhook"]["ok"] is True and checks["webhook"]["refused_last_hour"]["shape"] >= 1
    assert checks["webhook"]["last_accepted_at"]
    # and git is judged from the committer's push, with the local remote read to confirm it
    assert checks["git"]["ok"] is True and checks["git"]["remote_tip"] == checks["git"]["last_push"]["tip"]


# --- issues, ETags, listings and history before the move ---------------------------------------------------


def test_issue_by_key_and_id_with_etag_and_revalidation(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    by_key, by_id = api.get("/issues/OPS-17"), api.get("/issues/10042")
    assert by_key.status_code == by_id.status_code == 200
    assert by_key.headers["content-type"].startswith("application/json")
    doc = by_key.json()
    assert doc == by_id.json()
    assert doc["id"] == "10042" and doc["key"] == "OPS-17"
    fields = doc["fields"]
    assert fields["summary"] == "Rotate certificates"
    assert fields["status"]["name"] == "In Progress"
    assert fields["assignee"]["displayName"] == "Grace Example"
    # The comment event carried a cut-down issue: it added the comment and erased nothing
    assert [c["id"] for c in fields["comment"]["comments"]] == ["10301"]
    assert "lastViewed" not in fields and "isWatching" not in json.dumps(fields)

    etag = by_key.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    assert by_id.headers["etag"] == etag
    assert by_key.headers["cache-control"] == "private, no-cache"

    for if_none_match in (etag, f'"nope", {etag}', f'"a",{etag} ,"b"', f"W/{etag}", f'W/"x", W/{etag}', "*"):
        r = api.get("/issues/OPS-17", headers={"If-None-Match": if_none_match})
        assert r.status_code == 304, if_none_match
        assert r.content == b""
        assert r.headers["etag"] == etag  # a 304 repeats the ETag
        assert r.headers["cache-control"] == "private, no-cache"
    for stale in ('"nope"', 'W/"nope"', etag[:-2] + '"', f'"nope", W/"{etag}"'):
        r = api.get("/issues/OPS-17", headers={"If-None-Match": stale})
        assert r.status_code == 200, stale
        assert r.json() == doc

    # Each issue has its own tag, and the XML-born issue reads like the JSON ones
    ops18, ops19 = api.get("/issues/OPS-18"), api.get("/issues/10060")
    assert ops18.status_code == ops19.status_code == 200
    assert len({etag, ops18.headers["etag"], ops19.headers["etag"]}) == 3
    assert ops18.json()["fields"]["summary"] == "Audit service accounts"
    assert ops19.json()["key"] == "OPS-19"
    assert ops19.json()["fields"]["summary"] == "Renew staging DNS records"
    assert ops19.json()["fields"]["status"]["name"] == "To Do"

    # Unknown, by key and by id
    assert_error(api.get("/issues/OPS-99"), 404, "issue_not_found")
    assert_error(api.get("/issues/99999"), 404, "issue_not_found")
    assert_error(api.get("/issues/NOPE-1/history"), 404)
    assert_error(api.get("/issues/99999/history"), 404)


def test_projects_listings_and_paging(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    projects = api.get("/projects").json()["items"]
    assert projects == [{"key": "OPS", "name": "Operations", "issue_count": 3}]

    page = listing(api, "OPS")
    assert page["next_cursor"] is None
    assert [(i["key"], i["id"]) for i in page["items"]] == [
        ("OPS-17", "10042"),
        ("OPS-18", "10050"),
        ("OPS-19", "10060"),
    ]
    first = page["items"][0]
    assert first["summary"] == "Rotate certificates" and first["status"] == "In Progress"
    assert isinstance(first["updated"], str) and first["updated"].startswith("20")
    assert page["items"][2]["status"] == "To Do"

    one = listing(api, "OPS", limit=2)
    assert [i["key"] for i in one["items"]] == ["OPS-17", "OPS-18"]
    assert isinstance(one["next_cursor"], str)
    two = listing(api, "OPS", limit=2, cursor=one["next_cursor"])
    assert [i["key"] for i in two["items"]] == ["OPS-19"]
    assert two["next_cursor"] is None

    # A project never captured lists nothing
    assert listing(api, "NOPE") == {"items": [], "next_cursor": None}


def test_history_newest_first_and_each_version(stack: LocalStack, api: httpx.Client) -> None:
    ids = deliver(stack, *BEFORE_THE_MOVE)
    r = api.get("/issues/OPS-17/history")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"items", "next_cursor"} and body["next_cursor"] is None
    items = body["items"]
    for item in items:
        assert set(item) == HISTORY_FIELDS, item
        for change in item["changes"]:
            assert set(change) == {"field", "name", "from", "to"}, change
    assert [i["event"] for i in items] == [
        "comment_created",
        "jira:issue_updated",
        "jira:issue_updated",
        "jira:issue_created",
    ]
    times = [i["event_time"] for i in items]
    assert times == [1764000300000, 1764000200789, 1764000100456, 1764000000123]
    assert times == sorted(times, reverse=True)
    assert [i["version"] for i in items] == [f"{t}-{e}" for t, e in zip(times, reversed(ids[:4]), strict=True)]
    assert items[0]["actor"]["displayName"] == "Grace Example"  # the comment's author
    assert items[0]["changes"] == [{"field": "comment", "name": "comment", "from": None, "to": "10301"}]
    assert items[1]["changes"] == [
        {"field": "assignee", "name": "assignee", "from": "Ada Example", "to": "Grace Example"}
    ]
    assert items[2]["changes"] == [{"field": "status", "name": "status", "from": "To Do", "to": "In Progress"}]
    assert items[2]["actor"]["displayName"] == "Ada Example"
    assert items[3]["changes"] == []
    assert api.get("/issues/10042/history").json() == body

    # Paging through it gives the same items, in the same order
    paged, cursor = [], None
    while True:
        page = api.get("/issues/10042/history", params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == items

    # Each version is the snapshot at that event
    first = api.get(f"/issues/OPS-17/history/{items[-1]['version']}")
    assert first.status_code == 200
    snapshot = first.json()
    assert {"issue", "capture"} <= set(snapshot)
    assert snapshot["issue"]["fields"]["status"]["name"] == "To Do"
    capture = snapshot["capture"]
    assert capture["event_id"] == ids[0] and capture["event_type"] == "jira:issue_created"
    assert capture["event_time"] == 1764000000123 and capture["actor"]["displayName"] == "Ada Example"
    assert isinstance(capture["captured_at"], int) and isinstance(capture["source"], str)
    status = api.get(f"/issues/10042/history/{items[2]['version']}").json()
    assert status["issue"]["fields"]["status"]["name"] == "In Progress"
    assert status["issue"]["fields"]["assignee"]["displayName"] == "Ada Example"
    assert status["capture"]["event_id"] == ids[1]
    assert_error(api.get("/issues/OPS-17/history/1764000000123-nope"), 404, "version_not_found")
    assert_error(api.get(f"/issues/OPS-18/history/{items[-1]['version']}"), 404, "version_not_found")


# --- a move, then a delete ---------------------------------------------------------------------------------


def test_moves_and_deletes(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    before = api.get("/issues/OPS-17")
    assert counts(api) == {"OPS": 3}

    # The move: the old key answers 200 with the moved issue, no redirect
    deliver(stack, MOVE)
    old, new, by_id = api.get("/issues/OPS-17"), api.get("/issues/PLAT-5"), api.get("/issues/10042")
    assert old.status_code == new.status_code == by_id.status_code == 200
    assert old.json() == new.json() == by_id.json()
    assert old.json()["key"] == "PLAT-5" and old.json()["id"] == "10042"
    assert old.headers["etag"] == new.headers["etag"] != before.headers["etag"]
    stale = api.get("/issues/OPS-17", headers={"If-None-Match": before.headers["etag"]})
    assert stale.status_code == 200
    fresh = api.get("/issues/OPS-17", headers={"If-None-Match": new.headers["etag"]})
    assert fresh.status_code == 304 and fresh.headers["etag"] == new.headers["etag"]
    # Listed under its new project only; the counts follow
    assert counts(api) == {"OPS": 2, "PLAT": 1}
    assert [i["key"] for i in listing(api, "OPS")["items"]] == ["OPS-18", "OPS-19"]
    assert [(i["key"], i["id"]) for i in listing(api, "PLAT")["items"]] == [("PLAT-5", "10042")]
    # History follows the issue id across the move, under either key
    history = api.get("/issues/PLAT-5/history").json()
    assert history == api.get("/issues/OPS-17/history").json()
    assert len(history["items"]) == 5
    assert history["items"][0]["changes"] == [
        {"field": "project", "name": "project", "from": "Operations", "to": "Platform"},
        {"field": "Key", "name": "Key", "from": "OPS-17", "to": "PLAT-5"},
    ]

    # The delete: 410 under every name, with the deletion time
    deliver(stack, DELETE)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1764000500000 / 1000))
    assert when == "2025-11-24T16:08:20Z"
    for ref in ("PLAT-5", "OPS-17", "10042"):
        body = assert_error(api.get(f"/issues/{ref}"), 410, "issue_deleted")
        assert when in body["detail"], body
        assert "Ada Example" in body["detail"]
    gone = api.get("/issues/PLAT-5", headers={"If-None-Match": new.headers["etag"]})
    assert gone.status_code == 410  # a tag from before the delete revalidates nothing
    # It leaves its project's listing and count; the others stay as they were
    assert counts(api) == {"OPS": 2, "PLAT": 0}
    assert listing(api, "PLAT") == {"items": [], "next_cursor": None}
    assert [i["key"] for i in listing(api, "OPS")["items"]] == ["OPS-18", "OPS-19"]
    assert api.get("/issues/OPS-18").status_code == 200
    # History stays readable, newest entry the deletion, and its versions too
    history = api.get("/issues/10042/history")
    assert history.status_code == 200
    items = history.json()["items"]
    assert len(items) == 6
    assert items[0]["event"] == "jira:issue_deleted" and items[0]["event_time"] == 1764000500000
    assert items[0]["actor"]["displayName"] == "Ada Example"
    assert api.get("/issues/OPS-17/history").json()["items"] == items
    last = api.get(f"/issues/PLAT-5/history/{items[0]['version']}")
    assert last.status_code == 200
    assert last.json()["capture"]["event_type"] == "jira:issue_deleted"
    moved = api.get(f"/issues/OPS-17/history/{items[1]['version']}").json()
    assert moved["issue"]["key"] == "PLAT-5"


# --- malformed requests -------------------------------------------------------------------------------------


def test_bad_requests_are_400_in_the_error_shape(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    ops_cursor = listing(api, "OPS", limit=1)["next_cursor"]
    history_cursor = api.get("/issues/OPS-17/history", params={"limit": 1}).json()["next_cursor"]
    assert ops_cursor and history_cursor
    bad = [
        ("/issues/OPS-17/history", {"limit": 0}),
        ("/issues/OPS-17/history", {"limit": 201}),
        ("/issues/OPS-17/history", {"limit": -1}),
        ("/issues/OPS-17/history", {"limit": "ten"}),
        ("/issues/OPS-17/history", {"limit": "1.5"}),
        ("/projects/OPS/issues", {"limit": 0}),
        ("/projects/OPS/issues", {"limit": 1000}),
        ("/projects/OPS/issues", {"limit": "x"}),
        ("/issues/OPS-17/history", {"cursor": "not a cursor"}),
        ("/issues/OPS-17/history", {"cursor": "!!!"}),
        ("/issues/OPS-17/history", {"cursor": "x" * 2001}),
        ("/issues/OPS-17/history", {"cursor": ops_cursor}),  # another listing's cursor
        ("/issues/OPS-18/history", {"cursor": history_cursor}),  # another issue's cursor
        ("/projects/OPS/issues", {"cursor": history_cursor}),
        ("/projects/PLAT/issues", {"cursor": ops_cursor}),
        ("/projects/OPS/issues", {"cursor": forged_cursor(5)}),
        ("/projects/OPS/issues", {"cursor": base64.urlsafe_b64encode(b"[1, 2]").decode()}),
        ("/projects/OPS/issues", {"cursor": base64.urlsafe_b64encode(b'{"before": "x"}').decode()}),
        ("/issues/ops-17", {}),
        ("/issues/OPS-", {}),
        ("/issues/-17", {}),
        ("/issues/OPS_17", {}),
        ("/issues/1234567890123456789012", {}),
        ("/issues/ops-17/history", {}),
        ("/issues/OPS-17/history/not-a-version", {}),
        ("/issues/OPS-17/history/12345678901234567-x", {}),
        ("/issues/ops-17/history/1764000000123-x", {}),
        ("/projects/ops/issues", {}),
        ("/projects/O/issues", {}),
        ("/projects/OPS-1/issues", {}),
    ]
    for path, params in bad:
        r = api.get(path, params=params)
        body = assert_error(r, 400)
        assert body["error"] in {"invalid_request", "invalid_cursor", "invalid_issue_ref", "invalid_project"}, (
            path,
            params,
            body,
        )
        if "cursor" in params and len(str(params["cursor"])) <= 2000:
            assert body["error"] == "invalid_cursor", (path, params, body)
    # The good cursors still work where they belong
    assert len(listing(api, "OPS", limit=1, cursor=ops_cursor)["items"]) == 1
    # A wrong method is a 405 that says which methods are allowed
    r = api.delete("/issues/OPS-17")
    assert_error(r, 405)
    assert r.headers["allow"] == "GET"


def test_forged_cursors_are_400_not_5xx(stack: LocalStack, api: httpx.Client) -> None:
    """A cursor is client input: one naming a key this listing could never hold is a 400, not a storage error.

    A cursor decodes to {"after": <S3 key>}; anything after the listing's prefix currently reaches S3 unchecked.
    """
    deliver(stack, BEFORE_THE_MOVE[0])
    history_prefix, listing_prefix = "index/history/10042/", "index/projects/OPS/issues/"
    forged = [
        ("/issues/OPS-17/history", history_prefix + "\x00"),
        ("/issues/OPS-17/history", history_prefix + "\x1f"),
        ("/issues/OPS-17/history", history_prefix + "\ufffe"),
        ("/issues/OPS-17/history", history_prefix + "\ud800"),  # a lone surrogate, valid as a JSON escape
        ("/projects/OPS/issues", listing_prefix + "\x00"),
        ("/projects/OPS/issues", listing_prefix + "\ud800"),
    ]
    base = f"http://127.0.0.1:{stack.settings.port}/api/v1"
    answers = []
    for path, after in forged:
        try:  # a fresh connection each: a 500 may leave the server closing the one it used
            r = httpx.get(base + path, params={"cursor": forged_cursor(after)}, timeout=10)
            answers.append((path, repr(after[-1]), r.status_code, r.text[:100]))
            if r.status_code == 400:
                assert_error(r, 400, "invalid_cursor")
        except httpx.TransportError as exc:
            answers.append((path, repr(after[-1]), None, repr(exc)))
    report = "\n".join(f"GET {path} cursor after=...{after}: {status} {text}" for path, after, status, text in answers)
    assert all(status == 400 for _, _, status, _ in answers), "forged cursors not answered 400:\n" + report


# --- API keys -------------------------------------------------------------------------------------------------

KEYS = ("first-key-3f9a", "second-key-77c1")


@pytest.fixture
def keyed_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    with environments.keyed_stack(tmp_path / "home", monkeypatch, f"{KEYS[0]}, {KEYS[1]}") as stack:
        yield stack


def test_api_keys_when_configured(keyed_stack: LocalStack) -> None:
    s = keyed_stack
    base = f"http://127.0.0.1:{s.settings.port}"
    # The webhook needs no API key (Jira can't send one)
    deliver(s, BEFORE_THE_MOVE[0])
    api_paths = [
        "/api/v1/projects",
        "/api/v1/projects/OPS/issues",
        "/api/v1/issues/OPS-17",
        "/api/v1/issues/10042/history",
        "/api/v1/sync/abc",
    ]
    with httpx.Client(base_url=base, timeout=10) as client:
        for path in api_paths:
            for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"X-API-Key": KEYS[0] + "x"}):
                assert_error(client.get(path, headers=headers), 401, "unauthorized")
            for key in KEYS:
                r = client.get(path, headers={"X-API-Key": key})
                assert r.status_code != 401, (path, r.text)
        for key in KEYS:
            assert client.get("/api/v1/issues/OPS-17", headers={"X-API-Key": key}).status_code == 200
        assert client.get("/api/v1/projects", headers={"X-API-Key": KEYS[1]}).json()["items"][0]["issue_count"] == 1
        assert_error(client.post("/api/v1/sync", json={}), 401, "unauthorized")
        # No key needed for health and the documentation
        assert client.get("/api/v1/health").status_code == 200
        for page in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(page).status_code == 200, page
        # A 401 never echoes a key
        r = client.get("/api/v1/projects", headers={"X-API-Key": "wrong"})
        assert all(k not in r.text for k in KEYS)
