"""pipeline.jira against the fake Jira (tests/fakejira.py): paging, changelogs, census, errors, rate limits; and the
model's own promises: its webhooks parse as JSync parses Jira's, and its changelogs replay to its current fields."""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ids import EVENT_ID
from pipeline.payload import event_id_for, parse_event
from pipeline.reconcile.jira import (
    BULK_IDS_PER_CALL,
    IssueGone,
    IssueHidden,
    JiraClient,
    JiraError,
    JiraRateLimited,
    cut_collections,
    lookback_bound,
    updated_since_clause,
)
from tests.builders import fixture_json
from tests.fakejira import EMAIL, START_MS, TOKEN, FakeJira, JiraModel, iso

SEARCH = "/rest/api/3/search/jql"
BULK = "/rest/api/3/changelog/bulkfetch"


@pytest.fixture
def model() -> JiraModel:
    return JiraModel(seed=7, issues=24, max_changes=8)


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(fake: FakeJira, waits: list[float]) -> JiraClient:
    return JiraClient(fake.base_url, EMAIL, TOKEN, sleep=waits.append, rng=random.Random(3))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line any logger writes during the test (pytest's logging plugin may be off)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    root, handler = logging.getLogger(), Keep(logging.DEBUG)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(level)


def assert_no_secret(*texts: str) -> None:
    basic = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    for text in texts:
        assert TOKEN not in text and basic not in text


def statuses(fake: FakeJira) -> list[int]:
    return [r.status for r in fake.requests]


# --- search/jql -----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    count=st.integers(0, 25),
    page_size=st.integers(1, 9),
    server_limit=st.integers(1, 12),
)
def test_search_pages_return_every_issue_exactly_once(seed: int, count: int, page_size: int, server_limit: int) -> None:
    # Given a site of `count` issues, and a Jira that may return even fewer per page than asked
    model = JiraModel(seed, issues=count, max_changes=3)
    with FakeJira(model) as fake:
        fake.page_limits["search_fields"] = server_limit
        client = JiraClient(fake.base_url, EMAIL, TOKEN, sleep=lambda _: None)
        found: list[dict[str, Any]] = []
        # When each project is paged with nextPageToken
        for project in model.projects:
            jql = f"project = {project} AND {updated_since_clause(START_MS)} ORDER BY updated ASC"
            found += client.search_updated_since(jql, ["updated"], page_size=page_size)
    # Then every issue comes exactly once, each project in `updated` order, only through search/jql
    ids = [issue["id"] for issue in found]
    assert sorted(ids, key=int) == sorted(model.issues, key=int)
    for project in model.projects:
        times = [i["fields"]["updated"] for i in found if model.issues[i["id"]].project == project]
        assert times == sorted(times)
    per_page = min(page_size, server_limit)
    expected = sum(max(1, math.ceil(len(model.visible_issues(p)) / per_page)) for p in model.projects)
    assert fake.paths() == [SEARCH] * expected


def test_the_lookback_bound_is_epoch_ms_minus_lookback_and_the_clause_takes_it_unquoted() -> None:
    assert lookback_bound(1_764_000_000_000, 10) == 1_763_999_400_000
    assert lookback_bound(1_764_000_000_000, 0) == 1_764_000_000_000
    assert lookback_bound(60_000, 5) == 0
    assert updated_since_clause(1_763_999_400_000) == "updated >= 1763999400000"
    assert updated_since_clause(-5) == "updated >= 0"


