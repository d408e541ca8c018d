"""The read API's in-between questions end to end (contract §4): the diff between two versions, the filtered
listing, the NDJSON export, and field names in history. uvicorn on a real port, populated by the real pipeline
from the fixture webhooks, read over HTTP the way a client would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.stack import LocalStack
from pipeline import fields, reader, services
from tests.api.test_http import BEFORE_THE_MOVE, DELETE, MOVE, assert_error, deliver, forged_cursor
from tests.api.test_schema import CHECKS, schema

GRACE = "712020:a1b2-grace"
CATALOGUE = [
    {"id": "status", "name": "Status", "schema": {"type": "status"}},
    {"id": "assignee", "name": "Assignee", "schema": {"type": "user"}},
]


@pytest.fixture
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.port}/api/v1", timeout=10) as client:
        yield client


def versions(api: httpx.Client, ref: str) -> list[str]:
    """The issue's versions, oldest first."""
    r = api.get(f"/issues/{ref}/history")
    assert r.status_code == 200, r.text
    return [item["version"] for item in reversed(r.json()["items"])]


def diff(api: httpx.Client, ref: str, before: str, after: str) -> dict[str, Any]:
    r = api.get(f"/issues/{ref}/diff", params={"from": before, "to": after})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"from", "to", "changes"} and (body["from"], body["to"]) == (before, after)
    for change in body["changes"]:
        assert set(change) == {"field", "name", "from", "to"}, change
    assert [c["field"] for c in body["changes"]] == sorted(c["field"] for c in body["changes"])
    return body


def by_field(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["field"]: c for c in body["changes"]}


def keys(api: httpx.Client, project: str, **params: Any) -> tuple[list[str], str | None]:
    r = api.get(f"/projects/{project}/issues", params=params)
    assert r.status_code == 200, r.text
    return [i["key"] for i in r.json()["items"]], r.json()["next_cursor"]


def every_page(api: httpx.Client, project: str, **params: Any) -> tuple[list[str], int]:
    """Follow the cursor to the end: every key listed, and how many requests it took."""
    found, cursor, requests = [], None, 0
    while True:
        page, cursor = keys(api, project, **params, **({"cursor": cursor} if cursor else {}))
        found += page
        requests += 1
        if cursor is None:
            return found, requests


