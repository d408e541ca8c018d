"""Unit tests for pipeline.snapshot: the canonical issue document, how events change it, and its git form."""

from __future__ import annotations

import copy
import json
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline.ids import Order, canonical_json
from pipeline.payload import WebhookEvent, parse_event
from pipeline.snapshot import (
    FieldChange,
    actor,
    apply_event,
    field_changes,
    git_path,
    headline,
    issue_document,
    issue_key,
    order_of,
)
from tests.builders import fixture_bytes, fixture_json
from tests.fakejira import JiraModel, iso

RECEIVED_MS = 1_700_000_000_000


def event_of(source: str | dict[str, Any], content_type: str = "application/json") -> WebhookEvent:
    body = fixture_bytes(source) if isinstance(source, str) else json.dumps(source).encode()
    return parse_event(body, content_type, RECEIVED_MS)


def stored(name: str) -> dict[str, Any]:
    """The document JSync holds after `name` was the only event applied."""
    doc = apply_event(None, event_of(name))
    assert doc is not None
    return doc


# --- issue_document -------------------------------------------------------------------------------


def test_issue_document_strips_viewer_relative_fields_but_keeps_counts() -> None:
    issue = fixture_json("issue_created.json")["issue"]
    assert issue["fields"]["lastViewed"] and "isWatching" in issue["fields"]["watches"]

    doc = issue_document(issue)

    fields = doc["fields"]
    assert "lastViewed" not in fields
    assert "isWatching" not in fields["watches"]
    assert "hasVoted" not in fields["votes"]
    base = "https://example.atlassian.net/rest/api/2/issue/OPS-17"
    assert fields["watches"] == {"self": f"{base}/watchers", "watchCount": 1}
    assert fields["votes"] == {"self": f"{base}/votes", "votes": 0}
    # Everything else is the issue's own data, untouched.
    assert doc["id"] == "10042" and doc["key"] == "OPS-17"
    assert fields["summary"] == "Rotate certificates"
    assert set(fields) == set(issue["fields"]) - {"lastViewed"}


def test_issue_document_does_not_modify_its_input() -> None:
    issue = fixture_json("issue_created.json")["issue"]
    before = copy.deepcopy(issue)
    issue_document(issue)
    assert issue == before


def test_issue_document_drops_presentation_noise() -> None:
    issue = fixture_json("issue_created.json")["issue"]
    issue.update(expand="renderedFields,names", renderedFields={"description": "<p>x</p>"}, transitions=[])
    doc = issue_document(issue)
    assert not {"expand", "renderedFields", "transitions"} & set(doc)


def test_issue_document_tolerates_missing_or_odd_viewer_containers() -> None:
    doc = issue_document({"id": "1", "fields": {"watches": None, "votes": "n/a"}})
    assert doc == {"id": "1", "fields": {"watches": None, "votes": "n/a"}}
    assert issue_document({"id": "1"}) == {"id": "1"}


def test_viewer_only_fields_differ_between_fixtures_but_documents_do_not() -> None:
    # Given two payloads of the same issue state that differ only in viewer-relative fields
    a = fixture_json("issue_updated_assignee.json")["issue"]
    b = fixture_json("issue_updated_viewer_only.json")["issue"]
    assert a["fields"]["lastViewed"] != b["fields"]["lastViewed"]
    assert a["fields"]["votes"]["hasVoted"] != b["fields"]["votes"]["hasVoted"]

    # Then their documents serialise to the same bytes
    assert canonical_json(issue_document(a)) == canonical_json(issue_document(b))


# --- canonical_json -------------------------------------------------------------------------------


def test_canonical_json_exact_form() -> None:
    out = canonical_json({"b": 1, "a": {"d": "caf\u00e9 \U0001f510", "c": [1, None, True]}})
    assert out == (
        b"{\n"
        b'  "a": {\n'
        b'    "c": [\n'
        b"      1,\n"
        b"      null,\n"
        b"      true\n"
        b"    ],\n"
        b'    "d": "caf\xc3\xa9 \xf0\x9f\x94\x90"\n'
        b"  },\n"
        b'  "b": 1\n'
        b"}\n"
    )


