"""pipeline.rebuild against the fake Jira: an issue's current v2 document and its changelog give back, entry by entry,
the webhooks Jira sent (tests/fakejira.py's model knows every past state), and what it cannot know it leaves alone."""

from __future__ import annotations

import random
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.reconcile.jira import JiraClient
from pipeline.reconcile.rebuild import EMBEDDED_KEYS, Lookup, RebuiltEvent, rebuild, trim
from pipeline.snapshot import issue_document
from tests.fakejira import EMAIL, STATUSES, TOKEN, USERS, FakeJira, JiraModel, ModelWebhook, iso

LOOKUP_PATHS = ("/rest/api/2/status/", "/rest/api/2/priority/", "/rest/api/2/project/", "/rest/api/2/user")


@pytest.fixture
def model() -> JiraModel:
    return JiraModel(seed=21, issues=12, max_changes=6)


@pytest.fixture
def client(fake: FakeJira) -> JiraClient:
    return JiraClient(fake.base_url, EMAIL, TOKEN, sleep=lambda _: None)


def sent(model: JiraModel, issue_id: str) -> list[ModelWebhook]:
    """The creation and update webhooks Jira sent for the issue, oldest first."""
    return [w for w in model.webhooks(issue_id) if w.event_name != "jira:issue_deleted"]


def assert_same_deliveries(events: list[RebuiltEvent], webhooks: list[ModelWebhook]) -> None:
    assert [e.key for e in events] == [w.history_id or "created" for w in webhooks]
    for event, webhook in zip(events, webhooks, strict=True):
        expected = webhook.payload
        where = (webhook.issue_id, event.key)
        assert (event.event_name, event.timestamp_ms) == (webhook.event_name, webhook.timestamp_ms), where
        for name in ("timestamp", "webhookEvent", "issue_event_type_name", "user", "changelog"):
            assert event.payload.get(name) == expected.get(name), (where, name)
        assert issue_document(event.payload["issue"]) == issue_document(expected["issue"]), where
        assert set(event.payload) == set(expected) and "expand" not in event.payload["issue"], where


def rebuild_from_jira(client: JiraClient, issue_id: str, lookup: Lookup | None = None) -> list[RebuiltEvent]:
    current = client.issue(issue_id, api=2)
    histories = client.bulk_changelogs([issue_id]).get(issue_id) or []
    return rebuild(current, histories, lookup or Lookup(client.lookup))


# --- the whole history, against what Jira sent ------------------------------------------------------


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 1_000_000))
def test_rebuilt_deliveries_are_the_webhooks_jira_sent(seed: int) -> None:
    # Given a site of 20 issues with up to 8 changes each, one of them moved away and back again
    model = JiraModel(seed, issues=20, max_changes=8)
    travelled = model.visible_issues()[0].id
    model.add_change(travelled, kind="move")
    model.add_change(travelled, kind="move")
    with FakeJira(model) as fake:
        client = JiraClient(fake.base_url, EMAIL, TOKEN, sleep=lambda _: None)
        for issue_id in model.issues:
            # When each issue is rebuilt from its v2 document and its bulkfetched changelog, given in any order
            current = client.issue(issue_id, api=2)
            histories = client.bulk_changelogs([issue_id]).get(issue_id) or []
            random.Random(seed).shuffle(histories)
            events = rebuild(current, histories, Lookup(client.lookup))
            # Then each delivery is the one Jira sent: same envelope, same issue document at that moment
            assert_same_deliveries(events, sent(model, issue_id))
        # And old statuses, priorities, projects and users were fetched from Jira when no document showed them
        assert any(path.startswith(LOOKUP_PATHS) for path in fake.paths("GET"))
    assert any(w.payload.get("issue_event_type_name") == "issue_moved" for w in sent(model, travelled))


def test_a_seeded_lookup_needs_no_fetch_and_agrees_with_jira(model: JiraModel, client: JiraClient) -> None:
    # Given a Lookup without fetch that has seen the issue documents of every webhook
    seeded = Lookup()
    for webhook in model.webhooks():
        seeded.seed(webhook.payload["issue"])
    # When every issue is rebuilt with it, Then the deliveries are still exactly Jira's
    for issue_id in model.issues:
        assert_same_deliveries(rebuild_from_jira(client, issue_id, seeded), sent(model, issue_id))
    # And what it learnt from documents is what Jira's resources give, trimmed to the embedded shape
    fetching = Lookup(client.lookup)
    wanted = [("status", s) for s in STATUSES] + [("user", u[0]) for u in USERS] + [("project", "10000")]
    for kind, ident in wanted:
        assert seeded.get(kind, ident) == fetching.get(kind, ident) is not None, (kind, ident)