def test_search_from_a_cursor_rereads_the_lookback_and_nothing_older(
    model: JiraModel, fake: FakeJira, client: JiraClient
) -> None:
    # Given a cursor in the middle of the site's history
    times = sorted(i.updated_ms for i in model.issues.values())
    cursor = times[len(times) // 2]
    # When searching from it with a 10-minute lookback
    jql = f"project = OPS AND {updated_since_clause(lookback_bound(cursor, 10))} ORDER BY updated ASC, id ASC"
    found = {i["id"] for i in client.search_updated_since(jql, ["id"])}
    # Then exactly the OPS issues updated since cursor - 10 min come back
    expected = {i.id for i in model.visible_issues("OPS") if i.updated_ms >= cursor - 600_000}
    assert found == expected and expected


def test_unbounded_jql_is_a_400_naming_jiras_reason(client: JiraClient, log_lines: list[str]) -> None:
    with pytest.raises(JiraError) as info:
        list(client.search_updated_since("ORDER BY updated ASC", ["id"]))
    assert info.value.status == 400
    assert "Unbounded JQL" in str(info.value)
    assert not isinstance(info.value, JiraRateLimited)
    assert_no_secret(str(info.value), repr(info.value), *log_lines)


# --- issues and changelogs ------------------------------------------------------------------------


def test_changelog_pages_are_complete_and_oldest_first(model: JiraModel, fake: FakeJira, client: JiraClient) -> None:
    # Given a Jira that serves the per-issue changelog 3 entries at a time
    fake.page_limits["changelog"] = 3
    for issue in model.issues.values():
        fake.requests.clear()
        # When the whole changelog is read
        histories = client.changelog(issue.id)
        # Then it is every entry, oldest first, in as many pages as it takes
        assert histories == model.changelog(issue.id)
        assert [h["created"] for h in histories] == sorted(h["created"] for h in histories)
        assert len(fake.requests) == max(1, math.ceil(len(histories) / 3))
        assert {r.path for r in fake.requests} == {f"/rest/api/3/issue/{issue.id}/changelog"}


def test_bulk_changelogs_chunk_ids_and_follow_page_tokens(model: JiraModel, fake: FakeJira, client: JiraClient) -> None:
    # Given more ids than one bulkfetch call takes, and pages of 5 histories
    fake.page_limits["bulk_changelog"] = 5
    unknown = [str(90_000 + n) for n in range(2 * BULK_IDS_PER_CALL)]
    ids = list(model.issues) + unknown + list(model.issues)[:3]  # a repeat must not double anything
    # When the changelogs are fetched in bulk
    found = client.bulk_changelogs(ids)
    # Then every known issue with history has its full changelog, oldest first, and nothing else
    assert found == {i: model.changelog(i) for i, issue in model.issues.items() if issue.histories}
    calls = [r.body for r in fake.requests if r.path == BULK]
    assert all(1 <= len(body["issueIdsOrKeys"]) <= BULK_IDS_PER_CALL for body in calls)
    chunks = {tuple(body["issueIdsOrKeys"]) for body in calls}
    assert len(chunks) == math.ceil((len(model.issues) + len(unknown)) / BULK_IDS_PER_CALL)
    assert any("nextPageToken" in body for body in calls)


def test_census_lists_visible_ids_with_id_only_pages(model: JiraModel, fake: FakeJira, client: JiraClient) -> None:
    # Given one OPS issue deleted and one hidden, and a Jira returning 4 ids a page
    ops = [i.id for i in model.visible_issues("OPS")]
    model.delete(ops[0])
    model.hide(ops[1])
    fake.page_limits["search_ids"] = 4
    # When the OPS census runs
    census = client.census("OPS")
    # Then it holds exactly the ids Jira still shows, asked for as ids only, 5000 at a time
    assert census == set(ops[2:])
    assert all(r.body["fields"] == ["id"] and r.body["maxResults"] == 5000 for r in fake.requests)
    with pytest.raises(ValueError):
        client.census('OPS" OR project = "PLAT')


def test_issue_by_id_or_old_key(model: JiraModel, fake: FakeJira, client: JiraClient) -> None:
    # Given an issue moved to another project
    issue = model.visible_issues("OPS")[0]
    old_key = issue.key
    model.add_change(issue.id, kind="move")
    # When it is read by id and by its old key
    by_id = client.issue(issue.id, fields=["summary", "project"])
    by_old_key = client.issue(old_key)
    # Then both are the same issue, under its new key, with the fields asked for
    assert by_id["key"] == by_old_key["key"] == issue.key != old_key
    assert set(by_id["fields"]) == {"summary", "project"}
    assert by_old_key["fields"]["project"]["key"] == "PLAT"


def test_deleted_is_gone_and_hidden_is_hidden(model: JiraModel, fake: FakeJira, client: JiraClient) -> None:
    deleted, hidden = list(model.issues)[:2]
    model.delete(deleted)
    model.hide(hidden)
    with pytest.raises(IssueGone) as gone:
        client.issue(deleted)
    with pytest.raises(IssueHidden) as not_visible:
        client.issue(hidden)
    assert (gone.value.status, not_visible.value.status) == (404, 403)
    assert "does not exist" in str(gone.value)
    with pytest.raises(IssueGone):
        client.changelog(deleted)
    with pytest.raises(IssueHidden):
        client.changelog(hidden)
    assert set(client.bulk_changelogs([deleted, hidden])) == set()


def test_wrong_token_is_a_401_that_never_shows_the_token(fake: FakeJira, log_lines: list[str]) -> None:
    wrong = "ATATT3x-wrong-token-9876"
    client = JiraClient(fake.base_url, EMAIL, wrong, sleep=lambda _: None)
    with pytest.raises(JiraError) as info:
        client.issue("10000")
    error = info.value
    assert error.status == 401 and "authenticated" in str(error)
    basic = base64.b64encode(f"{EMAIL}:{wrong}".encode()).decode()
    for text in (str(error), repr(error), error.message, repr(client), *log_lines):
        assert wrong not in text and basic not in text
    assert fake.requests[-1].authorized is False


# --- rate limits ----------------------------------------------------------------------------------


def test_429_and_503_wait_as_retry_after_says(fake: FakeJira, client: JiraClient, waits: list[float]) -> None:
    # Given Jira throttles the next three calls, saying how long to wait
    fake.inject(429, times=2, retry_after=3)
    fake.inject(503, times=1, retry_after=1.5)
    # When an issue is read
    issue = client.issue("10000")
    # Then the client waited exactly as told, then succeeded
    assert issue["id"] == "10000"
    assert waits == [3.0, 3.0, 1.5]
    assert statuses(fake) == [429, 429, 503, 200]


def test_backoff_without_retry_after_is_jittered_and_capped(fake: FakeJira, log_lines: list[str]) -> None:
    waits: list[float] = []
    client = JiraClient(
        fake.base_url,
        EMAIL,
        TOKEN,
        sleep=waits.append,
        max_retries=6,
        backoff_base=0.5,
        backoff_cap=2.0,
        rng=random.Random(11),
    )
    fake.inject(429, times=6, retry_after=None)
    client.issue("10000")
    assert len(waits) == 6
    for attempt, wait in enumerate(waits):
        assert 0 <= wait <= min(2.0, 0.5 * 2**attempt)
    assert len(set(waits)) == len(waits)  # jittered, not lockstep
    assert len(log_lines) == 6 and all("429" in line for line in log_lines)
    assert_no_secret(*log_lines)


def test_gives_up_after_max_retries(fake: FakeJira, log_lines: list[str]) -> None:
    waits: list[float] = []
    client = JiraClient(fake.base_url, EMAIL, TOKEN, sleep=waits.append, max_retries=3)
    fake.inject(429, times=10, retry_after=0)
    with pytest.raises(JiraRateLimited) as info:
        client.issue("10000")
    assert info.value.status == 429 and info.value.retry_after == 0
    assert waits == [0.0, 0.0, 0.0]
    assert statuses(fake) == [429] * 4
    assert_no_secret(str(info.value), *log_lines)


def test_a_retry_after_beyond_max_wait_stops_at_once(fake: FakeJira, client: JiraClient, waits: list[float]) -> None:
    fake.inject(429, times=1, retry_after=900)
    with pytest.raises(JiraRateLimited) as info:
        client.issue("10000")
    assert info.value.retry_after == 900
    assert waits == []


# --- the fake itself: what later tests rely on ------------------------------------------------------


def raw_get(fake: FakeJira, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(fake.base_url + path)
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_fake_search_defaults_to_ids_and_refuses_what_jira_refuses(model: JiraModel, fake: FakeJira) -> None:
    status, page = raw_get(fake, "/rest/api/3/search/jql?jql=project%20%3D%20OPS&maxResults=3")
    assert status == 200 and page["issues"] and all(set(i) == {"id"} for i in page["issues"])
    assert page["isLast"] is False and page["nextPageToken"]
    assert raw_get(fake, "/rest/api/3/search?jql=project%20%3D%20OPS")[0] == 410
    assert raw_get(fake, "/rest/api/3/search/jql?jql=updated%20%3E%3D%20%222026-01-01%22")[0] == 400
    issue = next(i for i in model.issues.values() if len(i.histories) > 2)
    fake.page_limits["expand_changelog"] = 2
    _, expanded = raw_get(fake, f"/rest/api/3/issue/{issue.id}?expand=changelog")
    # `expand=changelog` keeps only the newest entries, as Jira's does: the reason reconcile never uses it
    assert expanded["changelog"]["histories"] == model.changelog(issue.id)[-2:]


@pytest.mark.parametrize("limit", [None, 2])
def test_a_v2_search_page_of_every_field_is_what_get_issue_gives_save_comments_it_cuts(
    model: JiraModel, fake: FakeJira, client: JiraClient, limit: int | None
) -> None:
    ids = sorted(model.issues)
    for issue_id, count in ((ids[1], 2), (ids[4], 3)):
        for _ in range(count):
            model.add_comment(issue_id)
    fake.search_comment_limit = limit
    issues = list(client.search_updated_since("updated >= 0 ORDER BY id ASC", ["*all"], api=2))
    fake.search_comment_limit = None

    assert [i["id"] for i in issues] == ids
    for issue in issues:
        whole = client.issue(issue["id"], api=2)
        if issue["id"] == ids[4] and limit is not None:
            # The page lists two of three comments, and says so by their total: GET issue lists them all
            assert cut_collections(issue) == ["comment"] and cut_collections(whole) == []
            listed = issue["fields"]["comment"]
            assert (len(listed["comments"]), listed["maxResults"], listed["total"]) == (2, 2, 3)
            assert listed["comments"] == whole["fields"]["comment"]["comments"][:2]
        else:
            assert cut_collections(issue) == [] and issue == whole, issue["id"]
    assert "comment" in issues[1]["fields"] and "comment" not in issues[0]["fields"]  # only issues commented on
    counts = fake.counts()
    assert counts["POST /rest/api/2/search/jql"] == 1 and counts["GET /rest/api/2/issue/{id}"] == len(ids), counts


def test_cut_lists_are_those_shorter_than_get_issue_gives_them() -> None:
    def issue(**fields: Any) -> dict[str, Any]:
        return {"id": "1", "fields": fields}

    def listing(name: str, shown: int, total: int) -> dict[str, Any]:
        return {name: [{"id": str(n)} for n in range(shown)], "maxResults": shown, "total": total, "startAt": 0}

    assert cut_collections(issue(comment=listing("comments", 5, 5))) == []
    assert cut_collections(issue(comment=listing("comments", 20, 21))) == ["comment"]
    # GET issue lists 20 worklogs at most as well: 20 of 30 is all it would give too
    assert cut_collections(issue(worklog=listing("worklogs", 20, 30))) == []
    assert cut_collections(issue(worklog=listing("worklogs", 10, 30))) == ["worklog"]
    assert cut_collections(issue(comment=listing("comments", 1, 2), worklog=listing("worklogs", 1, 2))) == [
        "comment",
        "worklog",
    ]
    # Without a total, or without the list (fields not asked for), nothing says it is cut
    assert cut_collections(issue(comment={"comments": []})) == []
    assert cut_collections(issue(summary="x")) == cut_collections({"id": "1"}) == []


def test_fake_counts_requests_by_endpoint(model: JiraModel, fake: FakeJira, client: JiraClient) -> None:
    issue_id = sorted(model.issues)[0]
    client.issue(issue_id, api=2)
    client.issue(model.issues[issue_id].key, api=2)
    client.changelog(issue_id)
    client.bulk_changelogs([issue_id])
    client.lookup("status", "3")
    seen = len(fake.requests)
    client.search_page("updated >= 0", ["*all"], api=2)
    assert fake.counts() == {
        "GET /rest/api/2/issue/{id}": 2,
        "GET /rest/api/3/issue/{id}/changelog": 1,
        "POST /rest/api/3/changelog/bulkfetch": 1,
        "GET /rest/api/2/status/{id}": 1,
        "POST /rest/api/2/search/jql": 1,
    }
    assert fake.counts(since=seen) == {"POST /rest/api/2/search/jql": 1}


# --- the model: webhooks JSync can parse, changelogs that replay ------------------------------------


def test_model_webhooks_parse_like_jiras_and_are_stable_per_entry() -> None:
    model = JiraModel(seed=5, issues=15, max_changes=6)
    model.delete("10003")
    webhooks = model.webhooks()
    updated_fixture = fixture_json("issue_updated.json")
    for webhook in webhooks:
        event = parse_event(webhook.body, webhook.headers["Content-Type"], received_ms=1)
        assert (event.event_name, event.issue_id) == (webhook.event_name, webhook.issue_id)
        assert event.timestamp_ms == webhook.timestamp_ms
        assert event.changelog_id == int(webhook.history_id or 0)
        assert EVENT_ID.fullmatch(webhook.identifier)
        assert event_id_for(webhook.identifier, webhook.body) == webhook.identifier
        # Real-shaped: the envelope and issue fields are those of a captured Jira webhook
        assert set(webhook.payload) <= set(updated_fixture)
        assert set(webhook.payload["issue"]) == set(updated_fixture["issue"])
        assert set(webhook.payload["issue"]["fields"]) <= set(updated_fixture["issue"]["fields"])
    kinds = [w.event_name for w in webhooks]
    assert kinds.count("jira:issue_created") == 15 and kinds.count("jira:issue_deleted") == 1
    assert kinds.count("jira:issue_updated") == sum(len(i.histories) for i in model.issues.values())
    assert [w.timestamp_ms for w in webhooks] == sorted(w.timestamp_ms for w in webhooks)
    again = JiraModel(seed=5, issues=15, max_changes=6)
    again.delete("10003")
    assert [w.identifier for w in again.webhooks()] == [w.identifier for w in webhooks]
    assert len({w.identifier for w in webhooks}) == len(webhooks)


def state_of(issue: dict[str, Any]) -> dict[str, Any]:
    """The fields the model changes, read from a REST or webhook issue (v3's ADF description as its text)."""
    fields = issue["fields"]
    description = fields["description"]
    if isinstance(description, dict):
        description = "".join(n["text"] for p in description["content"] for n in p["content"])
    return {
        "Key": issue["key"],
        "project": fields["project"]["id"],
        "summary": fields["summary"],
        "description": description,
        "status": fields["status"]["id"],
        "assignee": (fields["assignee"] or {}).get("accountId"),
        "priority": fields["priority"]["id"],
        "labels": " ".join(fields["labels"]),
        "updated": fields["updated"],
    }


# field -> whether its items carry the value in `to` (ids) or in `toString` (text)
_BY_ID = {"status": True, "assignee": True, "priority": True, "project": True}


def replay(state: dict[str, Any], history: dict[str, Any]) -> dict[str, Any]:
    """The state after one changelog entry; each item's `from` must be what the state held before it."""
    after = dict(state, updated=history["created"])
    for item in history["items"]:
        name = item["field"]
        if _BY_ID.get(name):
            assert item["from"] == state[name], (history["id"], item)
            after[name] = item["to"]
        else:
            assert (item["fromString"] or "") == (state[name] or ""), (history["id"], item)
            after[name] = item["toString"]
    return after


def test_replaying_the_changelog_from_creation_gives_current_fields(fake: FakeJira, client: JiraClient) -> None:
    model = fake.model
    for project in model.projects:
        model.add_change(model.visible_issues(project)[0].id, kind="move")
    for issue_id in model.issues:
        created, *updates = model.webhooks(issue_id)
        state = state_of(created.payload["issue"])
        # Each entry, replayed, gives the issue Jira's webhook for that entry carried
        for history, webhook in zip(client.changelog(issue_id), updates, strict=True):
            state = replay(state, history)
            assert state == state_of(webhook.payload["issue"])
            assert iso(webhook.timestamp_ms) == history["created"]
        # And the last one gives the issue as REST shows it now
        assert state == state_of(client.issue(issue_id))


def test_fake_search_renders_the_api_version_of_its_path(model: JiraModel, fake: FakeJira) -> None:
    query = "jql=project%20%3D%20OPS&fields=description,project,assignee&maxResults=50"
    for api in (2, 3):
        status, page = raw_get(fake, f"/rest/api/{api}/search/jql?{query}")
        assert status == 200 and page["issues"]
        for issue in page["issues"]:
            assert issue == model.issue_json(issue["id"], api=api, fields=["description", "project", "assignee"])
            assert f"/rest/api/{api}/" in issue["self"] and f"/rest/api/{api}/" in issue["fields"]["project"]["self"]
    # Wiki text in v2, ADF in v3, as Jira does
    described = next(i.id for i in model.visible_issues("OPS") if i.state["description"])
    pages = {api: raw_get(fake, f"/rest/api/{api}/search/jql?{query}")[1]["issues"] for api in (2, 3)}
    descriptions = {api: next(i for i in pages[api] if i["id"] == described)["fields"]["description"] for api in pages}
    assert isinstance(descriptions[2], str) and descriptions[3]["type"] == "doc"


def test_fake_resources_are_what_issues_embed_plus_what_only_the_resource_has(
    model: JiraModel, fake: FakeJira, client: JiraClient
) -> None:
    issue = model.issue_json("10000", api=2)
    embedded = {kind: issue["fields"][kind] for kind in ("status", "priority", "project", "issuetype")}
    embedded["user"] = issue["fields"]["creator"]
    idents = {kind: value["id"] for kind, value in embedded.items() if kind != "user"}
    idents["user"] = embedded["user"]["accountId"]
    extra = {
        "user": {"locale", "groups", "applicationRoles", "expand"},
        "status": {"untranslatedName"},
        "priority": {"statusColor", "description"},
        "project": {"expand", "description", "lead", "components", "issueTypes", "versions", "roles", "style"},
        "issuetype": {"untranslatedName"},
    }
    for kind, ident in idents.items():
        found = client.lookup(kind, ident)
        # Every embedded key with the embedded value, and the resource's own keys besides
        assert found is not None and {k: found[k] for k in embedded[kind]} == embedded[kind], kind
        assert extra[kind] <= set(found) - set(embedded[kind]), kind
    assert client.lookup("project", model.issues["10000"].project) == client.lookup("project", idents["project"])
    assert client.lookup("resolution", "10000") == {
        "self": f"{model.site}/rest/api/2/resolution/10000",
        "id": "10000",
        "description": "Work has been completed on this issue.",
        "name": "Done",
    }
    status, v3 = raw_get(fake, "/rest/api/3/status/3")
    assert status == 200 and v3["self"].endswith("/rest/api/3/status/3")
    for kind, ident in (("status", "999"), ("priority", "0"), ("project", "NOPE"), ("user", "712020:nobody")):
        assert client.lookup(kind, ident) is None
    assert raw_get(fake, "/rest/api/2/status/999")[0] == 404
    assert raw_get(fake, "/rest/api/2/user")[0] == 400


def test_fake_approximate_count(model: JiraModel, fake: FakeJira, client: JiraClient) -> None:
    ops = model.visible_issues("OPS")
    model.delete(ops[0].id)
    assert client.approximate_count("project = OPS") == len(ops) - 1
    cut = sorted(i.updated_ms for i in model.issues.values())[5]
    expected = sum(1 for i in model.visible_issues() if i.updated_ms >= cut)
    assert client.approximate_count(f"updated >= {cut}") == expected
    # Unbounded JQL is refused as search refuses it; the client reads that as "no estimate"
    assert client.approximate_count("ORDER BY updated") is None
    assert fake.requests[-1].status == 400 and fake.requests[-1].path == "/rest/api/3/search/approximate-count"


# --- attachment contents --------------------------------------------------------------------------------------------


def test_download_streams_an_attachment_after_a_rate_limit(
    client: JiraClient, fake: FakeJira, waits: list[float]
) -> None:
    fake.attachments["10231"] = b"\x00\x01binary\xff" * 1000
    fake.inject(429, times=1, retry_after=2, path="/rest/api/3/attachment/content/")
    with client.download("10231") as stream:
        assert stream.read() == b"\x00\x01binary\xff" * 1000
    assert waits == [2.0]
    [served] = [r for r in fake.requests if r.status == 200]
    assert served.path == "/rest/api/3/attachment/content/10231" and served.query == {"redirect": ["false"]}


def test_download_of_an_attachment_jira_lost_raises_gone_without_the_token(client: JiraClient, fake: FakeJira) -> None:
    with pytest.raises(IssueGone) as gone:
        client.download("999")
    assert gone.value.status == 404 and TOKEN not in str(gone.value)