def test_canonical_json_keeps_non_ascii_as_real_characters() -> None:
    out = canonical_json({"summary": "R\u00e9sum\u00e9 \u2014 \u65e5\u672c"})
    assert "R\u00e9sum\u00e9 \u2014 \u65e5\u672c".encode() in out
    assert b"\\u" not in out
    out.decode("utf-8")  # strict UTF-8


def test_canonical_json_is_independent_of_key_order() -> None:
    issue = fixture_json("issue_created.json")["issue"]
    reversed_issue = json.loads(json.dumps(issue), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
    assert list(reversed_issue) != list(issue)
    assert canonical_json(issue) == canonical_json(reversed_issue)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(), inner, max_size=5)),
    max_leaves=30,
)


@given(doc=st.dictionaries(st.text(), json_values, max_size=8))
def test_canonical_json_round_trips_and_is_stable(doc: dict[str, Any]) -> None:
    out = canonical_json(doc)

    assert out.endswith(b"\n") and not out.endswith(b"\n\n")
    text = out.decode("utf-8")
    assert json.loads(text) == doc
    # Serialising what was read back gives the same bytes: one canonical form.
    assert canonical_json(json.loads(text)) == out
    # Top-level keys appear sorted.
    assert list(json.loads(text, object_pairs_hook=lambda pairs: [k for k, _ in pairs])) == sorted(doc)


def test_canonical_json_of_a_lone_surrogate_is_still_valid_utf8_json() -> None:
    # Given a payload whose text holds an unpaired UTF-16 surrogate escape (e.g. an emoji cut in half);
    # json.loads accepts it, so parse_event accepts the delivery
    data = fixture_json("issue_created.json")
    body = json.dumps(data).replace('"Rotate certificates"', '"Rotate \\ud83d"').encode()
    event = event_of(json.loads(body))
    assert event.data["issue"]["fields"]["summary"] == "Rotate \ud83d"

    # When the document is serialised for git and S3
    out = canonical_json(apply_event(None, event))

    # Then it is still UTF-8 JSON that reads back to the same document
    assert json.loads(out.decode("utf-8"))["fields"]["summary"] == "Rotate \ud83d"


# --- apply_event ----------------------------------------------------------------------------------


def test_created_event_gives_the_issue_document() -> None:
    event = event_of("issue_created.json")
    doc = apply_event(None, event)
    assert doc == issue_document(fixture_json("issue_created.json")["issue"])
    assert doc["key"] == "OPS-17"


def test_viewer_only_update_gives_a_document_equal_to_the_previous_one() -> None:
    previous = stored("issue_updated_assignee.json")
    doc = apply_event(previous, event_of("issue_updated_viewer_only.json"))
    assert doc == previous
    assert canonical_json(doc) == canonical_json(previous)


def test_update_changes_the_document() -> None:
    previous = stored("issue_created.json")
    doc = apply_event(previous, event_of("issue_updated.json"))
    assert doc is not None
    assert previous["fields"]["status"]["name"] == "To Do"
    assert doc["fields"]["status"]["name"] == "In Progress"


def test_comment_created_onto_a_stored_document_adds_the_comment_and_keeps_everything_else() -> None:
    # Given the full stored document and a comment event that carries only a cut-down issue
    previous = stored("issue_updated_assignee.json")
    snapshot = copy.deepcopy(previous)
    event = event_of("comment_created.json")
    assert len(event.data["issue"]["fields"]) < len(previous["fields"])

    doc = apply_event(previous, event)

    # Then the comment is in fields.comment.comments
    assert doc is not None
    comments = doc["fields"]["comment"]["comments"]
    assert [c["id"] for c in comments] == ["10301"]
    assert comments[0] == fixture_json("comment_created.json")["comment"]
    assert doc["fields"]["comment"]["total"] == 1
    # And nothing else was lost or changed
    assert {k: v for k, v in doc.items() if k != "fields"} == {k: v for k, v in previous.items() if k != "fields"}
    assert {k: v for k, v in doc["fields"].items() if k != "comment"} == previous["fields"]
    assert "description" in doc["fields"] and "reporter" in doc["fields"]
    # And the stored document passed in was not mutated
    assert previous == snapshot