def export(api: httpx.Client, project: str) -> list[dict[str, Any]]:
    r = api.get(f"/projects/{project}/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert r.text == "" or r.text.endswith("\n")
    return [json.loads(line) for line in r.text.splitlines()]


# --- diff ------------------------------------------------------------------------------------------------------


def test_diff_between_versions_keeps_json_values_sorted_by_field(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    created, to_progress, to_grace, commented = versions(api, "OPS-17")
    # The status change: both values as the JSON objects stored, not strings; no catalogue, so names are ids
    status = diff(api, "OPS-17", created, to_progress)
    changed = by_field(status)
    assert changed["status"]["name"] == "status"
    assert changed["status"]["from"]["name"] == "To Do" and changed["status"]["to"]["name"] == "In Progress"
    assert "updated" in changed and "assignee" not in changed and "summary" not in changed
    # Across several versions the changes add up; by key or id alike
    both = by_field(diff(api, "10042", created, to_grace))
    assert both["assignee"]["from"]["accountId"] != GRACE and both["assignee"]["to"]["accountId"] == GRACE
    assert both["status"] == changed["status"]
    # The comment shows as the comment field gaining it
    comment = by_field(diff(api, "OPS-17", to_grace, commented))["comment"]
    assert [c["id"] for c in comment["to"]["comments"]] == ["10301"]
    # from newer than to: the same changes, reversed
    backwards = by_field(diff(api, "OPS-17", to_grace, created))
    assert {f: (c["to"], c["from"]) for f, c in backwards.items()} == {f: (c["from"], c["to"]) for f, c in both.items()}
    # The same version twice: nothing changed
    assert diff(api, "OPS-17", created, created)["changes"] == []

    # With Jira's field catalogue, each change carries the field's name (the id where the catalogue is silent)
    fields.save(services.store(), CATALOGUE)
    named = by_field(diff(api, "OPS-17", created, to_grace))
    assert named["status"]["name"] == "Status" and named["assignee"]["name"] == "Assignee"
    assert named["updated"]["name"] == "updated"


def test_diff_across_a_move_and_to_the_deletion(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE, MOVE, DELETE)
    history = versions(api, "10042")
    assert len(history) == 6
    moved = by_field(diff(api, "PLAT-5", history[3], history[4]))
    assert (moved["key"]["from"], moved["key"]["to"]) == ("OPS-17", "PLAT-5")
    assert moved["project"]["to"]["key"] == "PLAT"
    # The deletion's version holds the issue as it was: diffable like any other, under the old key too
    assert diff(api, "OPS-17", history[4], history[5])["from"] == history[4]
    assert by_field(diff(api, "OPS-17", history[0], history[5]))["key"]["to"] == "PLAT-5"


def test_diff_edge_cases_in_the_error_shape(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    created = versions(api, "OPS-17")[0]
    other = versions(api, "OPS-18")[0]
    path = "/issues/OPS-17/diff"
    assert_error(api.get(path, params={"from": created, "to": "1764000000123-nope"}), 404, "version_not_found")
    assert_error(api.get(path, params={"from": other, "to": created}), 404, "version_not_found")  # OPS-18's
    assert_error(api.get("/issues/OPS-99/diff", params={"from": created, "to": created}), 404, "issue_not_found")
    for params in ({}, {"from": created}, {"to": created}, {"from": created, "to": "../latest"}, {"from": ""}):
        assert_error(api.get(path, params=params), 400, "invalid_request")
    assert_error(api.get("/issues/ops-17/diff", params={"from": created, "to": created}), 400)


# --- history names --------------------------------------------------------------------------------------------


def test_history_changes_carry_field_names(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    items = api.get("/issues/OPS-17/history").json()["items"]
    assert items[2]["changes"] == [{"field": "status", "name": "status", "from": "To Do", "to": "In Progress"}]
    fields.save(services.store(), CATALOGUE)
    items = api.get("/issues/OPS-17/history").json()["items"]
    assert items[2]["changes"] == [{"field": "status", "name": "Status", "from": "To Do", "to": "In Progress"}]
    assert items[0]["changes"] == [{"field": "comment", "name": "comment", "from": None, "to": "10301"}]


# --- filters --------------------------------------------------------------------------------------------------


def test_filters_match_and_combine(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    assert keys(api, "OPS") == (["OPS-17", "OPS-18", "OPS-19"], None)
    # status: the name, in any case
    assert keys(api, "OPS", status="in progress") == (["OPS-17"], None)
    assert keys(api, "OPS", status="TO DO") == (["OPS-18", "OPS-19"], None)
    assert keys(api, "OPS", status="Done") == ([], None)
    # assignee: the accountId exactly, or the display name in any case
    assert keys(api, "OPS", assignee=GRACE) == (["OPS-17"], None)
    assert keys(api, "OPS", assignee="grace example") == (["OPS-17"], None)
    assert keys(api, "OPS", assignee=GRACE.upper()) == ([], None)
    # updated_since: at or after, whatever the offset it is written in
    assert keys(api, "OPS", updated_since="2025-11-24T16:03:20.784Z") == (["OPS-17"], None)
    assert keys(api, "OPS", updated_since="2025-11-24T17:03:20.785+01:00") == ([], None)
    assert keys(api, "OPS", updated_since="2025-11-24T16:00:00Z") == (["OPS-17", "OPS-18", "OPS-19"], None)
    # Combined, every filter must match
    assert keys(api, "OPS", status="to do", updated_since="2025-11-24T16:00:50Z") == (["OPS-19"], None)
    assert keys(api, "OPS", status="in progress", assignee="Ada Example") == ([], None)
    # Paged with limit and cursor like the plain listing
    first, cursor = keys(api, "OPS", status="to do", limit=1)
    assert first == ["OPS-18"] and cursor
    assert keys(api, "OPS", status="to do", limit=1, cursor=cursor) == (["OPS-19"], None)
    assert every_page(api, "OPS", status="to do", limit=1) == (["OPS-18", "OPS-19"], 2)


def test_a_filtered_page_reads_a_bounded_number_of_issues(
    stack: LocalStack, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    reads: list[str] = []
    store = services.store()
    real = store.read_json

    def counted(key: str) -> Any:
        reads.append(key)
        return real(key)

    monkeypatch.setattr(reader, "FILTER_SCAN", 1)
    monkeypatch.setattr(store, "read_json", counted)
    # Given a filter only the last issue matches, and a scan bound of one issue per request
    page, cursor = keys(api, "OPS", status="to do", updated_since="2025-11-24T16:00:50Z")
    # Then the first page reads one issue, matches nothing, and still hands back a cursor
    assert page == [] and cursor
    assert len([k for k in reads if k.startswith("latest/")]) == 1
    # and following the cursors finds the match, one issue per request
    assert every_page(api, "OPS", status="to do", updated_since="2025-11-24T16:00:50Z") == (["OPS-19"], 3)


def test_bad_filters_are_400_in_the_error_shape(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, BEFORE_THE_MOVE[0])
    for since in ("yesterday", "2025-11-24", "2025-11-24T16:00:00", "2025-13-01T00:00:00Z", "x" * 65):
        assert_error(api.get("/projects/OPS/issues", params={"updated_since": since}), 400)
    assert_error(api.get("/projects/OPS/issues", params={"updated_since": "2025-11-24"}), 400, "invalid_updated_since")
    for empty in ("status", "assignee", "updated_since"):
        assert_error(api.get("/projects/OPS/issues", params={empty: ""}), 400, "invalid_request")
    cursor = forged_cursor("index/history/10042/x.json")
    assert_error(api.get("/projects/OPS/issues", params={"status": "x", "cursor": cursor}), 400, "invalid_cursor")


# --- export ---------------------------------------------------------------------------------------------------


def test_export_streams_every_live_issue_as_ndjson(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    docs = export(api, "OPS")
    assert [d["key"] for d in docs] == ["OPS-17", "OPS-18", "OPS-19"]
    assert docs[0] == api.get("/issues/OPS-17").json()
    # One document per line, keys sorted
    line = api.get("/projects/OPS/export").text.splitlines()[0]
    assert line == json.dumps(docs[0], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # A move takes the issue to its new project's export; a delete takes it out of every export
    deliver(stack, MOVE)
    assert [d["key"] for d in export(api, "OPS")] == ["OPS-18", "OPS-19"]
    assert [d["key"] for d in export(api, "PLAT")] == ["PLAT-5"]
    deliver(stack, DELETE)
    assert export(api, "PLAT") == []
    # A project never captured is a 404, like an issue never captured; a malformed one a 400
    assert_error(api.get("/projects/NOPE/export"), 404, "project_not_found")
    assert_error(api.get("/projects/ops/export"), 400)


# --- hostile parameters ---------------------------------------------------------------------------------------

HOSTILE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", "..", "../latest/10042", "1-x", "0-0", "9" * 17 + "-x", "\x00", "%00", "\ud800", "Z"]),
    st.from_regex(r"\A[0-9]{1,16}-[A-Za-z0-9._-]{1,100}\Z"),
    st.datetimes().map(lambda d: d.isoformat()),
    st.builds(forged_cursor, st.one_of(st.text(max_size=40), st.integers(), st.none())),
)
HOSTILE_SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _answered_in_shape(r: httpx.Response) -> None:
    assert r.status_code in {200, 400, 404}, (r.status_code, r.text)
    if r.status_code != 200:
        assert_error(r, r.status_code)


def _clean(value: str) -> str:
    # httpx cannot send a lone surrogate; a client's library would have had to encode it somehow too
    return value.encode("utf-8", "replace").decode()


def test_hostile_diff_and_listing_parameters_are_never_a_500(stack: LocalStack, api: httpx.Client) -> None:
    deliver(stack, *BEFORE_THE_MOVE)
    good = versions(api, "OPS-17")[0]

    @HOSTILE_SETTINGS
    @given(before=HOSTILE, after=st.one_of(HOSTILE, st.just(good)))
    def diff_params(before: str, after: str) -> None:
        _answered_in_shape(api.get("/issues/OPS-17/diff", params={"from": _clean(before), "to": _clean(after)}))

    @HOSTILE_SETTINGS
    @given(
        status=st.one_of(st.none(), HOSTILE),
        assignee=st.one_of(st.none(), HOSTILE),
        since=st.one_of(st.none(), HOSTILE),
        cursor=st.one_of(st.none(), HOSTILE),
        limit=st.one_of(st.none(), st.integers(-3, 300)),
    )
    def listing_params(
        status: str | None, assignee: str | None, since: str | None, cursor: str | None, limit: int | None
    ) -> None:
        query = {"status": status, "assignee": assignee, "updated_since": since, "cursor": cursor, "limit": limit}
        params = {k: _clean(v) if isinstance(v, str) else v for k, v in query.items() if v is not None}
        _answered_in_shape(api.get("/projects/OPS/issues", params=params))

    diff_params()
    listing_params()


# --- the schema, with real data ------------------------------------------------------------------------------


def test_real_answers_conform_to_the_served_schema(stack: LocalStack, api: httpx.Client) -> None:
    """test_schema.py fuzzes these operations mostly into 400s and 404s; here their 200s, with captured data."""
    deliver(stack, *BEFORE_THE_MOVE)
    fields.save(services.store(), CATALOGUE)
    created, *_, commented = versions(api, "OPS-17")
    base_url = f"http://127.0.0.1:{stack.settings.port}"
    calls = [
        ("/api/v1/issues/{key_or_id}/diff", {"key_or_id": "OPS-17"}, {"from": created, "to": commented}),
        ("/api/v1/issues/{key_or_id}/diff", {"key_or_id": "10042"}, {"from": commented, "to": commented}),
        ("/api/v1/issues/{key_or_id}/history", {"key_or_id": "OPS-17"}, {}),
        ("/api/v1/projects/{project}/issues", {"project": "OPS"}, {"status": "to do", "limit": 1}),
        ("/api/v1/projects/{project}/issues", {"project": "OPS"}, {"updated_since": "2025-11-24T16:00:00+01:00"}),
        ("/api/v1/projects/{project}/export", {"project": "OPS"}, {}),
        ("/api/v1/projects/{project}/export", {"project": "NOPE"}, {}),
    ]
    for path, parts, query in calls:
        case = schema[path]["GET"].Case(path_parameters=parts, query=query)
        response = case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=10)
        assert response.status_code == (404 if parts.get("project") == "NOPE" else 200), (path, response.text)
