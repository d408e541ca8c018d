"""Unit tests for pipeline.payload: parsing webhook bodies (JSON and XML), ids and message groups."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline.errors import WebhookRejected
from pipeline.payload import (
    WebhookEvent,
    event_id_for,
    file_extension,
    is_issue_event,
    media_type,
    message_group,
    parse_event,
)
from tests.builders import fixture_bytes, fixture_json

REPO_ROOT = Path(__file__).resolve().parents[2]
RECEIVED_MS = 1_700_000_000_000
SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
# What SQS accepts as a FIFO MessageGroupId.
SQS_GROUP = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")


def parse(body: bytes | dict[str, Any], content_type: str | None = "application/json") -> WebhookEvent:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return parse_event(raw, content_type, RECEIVED_MS)


def rejected(body: bytes | dict[str, Any], content_type: str | None = "application/json") -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        parse(body, content_type)
    return info.value


# --- JSON fixtures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "event_name", "issue_id", "issue_key", "timestamp"),
    [
        ("issue_created.json", "jira:issue_created", "10042", "OPS-17", 1764000000123),
        ("issue_updated.json", "jira:issue_updated", "10042", "OPS-17", 1764000100456),
        ("issue_updated_assignee.json", "jira:issue_updated", "10042", "OPS-17", 1764000200789),
        ("issue_updated_viewer_only.json", "jira:issue_updated", "10042", "OPS-17", 1764000250000),
        ("issue_updated_stale.json", "jira:issue_updated", "10042", "OPS-17", 1764000150000),
        ("comment_created.json", "comment_created", "10042", "OPS-17", 1764000300000),
        ("worklog_created.json", "worklog_created", "10042", None, 1764000350000),
        ("issue_moved.json", "jira:issue_updated", "10042", "PLAT-5", 1764000400000),
        ("issue_deleted.json", "jira:issue_deleted", "10042", "PLAT-5", 1764000500000),
        ("issue_created_adf.json", "jira:issue_created", "10050", "OPS-18", 1764000050000),
        ("project_created.json", "project_created", None, None, 1764000600000),
        ("sprint_started.json", "sprint_started", None, None, 1764000700000),
    ],
)
def test_parse_event_reads_json_fixtures(
    name: str, event_name: str, issue_id: str | None, issue_key: str | None, timestamp: int
) -> None:
    event = parse_event(fixture_bytes(name), "application/json", RECEIVED_MS)

    assert event.event_name == event_name
    assert event.issue_id == issue_id
    assert event.issue_key == issue_key
    # Event time is the payload's timestamp, not the time we received it.
    assert event.timestamp_ms == timestamp
    assert event.data == fixture_json(name)


def test_worklog_event_takes_issue_id_from_worklog() -> None:
    # Given a worklog event, which carries no `issue` object at all
    data = fixture_json("worklog_created.json")
    assert "issue" not in data

    event = parse(data)

    # Then its issue id is worklog.issueId, and there is no key to report
    assert event.issue_id == data["worklog"]["issueId"] == "10042"
    assert event.issue_key is None


def test_worklog_issue_id_given_as_number_is_accepted() -> None:
    data = fixture_json("worklog_created.json")
    data["worklog"]["issueId"] = 10042
    assert parse(data).issue_id == "10042"


def test_issue_id_given_as_json_number_becomes_a_string() -> None:
    data = fixture_json("issue_created.json")
    data["issue"]["id"] = 10042
    assert parse(data).issue_id == "10042"


def test_non_issue_events_are_accepted_without_issue_identity() -> None:
    for name in ("project_created.json", "sprint_started.json"):
        event = parse(fixture_bytes(name))
        assert not is_issue_event(event.event_name)
        assert event.issue_id is None
        assert event.issue_key is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, RECEIVED_MS), ("abc", RECEIVED_MS), (0, RECEIVED_MS), (-5, RECEIVED_MS), ("1764000000123", 1764000000123)],
)
def test_timestamp_falls_back_to_receive_time_only_when_unusable(value: Any, expected: int) -> None:
    data = fixture_json("issue_created.json")
    if value is None:
        del data["timestamp"]
    else:
        data["timestamp"] = value
    assert parse(data).timestamp_ms == expected


# --- XML ------------------------------------------------------------------------------------------


def test_xml_fixture_parses_to_the_json_shape_with_string_scalars() -> None:
    event = parse_event(fixture_bytes("issue_created.xml"), "application/xml", RECEIVED_MS)

    assert event.event_name == "jira:issue_created"
    assert event.issue_id == "10060"
    assert event.issue_key == "OPS-19"
    # The timestamp is text in XML but the event time is an int.
    assert event.timestamp_ms == 1764000060000
    assert isinstance(event.timestamp_ms, int)

    data = event.data
    # Same envelope keys as the equivalent JSON delivery.
    assert set(data) == set(fixture_json("issue_created.json"))
    assert set(data["issue"]) == {"id", "self", "key", "fields"}
    # Scalars are strings, nested elements are objects, repeated elements are lists.
    assert data["timestamp"] == "1764000060000"
    assert data["issue"]["id"] == "10060"
    fields = data["issue"]["fields"]
    assert fields["summary"] == "Renew staging DNS records"
    assert fields["issuetype"] == {
        "self": "https://example.atlassian.net/rest/api/2/issuetype/10001",
        "id": "10001",
        "name": "Task",
        "subtask": "false",
        "hierarchyLevel": "0",
    }
    assert fields["status"]["statusCategory"]["key"] == "new"
    assert fields["labels"] == ["dns", "staging"]
    # Character references are decoded, newlines kept.
    assert fields["description"].startswith("Records in *staging* expire & must be renewed\n\nh2. Steps\n")
    assert data["user"]["displayName"] == "Ada Example"


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml", "text/xml; charset=utf-8", "Application/XML"])
def test_xml_content_types_are_accepted(content_type: str) -> None:
    event = parse_event(fixture_bytes("issue_created.xml"), content_type, RECEIVED_MS)
    assert event.issue_id == "10060"
    assert file_extension(content_type) == "xml"


def test_billion_laughs_is_rejected_and_parsing_completes() -> None:
    # Run in a child process with a deadline: a regression that expands the entities fails this test
    # (TimeoutExpired) instead of hanging or exhausting the test runner's memory.
    script = (
        "import json\n"
        "from pipeline.errors import WebhookRejected\n"
        "from pipeline.payload import parse_event\n"
        "from tests.builders import fixture_bytes\n"
        "try:\n"
        "    parse_event(fixture_bytes('billion_laughs.xml'), 'application/xml', 1)\n"
        "except WebhookRejected as exc:\n"
        "    print(json.dumps({'status': exc.status, 'code': exc.code}))\n"
        "else:\n"
        "    print(json.dumps({'status': None}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": 400, "code": "invalid_xml"}


def test_billion_laughs_never_reaches_the_parser_when_rejected_in_process() -> None:
    # The subprocess test above guards against hangs; this one checks the error a client sees.
    error = rejected(fixture_bytes("billion_laughs.xml"), "application/xml")
    assert error.status == 400
    assert error.code == "invalid_xml"
    assert "DOCTYPE" in error.detail
    assert "lol" not in error.detail


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?>\n<!DOCTYPE webhook>\n<webhook><webhookEvent>project_created</webhookEvent></webhook>',
        b"<!doctype webhook><webhook><webhookEvent>project_created</webhookEvent></webhook>",
        b'<?xml version="1.0"?><!DOCTYPE webhook [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<webhook><webhookEvent>project_created</webhookEvent><x>&xxe;</x></webhook>",
        b'<!DOCTYPE webhook SYSTEM "http://example.invalid/evil.dtd">'
        b"<webhook><webhookEvent>project_created</webhookEvent></webhook>",
    ],
)
def test_xml_with_a_doctype_is_rejected(body: bytes) -> None:
    error = rejected(body, "application/xml")
    assert (error.status, error.code) == (400, "invalid_xml")


@pytest.mark.parametrize(
    "body",
    [
        b"<webhook><webhookEvent>project_created</webhookEvent>",  # unclosed
        b"not xml at all",
        b"",
        b"<a/><b/>",  # two roots
    ],
)
def test_malformed_xml_is_rejected_with_400(body: bytes) -> None:
    error = rejected(body, "application/xml")
    assert (error.status, error.code) == (400, "invalid_xml")


@pytest.mark.parametrize("body", [b"<webhook/>", b"<webhook>just text</webhook>"])
def test_xml_root_without_children_is_not_a_webhook(body: bytes) -> None:
    error = rejected(body, "application/xml")
    assert error.status == 400
    assert error.code == "not_a_webhook"


def test_xml_issue_event_without_issue_id_is_rejected() -> None:
    body = b"<webhook><webhookEvent>jira:issue_updated</webhookEvent><issue><key>OPS-1</key></issue></webhook>"
    error = rejected(body, "text/xml")
    assert (error.status, error.code) == (400, "missing_issue_id")


# --- content types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8", "APPLICATION/JSON"],
)
def test_json_content_types_with_parameters_are_accepted(content_type: str) -> None:
    event = parse_event(fixture_bytes("issue_created.json"), content_type, RECEIVED_MS)
    assert event.issue_id == "10042"
    assert media_type(content_type) == "application/json"
    assert file_extension(content_type) == "json"


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("text/plain", "text/plain"),
        ("text/plain; charset=utf-8", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        (None, "none"),
        ("", "none"),
    ],
)
def test_other_content_types_are_refused_with_415(content_type: str | None, shown: str) -> None:
    # Given a valid Jira payload under the wrong (or no) content type
    error = rejected(fixture_bytes("issue_created.json"), content_type)

    # Then it is a 415 whose detail names what was sent and what is accepted
    assert error.status == 415
    assert error.code == "unsupported_media_type"
    assert shown in error.detail
    assert "application/json" in error.detail
    assert error.body() == {"error": "unsupported_media_type", "detail": error.detail}


# --- 400s -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b'{"webhookEvent": "jira:issue_created",',
        b'{"webhookEvent": "jira:issue_created", "x": "\xff\xfe"}',  # not UTF-8
        '{"webhookEvent": "jira:issue_created"}'.encode("utf-16"),
    ],
)
def test_unparseable_json_is_rejected_with_400(body: bytes) -> None:
    error = rejected(body)
    assert error.status == 400
    assert error.code == "invalid_json"
    assert error.detail


def test_deeply_nested_json_is_rejected_with_400_not_a_crash() -> None:
    # A body the JSON parser cannot handle is still "unparseable": a 400, never an unhandled error.
    body = b'{"webhookEvent": "jira:issue_created", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    error = rejected(body)
    assert error.status == 400
    assert error.code == "invalid_json"


def test_json_with_an_overlong_integer_is_rejected_with_400_not_a_crash() -> None:
    body = b'{"webhookEvent": "jira:issue_created", "timestamp": ' + b"1" * 5000 + b"}"
    error = rejected(body)
    assert error.status == 400
    assert error.code == "invalid_json"


@pytest.mark.parametrize("body", [b"[]", json.dumps([fixture_json("issue_created.json")]).encode(), b"42", b'"x"'])
def test_json_that_is_not_an_object_is_rejected(body: bytes) -> None:
    error = rejected(body)
    assert (error.status, error.code) == (400, "not_a_webhook")


@pytest.mark.parametrize("value", [None, "", 5, ["jira:issue_created"]])
def test_payload_without_a_webhook_event_name_is_rejected(value: Any) -> None:
    data = fixture_json("issue_created.json")
    if value is None:
        del data["webhookEvent"]
    else:
        data["webhookEvent"] = value
    error = rejected(data)
    assert (error.status, error.code) == (400, "not_a_webhook")
    assert "webhookEvent" in error.detail


@pytest.mark.parametrize("issue_id", [None, "", "OPS-17", "10042abc", "-5", "1.5", True])
def test_issue_event_without_numeric_issue_id_is_rejected(issue_id: Any) -> None:
    data = fixture_json("issue_updated.json")
    if issue_id is None:
        del data["issue"]["id"]
    else:
        data["issue"]["id"] = issue_id
    error = rejected(data)
    assert (error.status, error.code) == (400, "missing_issue_id")
    assert "jira:issue_updated" in error.detail


@pytest.mark.parametrize("issue_id", ["\u00b2", "\u0661\u0662", "\uff11\uff10"])
def test_issue_id_made_of_non_ascii_digits_is_not_numeric(issue_id: str) -> None:
    # "²", Arabic-Indic "١٢" and full-width "１０" pass str.isdigit() but are not a Jira issue id;
    # they would also be an invalid SQS message group.
    data = fixture_json("issue_updated.json")
    data["issue"]["id"] = issue_id
    error = rejected(data)
    assert (error.status, error.code) == (400, "missing_issue_id")


def test_issue_event_without_any_issue_is_rejected() -> None:
    data = fixture_json("issue_deleted.json")
    del data["issue"]
    assert rejected(data).code == "missing_issue_id"


def test_comment_event_without_issue_is_rejected() -> None:
    data = fixture_json("comment_created.json")
    del data["issue"]
    assert rejected(data).code == "missing_issue_id"


def test_worklog_event_without_issue_id_is_rejected() -> None:
    data = fixture_json("worklog_created.json")
    del data["worklog"]["issueId"]
    assert rejected(data).code == "missing_issue_id"


def test_unknown_non_issue_event_is_accepted() -> None:
    event = parse({"webhookEvent": "user_created", "timestamp": 5, "user": {"accountId": "abc"}})
    assert event.issue_id is None
    assert event.event_name == "user_created"


# --- event ids ------------------------------------------------------------------------------------


def test_same_identifier_gives_the_same_event_id_whatever_the_body() -> None:
    a = event_id_for("3f1c2d7e-5a0b-4e1c-9c2a-1b2c3d4e5f60", fixture_bytes("issue_created.json"))
    b = event_id_for("3f1c2d7e-5a0b-4e1c-9c2a-1b2c3d4e5f60", fixture_bytes("issue_updated.json"))
    assert a == b == "3f1c2d7e-5a0b-4e1c-9c2a-1b2c3d4e5f60"


def test_different_identifiers_give_different_event_ids() -> None:
    body = fixture_bytes("issue_created.json")
    assert event_id_for("delivery-1", body) != event_id_for("delivery-2", body)


@pytest.mark.parametrize(
    "identifier", ["../../etc/passwd", "a/b", "with space", "x" * 101, "ünïcode", "abc\n", "id\r\nX-Evil: 1"]
)
def test_unsafe_identifier_is_hashed_to_a_safe_id(identifier: str) -> None:
    event_id = event_id_for(identifier, b"{}")
    assert event_id == hashlib.sha256(identifier.encode()).hexdigest()
    assert SAFE_ID.fullmatch(event_id)
    # Still deterministic per identifier.
    assert event_id_for(identifier, b"other body") == event_id


@pytest.mark.parametrize("identifier", [None, ""])
def test_without_identifier_the_event_id_is_the_sha256_of_the_body(identifier: str | None) -> None:
    body = fixture_bytes("issue_created.json")
    assert event_id_for(identifier, body) == hashlib.sha256(body).hexdigest()
    assert event_id_for(identifier, body + b" ") != event_id_for(identifier, body)


@given(identifier=st.one_of(st.none(), st.text(max_size=300)), body=st.binary(max_size=200))
@example(identifier="delivery-1\n", body=b"{}")
@example(identifier="x" * 100, body=b"")
@example(identifier="x" * 101, body=b"")
def test_event_id_is_always_safe_and_deterministic(identifier: str | None, body: bytes) -> None:
    event_id = event_id_for(identifier, body)
    assert SAFE_ID.fullmatch(event_id), repr(event_id)
    assert event_id_for(identifier, body) == event_id


# --- message groups -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("issue_created.json", "10042"),
        ("issue_moved.json", "10042"),  # the id survives the move, the key does not
        ("comment_created.json", "10042"),
        ("worklog_created.json", "10042"),
        ("issue_created_adf.json", "10050"),
        ("project_created.json", "project-10002"),
        ("sprint_started.json", "sprint-37"),
    ],
)
def test_message_group(name: str, group: str) -> None:
    assert message_group(parse(fixture_bytes(name))) == group


def test_message_group_for_xml_issue_event_is_the_issue_id() -> None:
    event = parse_event(fixture_bytes("issue_created.xml"), "application/xml", RECEIVED_MS)
    assert message_group(event) == "10060"


def test_message_group_without_an_entity_falls_back_to_the_event_name() -> None:
    event = parse({"webhookEvent": "jira:version_released", "timestamp": 5})
    assert message_group(event) == "event-jira:version_released"


@given(entity_id=st.one_of(st.text(max_size=300), st.integers()), kind=st.sampled_from(["project", "version", "board"]))
@example(entity_id="a b\nc\u00e9", kind="project")
def test_message_group_is_always_a_valid_sqs_group(entity_id: Any, kind: str) -> None:
    event = parse({"webhookEvent": f"{kind}_updated", "timestamp": 5, kind: {"id": entity_id}})
    assert SQS_GROUP.fullmatch(message_group(event)), message_group(event)


# --- changelog ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "changelog_id"),
    [
        ("issue_updated.json", 10789),
        ("issue_updated_assignee.json", 10790),
        ("issue_moved.json", 10795),
        ("issue_created.json", 0),  # no changelog
        ("comment_created.json", 0),
    ],
)
def test_changelog_id_from_fixtures(name: str, changelog_id: int) -> None:
    assert parse(fixture_bytes(name)).changelog_id == changelog_id


@pytest.mark.parametrize(("value", "expected"), [("10788", 10788), (7, 7), ("abc", 0), (None, 0), ("", 0)])
def test_changelog_id_parsing(value: Any, expected: int) -> None:
    data = fixture_json("issue_updated.json")
    data["changelog"]["id"] = value
    assert parse(data).changelog_id == expected


def test_changelog_that_is_not_an_object_counts_as_zero() -> None:
    data = fixture_json("issue_updated.json")
    data["changelog"] = [{"id": "5"}]
    assert parse(data).changelog_id == 0


def test_changelog_id_compares_numerically() -> None:
    # "9" < "10" as numbers; a string comparison would get this wrong.
    low, high = fixture_json("issue_updated.json"), fixture_json("issue_updated.json")
    low["changelog"]["id"], high["changelog"]["id"] = "9", "10"
    assert parse(low).changelog_id < parse(high).changelog_id