def test_comment_delivered_twice_is_recorded_once() -> None:
    event = event_of("comment_created.json")
    once = apply_event(stored("issue_created.json"), event)
    twice = apply_event(once, event)
    assert twice == once
    assert len(twice["fields"]["comment"]["comments"]) == 1


def test_comment_deleted_removes_the_comment() -> None:
    with_comment = apply_event(stored("issue_created.json"), event_of("comment_created.json"))
    data = fixture_json("comment_created.json")
    data["webhookEvent"] = "comment_deleted"
    doc = apply_event(with_comment, event_of(data))
    assert doc["fields"]["comment"]["comments"] == []
    assert doc["fields"]["comment"]["total"] == 0
    assert doc["fields"]["summary"] == with_comment["fields"]["summary"]


def test_comment_created_with_no_stored_document_still_gives_a_document() -> None:
    doc = apply_event(None, event_of("comment_created.json"))
    assert doc is not None
    assert doc["id"] == "10042" and doc["key"] == "OPS-17"
    assert doc["fields"]["summary"] == "Rotate certificates"
    assert [c["id"] for c in doc["fields"]["comment"]["comments"]] == ["10301"]


def test_issue_update_after_a_comment_keeps_the_comment() -> None:
    # Webhook issues do not list comments; an update must not erase the ones already stored.
    with_comment = apply_event(stored("issue_created.json"), event_of("comment_created.json"))
    doc = apply_event(with_comment, event_of("issue_updated.json"))
    assert doc["fields"]["comment"] == with_comment["fields"]["comment"]
    assert doc["fields"]["status"]["name"] == "In Progress"


def test_worklog_created_adds_to_worklogs_and_keeps_other_fields() -> None:
    previous = stored("issue_updated.json")
    doc = apply_event(previous, event_of("worklog_created.json"))
    assert doc is not None
    worklogs = doc["fields"]["worklog"]["worklogs"]
    assert [w["id"] for w in worklogs] == ["10500"]
    assert worklogs[0]["timeSpentSeconds"] == 3600
    assert {k: v for k, v in doc["fields"].items() if k != "worklog"} == previous["fields"]
    assert doc["key"] == previous["key"]


def test_worklog_created_with_no_stored_document_is_filed_by_issue_id() -> None:
    doc = apply_event(None, event_of("worklog_created.json"))
    assert doc is not None
    assert doc["id"] == "10042"
    assert [w["id"] for w in doc["fields"]["worklog"]["worklogs"]] == ["10500"]


@pytest.mark.parametrize("previous", [None, "issue_moved.json"])
def test_deleted_event_gives_none(previous: str | None) -> None:
    prev = stored(previous) if previous else None
    assert apply_event(prev, event_of("issue_deleted.json")) is None


def test_moved_event_gives_the_document_under_its_new_key() -> None:
    previous = stored("issue_updated_assignee.json")
    event = event_of("issue_moved.json")
    doc = apply_event(previous, event)
    assert doc is not None
    assert doc["key"] == "PLAT-5"
    assert doc["id"] == previous["id"] == "10042"
    assert doc["fields"]["project"]["key"] == "PLAT"
    assert issue_key(doc, event) == "PLAT-5"
    assert git_path(issue_key(doc, event), doc["id"]) == "issues/PLAT/PLAT-5.json"


def test_adf_description_survives_unchanged() -> None:
    description = fixture_json("issue_created_adf.json")["issue"]["fields"]["description"]
    assert isinstance(description, dict) and description["type"] == "doc"

    doc = apply_event(None, event_of("issue_created_adf.json"))

    assert doc["fields"]["description"] == description
    assert json.loads(canonical_json(doc))["fields"]["description"] == description


def test_xml_created_event_gives_a_document() -> None:
    event = event_of("issue_created.xml", "application/xml")
    doc = apply_event(None, event)
    assert doc["key"] == "OPS-19"
    assert doc["fields"]["summary"] == "Renew staging DNS records"
    assert git_path(issue_key(doc, event), event.issue_id) == "issues/OPS/OPS-19.json"