def test_a_change_made_after_the_issue_was_read_is_left_for_the_next_run(model: JiraModel, client: JiraClient) -> None:
    # Given an issue read, then changed before its changelog is read
    issue_id = next(i.id for i in model.visible_issues() if i.histories)
    before = sent(model, issue_id)
    current = client.issue(issue_id, api=2)
    late = model.add_change(issue_id, kind="status")
    histories = client.bulk_changelogs([issue_id])[issue_id]
    assert histories[-1]["id"] == late.history_id
    # When it is rebuilt
    events = rebuild(current, histories, Lookup(client.lookup))
    # Then the newer entry is not rebuilt on a document that does not show it; the rest are Jira's
    assert late.history_id not in {e.key for e in events}
    assert_same_deliveries(events, before)


# --- what the changelog can and cannot say ------------------------------------------------------------


def history(history_id: str, created: str, *items: dict[str, Any]) -> dict[str, Any]:
    author = {
        "self": "https://example.atlassian.net/rest/api/3/user?accountId=" + USERS[1][0],
        "accountId": USERS[1][0],
    }
    return {"id": history_id, "author": author, "created": created, "items": list(items)}


def item(
    field: str, from_: str | None, from_string: str | None, to: str | None, to_string: str | None
) -> dict[str, Any]:
    field_id = {"Team": "customfield_10050", "Rank": "customfield_10019", "Sprint": "customfield_10020"}.get(field)
    found = {"field": field, "fieldtype": "custom" if field_id else "jira", "from": from_, "fromString": from_string}
    found.update(to=to, toString=to_string)
    if field_id or field in ("resolution", "status", "assignee", "priority"):
        found["fieldId"] = field_id or field
    return found


def test_text_fields_are_undone_and_the_rest_kept(model: JiraModel, client: JiraClient) -> None:
    # Given an issue with a custom text field, a LexoRank, a sprint list and a resolution, all set by one entry
    issue_id = next(i.id for i in model.visible_issues() if not i.histories)
    current = client.issue(issue_id, api=2)
    fields = current["fields"]
    done = client.lookup("resolution", "10000")
    fields.update(
        customfield_10050="Blue team",
        customfield_10019="0|i0001b:",
        customfield_10020=[{"id": 1, "name": "Sprint 1", "state": "active"}],
        resolution=trim("resolution", done or {}),
        resolutiondate=fields["updated"],
    )
    entry = history(
        "40000",
        fields["updated"],
        item("Team", None, "Red team", None, "Blue team"),
        item("Rank", None, "", None, "Ranked higher"),
        item("Sprint", None, "", "1", "Sprint 1"),
        item("resolution", None, None, "10000", "Done"),
        item("Link", None, None, "10077", "This issue relates to OPS-9"),
    )
    # When it is rebuilt
    created, changed = rebuild(current, [entry], Lookup(client.lookup))
    before, after = created.payload["issue"]["fields"], changed.payload["issue"]["fields"]
    # Then the text field and the resolution are as they were; what the items cannot describe stays as it is
    assert (before["customfield_10050"], after["customfield_10050"]) == ("Red team", "Blue team")
    assert before["resolution"] is None and before["resolutiondate"] is None
    assert after["resolution"] == fields["resolution"] and after["resolution"]["name"] == "Done"
    assert before["customfield_10019"] == "0|i0001b:"
    assert before["customfield_10020"] == fields["customfield_10020"]
    assert "Link" not in before and set(before) == set(after)
    assert before["updated"] == fields["created"] and after["updated"] == entry["created"]


