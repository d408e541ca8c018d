"""Properties of the read API's paging (contract §4, §6), over data written by the real pipeline.

Every example starts from a clean moto state and bare remote, delivers real-shaped webhooks through the
ingest handler, drains them through the writer and committer, then pages through the API in-process.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from pipeline import services
from tests.builders import fixture_json
from tests.environments import fresh_environment
from tests.harness import Pipeline

BASE = fixture_json("issue_created.json")
BASE_TIME = int(BASE["timestamp"])
PROJECTS = {"OPS": ("10000", "Operations"), "PLAT": ("10001", "Platform")}
INSERT_GAPS = 5  # page fetches followed by new deliveries, in the stability property
EXAMPLES = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def issue_payload(
    issue_id: int,
    key: str,
    summary: str,
    timestamp: int = BASE_TIME,
    changelog_id: int | None = None,
) -> bytes:
    """issue_created.json as another issue; with a changelog id it is an update of that issue instead."""
    payload: dict[str, Any] = copy.deepcopy(BASE)
    project = key.rsplit("-", 1)[0]
    payload["timestamp"] = timestamp
    payload["issue"]["id"] = str(issue_id)
    payload["issue"]["key"] = key
    payload["issue"]["self"] = f"https://example.atlassian.net/rest/api/2/issue/{issue_id}"
    payload["issue"]["fields"]["summary"] = summary
    payload["issue"]["fields"]["project"].update(id=PROJECTS[project][0], key=project, name=PROJECTS[project][1])
    if changelog_id is not None:
        payload["webhookEvent"] = "jira:issue_updated"
        payload["issue_event_type_name"] = "issue_generic"
        payload["changelog"] = {
            "id": str(changelog_id),
            "items": [
                {
                    "field": "summary",
                    "fieldtype": "jira",
                    "fieldId": "summary",
                    "from": None,
                    "fromString": "before",
                    "to": None,
                    "toString": summary,
                }
            ],
        }
    return json.dumps(payload).encode()


@contextmanager
def environment(moto_endpoint: str) -> Iterator[tuple[Pipeline, TestClient]]:
    """A clean bucket, queues and remote for one hypothesis example, and the API over them."""
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as root:
        pipeline = Pipeline(fresh_environment(moto_endpoint, Path(root), mp))
        try:
            yield pipeline, TestClient(create_app())
        finally:
            services.reset()  # close the git cache before its directory goes


class Delivery:
    """Delivers issues through the ingest handler with unique webhook identifiers."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.sent = 0

    def issue(self, issue_id: int, key: str, summary: str, **kwargs: Any) -> str:
        self.sent += 1
        response = self.pipeline.deliver(issue_payload(issue_id, key, summary, **kwargs), identifier=f"pg-{self.sent}")
        assert response["statusCode"] == 202, response
        assert response["json"]["issue_key"] == key
        return str(response["json"]["event_id"])


def get_page(client: TestClient, url: str, limit: int, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"items", "next_cursor"}
    assert len(page["items"]) <= limit
    return page


def walk(client: TestClient, url: str, limit: int, expected_total: int) -> list[list[dict[str, Any]]]:
    """Every page of a listing, following next_cursor until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    for _ in range(expected_total + 2):  # one page per item at most, plus slack: never loop forever
        page = get_page(client, url, limit, cursor)
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert isinstance(cursor, str) and cursor, page
    raise AssertionError(f"next_cursor never became null after {len(pages)} pages of {url}")


# --- (a) a listing walked page by page returns every issue exactly once -------------------------------


@st.composite
def projects_with_issues(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Distinct issue ids of widely varying lengths (so text order differs from numeric order), split in two."""
    ids = draw(
        st.lists(
            st.one_of(st.integers(1, 999), st.integers(1_000, 10**7), st.integers(10**7, 10**15)),
            max_size=25,
            unique=True,
        )
    )
    in_ops = draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    return [i for i, mine in zip(ids, in_ops, strict=True) if mine], [
        i for i, mine in zip(ids, in_ops, strict=True) if not mine
    ]