# --- git_path / issue_key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("OPS-17", "issues/OPS/OPS-17.json"),
        ("PLAT-5", "issues/PLAT/PLAT-5.json"),
        ("AB2_X-123", "issues/AB2_X/AB2_X-123.json"),
    ],
)
def test_git_path_for_valid_keys(key: str, path: str) -> None:
    assert git_path(key, "10042") == path


@pytest.mark.parametrize(
    "key",
    [None, "", "ops-17", "Ops-17", "../x-1", "OPS-17/../../x", "OPS/../../X-1", "OPS-", "OPS", "-17", "OPS-17 "]
    + ["OPS-17\n"],
)
def test_git_path_for_invalid_keys_goes_to_unkeyed(key: str | None) -> None:
    assert git_path(key, "10042") == "issues/_unkeyed/10042.json"


@given(key=st.text(max_size=40))
@example(key="OPS-17\n")
@example(key="OPS-17/../../x")
def test_git_path_is_always_a_plain_path_inside_issues(key: str) -> None:
    path = git_path(key, "10042")
    parts = path.split("/")
    assert len(parts) == 3 and parts[0] == "issues"
    assert all(part and part not in (".", "..") for part in parts)
    assert path.isascii() and path.isprintable() and " " not in path
    assert path.endswith(".json")


def test_issue_key_prefers_the_document_and_rejects_invalid_keys() -> None:
    event = event_of("issue_created.json")
    assert issue_key({"key": "PLAT-5"}, event) == "PLAT-5"
    assert issue_key(None, event) == "OPS-17"
    assert issue_key({"key": "../x-1"}, event) is None


# --- actor ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "display_name", "account_id"),
    [
        ("issue_created.json", "Ada Example", "712020:0f3c-demo"),
        ("issue_updated.json", "Ada Example", "712020:0f3c-demo"),
        ("issue_moved.json", "Ada Example", "712020:0f3c-demo"),
        ("comment_created.json", "Grace Example", "712020:a1b2-grace"),
        ("worklog_created.json", "Grace Example", "712020:a1b2-grace"),
    ],
)
def test_actor(name: str, display_name: str, account_id: str) -> None:
    who = actor(event_of(name))
    assert who == {"accountId": account_id, "displayName": display_name}


def test_comment_author_wins_over_the_webhook_user() -> None:
    data = fixture_json("comment_created.json")
    data["user"] = fixture_json("issue_created.json")["user"]  # Ada
    assert actor(event_of(data))["displayName"] == "Grace Example"


def test_comment_updated_actor_is_the_update_author() -> None:
    data = fixture_json("comment_created.json")
    data["webhookEvent"] = "comment_updated"
    data["comment"]["updateAuthor"] = {"accountId": "712020:0f3c-demo", "displayName": "Ada Example"}
    assert actor(event_of(data)) == {"accountId": "712020:0f3c-demo", "displayName": "Ada Example"}


def test_actor_is_none_without_any_user() -> None:
    data = fixture_json("issue_created.json")
    del data["user"]
    assert actor(event_of(data)) is None


# --- field_changes --------------------------------------------------------------------------------


def test_field_changes_from_changelog() -> None:
    event = event_of("issue_updated.json")
    previous = stored("issue_created.json")
    changes = field_changes(event, previous, apply_event(previous, event))
    assert changes == [FieldChange("status", "To Do", "In Progress")]
    assert changes[0].as_dict() == {"field": "status", "from": "To Do", "to": "In Progress"}


def test_field_changes_from_changelog_for_a_move() -> None:
    event = event_of("issue_moved.json")
    changes = field_changes(event, stored("issue_updated_assignee.json"), apply_event(None, event))
    assert [c.as_dict() for c in changes] == [
        {"field": "project", "from": "Operations", "to": "Platform"},
        {"field": "Key", "from": "OPS-17", "to": "PLAT-5"},
    ]