def test_what_jira_will_not_show_is_kept_as_the_changelog_names_it(model: JiraModel, client: JiraClient) -> None:
    # Given an entry that changed status, priority and assignee from things Jira will no longer show us
    issue_id = next(i.id for i in model.visible_issues() if not i.histories)
    current = client.issue(issue_id, api=2)
    fields = current["fields"]
    old_status = next(s for s in STATUSES if s != fields["status"]["id"])
    entry = history(
        "40001",
        fields["updated"],
        item("status", old_status, STATUSES[old_status][0], fields["status"]["id"], fields["status"]["name"]),
        item("priority", "77", "Blocker", fields["priority"]["id"], fields["priority"]["name"]),
        item("assignee", "712020:gone", "Former Colleague", None, None),
    )
    fields["assignee"] = None
    asked: list[tuple[str, str]] = []

    def refuse(kind: str, ident: str) -> dict[str, Any] | None:
        asked.append((kind, ident))
        return None

    lookup = Lookup(refuse)
    # When it is rebuilt with a fetch that finds nothing
    created, _ = rebuild(current, [entry], lookup)
    old = created.payload["issue"]["fields"]
    # Then the old objects are the minimal ones the changelog describes, and an unseen user is not "unassigned"
    assert old["status"] == {"id": old_status, "name": STATUSES[old_status][0]}
    assert old["priority"] == {"id": "77", "name": "Blocker"}
    assert old["assignee"] == {"accountId": "712020:gone", "displayName": "Former Colleague"}
    # And each miss was asked once and remembered; the author came from the changelog, not a fetch
    assert lookup.get("status", old_status) is None
    assert sorted(asked) == sorted([("status", old_status), ("priority", "77"), ("user", "712020:gone")])


def test_fetched_objects_are_trimmed_to_the_embedded_shape_with_v2_links() -> None:
    full = {
        "self": "https://example.atlassian.net/rest/api/3/user?accountId=712020:x",
        "accountId": "712020:x",
        "displayName": "X",
        "active": True,
        "locale": "en_GB",
        "groups": {"size": 1, "items": []},
        "expand": "groups,applicationRoles",
    }
    calls: list[str] = []
    lookup = Lookup(lambda kind, ident: calls.append(ident) or dict(full))
    user = lookup.get("user", "712020:x")
    assert user == {
        "self": "https://example.atlassian.net/rest/api/2/user?accountId=712020:x",
        "accountId": "712020:x",
        "displayName": "X",
        "active": True,
    }
    assert user is not None and set(user) <= set(EMBEDDED_KEYS["user"])
    user["displayName"] = "changed by a caller"
    assert lookup.get("user", "712020:x") == trim("user", full) and calls == ["712020:x"]
    with pytest.raises(ValueError):
        lookup.get("sprint", "1")


def test_a_history_without_a_jira_time_is_refused(model: JiraModel) -> None:
    current = model.issue_json("10000", api=2)
    with pytest.raises(ValueError, match="not a Jira time"):
        rebuild(current, [history("1", "yesterday")], Lookup())
    assert rebuild(current, [], Lookup())[0].timestamp_ms == model.issues["10000"].created_ms
    assert iso(model.issues["10000"].created_ms) == current["fields"]["created"]


def test_one_entrys_items_are_undone_last_first(model: JiraModel) -> None:
    # Given one entry that changed the summary twice and the assignee
    current = model.issue_json("10000", api=2)
    fields = current["fields"]
    fields.update(summary="third", assignee=None)
    entry = history(
        "40002",
        fields["updated"],
        item("summary", None, "first", None, "second"),
        item("summary", None, "second", None, "third"),
        item("assignee", USERS[2][0], USERS[2][1], None, None),
    )
    # When it is rebuilt
    created, changed = rebuild(current, [entry], Lookup())
    # Then the summary is the one before both items, and an entry that did more than assign is generic
    assert created.payload["issue"]["fields"]["summary"] == "first"
    assert created.payload["issue"]["fields"]["assignee"]["accountId"] == USERS[2][0]
    assert changed.payload["issue_event_type_name"] == "issue_generic"


def test_a_document_replaces_a_remembered_miss() -> None:
    lookup = Lookup(lambda kind, ident: None)
    assert lookup.get("user", USERS[3][0]) is None
    doc = JiraModel(seed=1, issues=1).issue_json("10000", api=2)
    doc["fields"]["assignee"] = JiraModel(seed=1, issues=1).render_user(USERS[3][0], 2)
    lookup.seed(doc)
    assert lookup.get("user", USERS[3][0]) == doc["fields"]["assignee"]