@EXAMPLES
@given(case=projects_with_issues(), limit=st.integers(1, 30))
def test_walking_next_cursor_returns_every_issue_exactly_once(
    moto_endpoint: str, case: tuple[list[int], list[int]], limit: int
) -> None:
    ops_ids, plat_ids = case
    with environment(moto_endpoint) as (pipeline, client):
        deliver = Delivery(pipeline)
        # Given issues in OPS and, as noise, in PLAT, each captured through the pipeline
        for n, issue_id in enumerate(ops_ids):
            deliver.issue(issue_id, f"OPS-{n + 1}", f"ops issue {issue_id}")
        for n, issue_id in enumerate(plat_ids):
            deliver.issue(issue_id, f"PLAT-{n + 1}", f"plat issue {issue_id}")
        pipeline.drain()

        # When OPS is walked page by page
        pages = walk(client, "/api/v1/projects/OPS/issues", limit, len(ops_ids))

        # Then every OPS issue comes back exactly once, in id order, and nothing from PLAT
        items = [item for page in pages for item in page]
        ids = [int(item["id"]) for item in items]
        assert sorted(ids) == sorted(ops_ids), "each OPS issue exactly once, no other project's"
        assert ids == sorted(ids), "the listing is in numeric id order"
        # And every page but the last is full, and only an empty project has an empty page
        assert all(len(page) == limit for page in pages[:-1])
        assert pages[-1] or not ops_ids, "next_cursor must be null on the last page, not before an empty one"
        assert len(pages) == max(1, -(-len(ops_ids) // limit))
        # And each item is the issue's listing entry
        keys = {issue_id: f"OPS-{n + 1}" for n, issue_id in enumerate(ops_ids)}
        for item in items:
            assert set(item) == {"key", "id", "summary", "status", "updated"}
            assert item["key"] == keys[int(item["id"])]
            assert item["summary"] == f"ops issue {item['id']}"
            assert item["status"] == BASE["issue"]["fields"]["status"]["name"]
            assert item["updated"] == BASE["issue"]["fields"]["updated"]


# --- (b) issues arriving between page fetches never disturb the walk -----------------------------------


@EXAMPLES
@given(initial=st.lists(st.integers(1, 3000), min_size=2, max_size=15, unique=True), data=st.data())
def test_new_issues_between_pages_never_skip_or_repeat_existing_ones(
    moto_endpoint: str, initial: list[int], data: st.DataObject
) -> None:
    limit = data.draw(st.integers(1, len(initial) - 1), label="limit")  # at least two pages, so a gap to fill
    url = "/api/v1/projects/OPS/issues"
    with environment(moto_endpoint) as (pipeline, client):
        deliver = Delivery(pipeline)
        used = set(initial)
        keys = {issue_id: f"OPS-{n + 1}" for n, issue_id in enumerate(initial)}
        for issue_id in initial:
            deliver.issue(issue_id, keys[issue_id], f"issue {issue_id}")
        pipeline.drain()

        seen: list[int] = []
        must_see: set[int] = set(initial)  # pre-existing, plus new ones placed after the cursor
        cursor: str | None = None
        edits = 0
        for gap in range(len(initial) + 2 * INSERT_GAPS + 2):  # each gap adds at most 2 issues ahead
            page = get_page(client, url, limit, cursor)
            seen += [int(item["id"]) for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            if gap >= INSERT_GAPS:
                continue
            # Between two fetches, new issues land below and above the cursor, and old ones change
            position = seen[-1]
            below = [i for i in range(1, position) if i not in used]
            above = [i for i in range(position + 1, 3100) if i not in used]
            new: list[int] = []
            if below:
                new += data.draw(st.lists(st.sampled_from(below), max_size=2, unique=True), label="new below cursor")
            if above:
                fresh = data.draw(st.lists(st.sampled_from(above), max_size=2, unique=True), label="new above cursor")
                new += fresh
                must_see |= set(fresh)
            for issue_id in new:
                used.add(issue_id)
                keys[issue_id] = f"OPS-{len(keys) + 1}"
                deliver.issue(issue_id, keys[issue_id], f"issue {issue_id}")
            for issue_id in data.draw(st.lists(st.sampled_from(initial), max_size=2, unique=True), label="updated"):
                edits += 1
                deliver.issue(
                    issue_id,
                    keys[issue_id],
                    f"issue {issue_id} edited",
                    timestamp=BASE_TIME + 1000 * edits,
                    changelog_id=20_000 + edits,
                )
            pipeline.drain()
        else:
            raise AssertionError("next_cursor never became null")

        # Then no issue came back twice, every pre-existing one came back, and so did each one added ahead
        assert len(seen) == len(set(seen)), f"returned twice: {sorted(i for i in seen if seen.count(i) > 1)}"
        missing = sorted(must_see - set(seen))
        assert not missing, f"skipped: {missing}"
        assert seen == sorted(seen), "the walk stays in id order"
        assert set(seen) <= used


# --- (c) an issue's history pages back every version once, newest first --------------------------------


@st.composite
def issue_events(draw: st.DrawFn) -> tuple[list[tuple[int, int | None]], list[int]]:
    """(timestamp, changelog id) for N events of one issue, oldest first; ties on time are broken by the
    changelog id, as Jira does. Returned with the order they are delivered in."""
    count = draw(st.integers(1, 25))
    events: list[tuple[int, int | None]] = [(BASE_TIME, None)]  # the creation
    time_ms, changelog = BASE_TIME, 10_700
    for _ in range(count - 1):
        time_ms += draw(st.sampled_from([0, 1, 999, 60_000]))
        changelog += draw(st.integers(1, 50))
        events.append((time_ms, changelog))
    order = draw(st.permutations(range(count)))
    return events, list(order)


@EXAMPLES
@given(case=issue_events(), limit=st.integers(1, 30), by_key=st.booleans())
def test_history_pages_return_every_version_once_newest_first(
    moto_endpoint: str, case: tuple[list[tuple[int, int | None]], list[int]], limit: int, by_key: bool
) -> None:
    events, order = case
    with environment(moto_endpoint) as (pipeline, client):
        deliver = Delivery(pipeline)
        # Given N events of one issue, delivered in any order
        expected: dict[str, tuple[int, int]] = {}
        for n in order:
            time_ms, changelog = events[n]
            event_id = deliver.issue(4242, "OPS-42", f"version {n}", timestamp=time_ms, changelog_id=changelog)
            expected[f"{time_ms}-{event_id}"] = (time_ms, changelog or 0)
        pipeline.drain()

        # When its history is paged through
        ref = "OPS-42" if by_key else "4242"
        pages = walk(client, f"/api/v1/issues/{ref}/history", limit, len(events))

        # Then every version is there exactly once, newest first by event time then changelog id
        items = [item for page in pages for item in page]
        versions = [item["version"] for item in items]
        assert len(versions) == len(set(versions)), "a version came back twice"
        assert set(versions) == set(expected)
        times = [item["event_time"] for item in items]
        assert all(a >= b for a, b in zip(times, times[1:], strict=False)), times
        assert versions == sorted(expected, key=lambda v: expected[v], reverse=True)
        assert all(len(page) == limit for page in pages[:-1]) and pages[-1]
        for item in items:
            assert set(item) == {"version", "event", "event_time", "actor", "changes", "attachments"}
            assert item["event_time"] == expected[item["version"]][0]
            assert item["event"] == (
                "jira:issue_created" if expected[item["version"]][1] == 0 else "jira:issue_updated"
            )
            assert item["actor"]["displayName"] == BASE["user"]["displayName"]
        # And each version named in the history can be fetched
        newest = client.get(f"/api/v1/issues/{ref}/history/{versions[0]}")
        assert newest.status_code == 200, newest.text
        assert newest.json()["capture"]["event_time"] == times[0]