def test_field_changes_from_a_document_diff_when_there_is_no_changelog() -> None:
    # Given an update without a changelog (e.g. a reconcile, or Jira left it out)
    data = fixture_json("issue_updated_stale.json")
    del data["changelog"]
    event = event_of(data)
    previous = stored("issue_created.json")

    changes = field_changes(event, previous, apply_event(previous, event))

    by_field = {c.field: c for c in changes}
    assert by_field["summary"] == FieldChange("summary", "Rotate certificates", "Rotate TLS certificates")
    # Objects are summarised by their name.
    assert by_field["status"] == FieldChange("status", "To Do", "In Progress")
    # Unchanged fields and viewer-relative fields are not reported.
    assert "description" not in by_field
    assert "lastViewed" not in by_field
    assert [c.field for c in changes] == sorted(by_field)


def test_field_changes_empty_changelog_and_viewer_only_diff_is_empty() -> None:
    previous = stored("issue_updated_assignee.json")
    event = event_of("issue_updated_viewer_only.json")
    assert event.data["changelog"]["items"] == []
    assert field_changes(event, previous, apply_event(previous, event)) == []


def test_field_changes_without_previous_and_without_changelog_is_empty() -> None:
    event = event_of("issue_created.json")
    assert field_changes(event, None, apply_event(None, event)) == []


def test_field_changes_for_comment_and_worklog_events() -> None:
    previous = stored("issue_created.json")
    comment = event_of("comment_created.json")
    assert field_changes(comment, previous, apply_event(previous, comment)) == [FieldChange("comment", None, "10301")]
    worklog = event_of("worklog_created.json")
    assert field_changes(worklog, previous, apply_event(previous, worklog)) == [FieldChange("worklog", None, "10500")]


def test_field_changes_for_comment_deleted() -> None:
    data = fixture_json("comment_created.json")
    data["webhookEvent"] = "comment_deleted"
    event = event_of(data)
    previous = apply_event(stored("issue_created.json"), event_of("comment_created.json"))
    assert field_changes(event, previous, apply_event(previous, event)) == [FieldChange("comment", "10301", None)]


# --- headline -------------------------------------------------------------------------------------


def _headline(name: str | dict[str, Any], key: str = "OPS-17", previous_key: str | None = "OPS-17") -> str:
    event = event_of(name)
    previous = stored("issue_created.json")
    return headline(event, key, previous_key, field_changes(event, previous, apply_event(previous, event)))


def test_headline_created() -> None:
    assert _headline("issue_created.json", previous_key=None) == "created: Rotate certificates"


def test_headline_created_without_summary() -> None:
    data = fixture_json("issue_created.json")
    del data["issue"]["fields"]["summary"]
    assert _headline(data, previous_key=None) == "created"


def test_headline_updated_names_the_changed_fields() -> None:
    assert _headline("issue_updated.json") == "updated status"
    assert "assignee" in _headline("issue_updated_assignee.json")


def test_headline_moved() -> None:
    text = _headline("issue_moved.json", key="PLAT-5", previous_key="OPS-17")
    assert "moved from OPS-17" in text


def test_headline_deleted() -> None:
    assert "deleted" in _headline("issue_deleted.json", key="PLAT-5", previous_key="PLAT-5")


def test_headline_deleted_wins_over_a_key_change() -> None:
    assert _headline("issue_deleted.json", key="PLAT-5", previous_key="OPS-17") == "deleted"


def test_headline_comment_and_worklog_name_the_item_and_author() -> None:
    comment = _headline("comment_created.json")
    assert "comment 10301 created" in comment
    assert "Grace Example" in comment
    worklog = _headline("worklog_created.json")
    assert "worklog 10500 created" in worklog
    assert "Grace Example" in worklog


def test_headline_update_without_changes_is_still_meaningful() -> None:
    event = event_of("issue_updated_viewer_only.json")
    assert headline(event, "OPS-17", "OPS-17", []) == "issue updated"


# --- ordering -------------------------------------------------------------------------------------


def test_order_compares_time_first() -> None:
    assert Order(1, 999, "z") < Order(2, 0, "a")


def test_order_breaks_time_ties_with_the_changelog_id() -> None:
    assert Order(5, 9, "z") < Order(5, 10, "a")


def test_order_breaks_remaining_ties_with_the_event_id() -> None:
    assert Order(5, 10, "a") < Order(5, 10, "b")
    assert Order(5, 10, "a") == Order(5, 10, "a")