def test_comments_and_worklogs_made_later_are_not_in_an_earlier_state(model: JiraModel) -> None:
    # Given an issue commented on before its one entry and after it, with a worklog after it
    current = model.issue_json("10000", api=2)
    fields = current["fields"]
    created = model.issues["10000"].created_ms
    entry_at, later = created + 60_000, created + 120_000

    def comment(comment_id: str, at: int) -> dict[str, Any]:
        return {"id": comment_id, "body": f"note {comment_id}", "created": iso(at), "updated": iso(at)}

    early, late = comment("1", created + 30_000), comment("2", later)
    fields["comment"] = {"comments": [early, late], "maxResults": 2, "total": 2, "startAt": 0}
    fields["worklog"] = {"worklogs": [{**comment("9", later), "timeSpentSeconds": 60}], "maxResults": 1, "total": 1}
    fields.update(summary="after", updated=iso(later))
    entry = history("40003", iso(entry_at), item("summary", None, "before", None, "after"))

    # When it is rebuilt
    at_creation, after_entry = rebuild(current, [entry], Lookup())

    # Then each state holds only what existed at its time
    first, second = at_creation.payload["issue"]["fields"], after_entry.payload["issue"]["fields"]
    assert first["comment"] == {"comments": [], "maxResults": 0, "total": 0, "startAt": 0}
    assert second["comment"] == {"comments": [early], "maxResults": 1, "total": 1, "startAt": 0}
    assert first["worklog"]["worklogs"] == second["worklog"]["worklogs"] == []
    assert current["fields"]["comment"]["comments"] == [early, late]  # the caller's document is left alone


def test_a_search_page_document_rebuilds_the_webhooks_jira_sent_comments_included(
    model: JiraModel, client: JiraClient
) -> None:
    # Given issues commented on between their changelog entries and after the last (no webhook says so)
    ids = sorted(i.id for i in model.issues.values() if len(i.histories) >= 2)[:4]
    assert ids, "the seed must give issues two entries or more"
    for issue_id in ids:
        model.add_comment(issue_id, at_ms=model.issues[issue_id].histories[1].created_ms - 1)
        model.add_comment(issue_id)
    histories = client.bulk_changelogs(ids)
    lookup = Lookup(client.lookup)

    # When each is rebuilt from its search result (REST v2, every field) rather than from GET issue
    for document in client.search_updated_since("updated >= 0 ORDER BY id ASC", ["*all"], api=2):
        if document["id"] not in ids:
            continue
        events = rebuild(document, histories.get(document["id"], []), lookup)

        # Then the deliveries are the webhooks Jira sent, each with the comments made by then
        assert_same_deliveries(events, sent(model, document["id"]))
        assert events == rebuild_from_jira(client, document["id"], lookup)
        shown = [len(e.payload["issue"]["fields"]["comment"]["comments"]) for e in events]
        assert shown[:3] == [0, 0, 1] and shown[-1] == 1, shown  # the newest comment came after the last entry


# --- times: REST renders them in the site's zone, webhooks in UTC ------------------------------------


def test_a_site_whose_rest_answers_are_not_in_utc_rebuilds_the_utc_webhooks_jira_sent() -> None:
    # Given a Jira whose REST answers (documents, changelog entries) say -0500
    model = JiraModel(seed=21, issues=6, max_changes=6, rest_zone=timezone(timedelta(hours=-5)))
    with FakeJira(model) as fake:
        client = JiraClient(fake.base_url, EMAIL, TOKEN, sleep=lambda _: None)
        assert client.issue("10000", api=2)["fields"]["created"].endswith("-0500")
        for issue_id in model.issues:
            # When each issue is rebuilt
            events = rebuild_from_jira(client, issue_id)
            # Then each delivery is Jira's, its times in UTC as the webhook had them, not only after issue_document
            webhooks = sent(model, issue_id)
            assert_same_deliveries(events, webhooks)
            for event, webhook in zip(events, webhooks, strict=True):
                rebuilt, expected = event.payload["issue"]["fields"], webhook.payload["issue"]["fields"]
                assert (rebuilt["created"], rebuilt["updated"]) == (expected["created"], expected["updated"])


def test_a_date_time_field_is_undone_by_its_instant_whatever_zone_its_item_was_rendered_in(model: JiraModel) -> None:
    # Given a date-time custom field set by the one entry, the document and the item both rendered in -0500
    current = model.issue_json("10000", api=2)
    current["fields"]["customfield_10070"] = "2026-10-26T04:07:02.225-0500"
    entry = history(
        "40004",
        current["fields"]["updated"],
        item("customfield_10070", "2026-10-20T03:00:00.000-0500", "20/Oct/26 3:00 AM", None, None),
    )
    entry["items"][0].update(to="2026-10-26T04:07:02.225-0500", toString="26/Oct/26 4:07 AM")
    # When it is rebuilt
    created, changed = rebuild(current, [entry], Lookup())
    # Then the value before the entry is restored, and both states hold it in UTC
    assert created.payload["issue"]["fields"]["customfield_10070"] == "2026-10-20T08:00:00.000+0000"
    assert changed.payload["issue"]["fields"]["customfield_10070"] == "2026-10-26T09:07:02.225+0000"