def test_order_of_fixtures_follows_event_time() -> None:
    names = [
        "issue_moved.json",
        "issue_updated_stale.json",
        "issue_created.json",
        "issue_updated_viewer_only.json",
        "issue_updated.json",
        "issue_updated_assignee.json",
    ]
    ordered = sorted(names, key=lambda n: order_of(event_of(n), "e"))
    assert ordered == [
        "issue_created.json",
        "issue_updated.json",
        "issue_updated_stale.json",
        "issue_updated_assignee.json",
        "issue_updated_viewer_only.json",
        "issue_moved.json",
    ]


def test_order_of_same_millisecond_events_uses_changelog_ids() -> None:
    early, late = fixture_json("issue_updated.json"), fixture_json("issue_updated_assignee.json")
    late["timestamp"] = early["timestamp"]
    early["changelog"]["id"], late["changelog"]["id"] = "9", "10"
    assert order_of(event_of(early), "zzz") < order_of(event_of(late), "aaa")


def test_order_list_round_trip() -> None:
    order = order_of(event_of("issue_updated.json"), "delivery-1")
    assert order.as_list() == [1764000100456, 10789, "delivery-1"]
    assert Order.from_list(order.as_list()) == order
    assert Order.from_list(json.loads(json.dumps(order.as_list()))) == order
    assert Order.from_list(["1764000100456", "10789", "delivery-1"]) == order


@given(a=st.tuples(st.integers(), st.integers(), st.text()), b=st.tuples(st.integers(), st.integers(), st.text()))
def test_order_matches_tuple_order(a: tuple[int, int, str], b: tuple[int, int, str]) -> None:
    assert (Order(*a) < Order(*b)) == (a < b)
    assert (Order(*a) == Order(*b)) == (a == b)


# --- times: one UTC form, whoever rendered them ------------------------------------------------------


def test_the_same_issue_rendered_by_rest_in_another_zone_and_by_a_webhook_is_one_document() -> None:
    # Given a Jira whose REST answers say -0500 and whose webhooks say +0000
    model = JiraModel(seed=3, issues=3, max_changes=3, rest_zone=timezone(timedelta(hours=-5)))
    issue = next(i for i in model.visible_issues() if i.histories)
    from_rest = model.issue_json(issue.id, api=2)
    from_webhook = model.webhooks(issue.id)[-1].payload["issue"]
    assert from_rest["fields"]["updated"].endswith("-0500") and from_webhook["fields"]["updated"].endswith("+0000")

    # Then their documents are equal, byte for byte, with UTC times in Jira's format
    doc = issue_document(from_rest)
    assert canonical_json(doc) == canonical_json(issue_document(from_webhook))
    assert doc["fields"]["updated"] == iso(issue.updated_ms)
    # And the REST answer given in was left as Jira sent it (raw/ keeps that)
    assert from_rest["fields"]["updated"].endswith("-0500")


def test_a_comment_rendered_in_another_zone_is_stored_in_utc_and_sorted_by_its_instant() -> None:
    # Given a stored comment at 09:30 UTC, and a comment event whose times say 05:00-0500 (10:00 UTC: later)
    first = fixture_json("comment_created.json")
    first["comment"].update(id="1", created="2026-10-26T09:30:00.000+0000", updated="2026-10-26T09:30:00.000+0000")
    stored_doc = apply_event(stored("issue_created.json"), event_of(first))
    second = fixture_json("comment_created.json")
    second["comment"].update(id="2", created="2026-10-26T05:00:00.000-0500", updated="2026-10-26T05:00:00.000-0500")

    # When it is applied
    doc = apply_event(stored_doc, event_of(second))

    # Then it lists after the earlier one, its times in UTC, its text as written
    assert doc is not None
    comments = doc["fields"]["comment"]["comments"]
    assert [c["id"] for c in comments] == ["1", "2"]
    assert (comments[1]["created"], comments[1]["updated"]) == ("2026-10-26T10:00:00.000+0000",) * 2
    assert comments[1]["body"] == second["comment"]["body"]
