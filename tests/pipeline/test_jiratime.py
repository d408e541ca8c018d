"""Unit tests for pipeline.jiratime: Jira datetimes as instants, and the one UTC form documents store them in."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.jiratime import canonical, canonicalize, epoch_ms, same_instant

UTC_FORM = "2026-10-26T09:07:02.225+0000"


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        ("2026-10-26T09:07:02.225+0000", UTC_FORM),
        ("2026-10-26T04:07:02.225-0500", UTC_FORM),
        ("2026-10-26T14:37:02.225+0530", UTC_FORM),
        ("2026-10-26T14:37:02.225+05:30", UTC_FORM),
        ("2026-10-26T09:07:02.225Z", UTC_FORM),
        ("2026-10-26T09:07:02.225-00:00", UTC_FORM),
        ("2026-10-26T04:07:02-0500", "2026-10-26T09:07:02.000+0000"),  # no fraction: three zeros
        ("2026-10-26T04:07:02.2-0500", "2026-10-26T09:07:02.200+0000"),
        ("2026-10-26T04:07:02.225999-0500", UTC_FORM),  # below a millisecond is dropped, as epoch_ms drops it
        ("2026-10-26T00:30:00.000+0100", "2026-10-25T23:30:00.000+0000"),  # across midnight
        ("2026-01-01T03:00:00.000+1400", "2025-12-31T13:00:00.000+0000"),  # and across a year
    ],
)
def test_canonical_is_utc_in_jiras_format_whatever_the_offset(rendered: str, expected: str) -> None:
    assert canonical(rendered) == expected
    assert epoch_ms(rendered) == epoch_ms(expected)


@pytest.mark.parametrize(
    "value",
    [
        "2026-10-26",  # a date (duedate): no instant to move
        "2026-10-26T09:07:02.225",  # no offset: whose zone would it be?
        "2026-10-26 09:07:02.225+0000",  # a space, not a T
        "2026-10-26T09:07:02.225+0000\n",
        " 2026-10-26T09:07:02.225+0000",
        "2026-10-26T09:07:02.1234567+0000",  # seven digits: not Jira's
        "2026-02-30T09:07:02.225+0000",  # no such day
        "0001-01-01T00:30:00.000+0100",  # its UTC is before year 1
        "Fix the 2026-10-26T09:07:02.225-0500 outage",
        "1761469622225",
        "",
        "OPS-17",
    ],
)
def test_anything_else_is_no_jira_datetime(value: str) -> None:
    assert canonical(value) is None


def test_canonical_of_canonical_is_itself() -> None:
    assert canonical(UTC_FORM) == UTC_FORM
    once = canonical("2026-03-29T01:59:59.999-0500")
    assert once is not None and canonical(once) == once


def test_same_instant_compares_times_as_instants_and_the_rest_as_values() -> None:
    assert same_instant("2026-10-26T04:07:02.225-0500", UTC_FORM)
    assert not same_instant("2026-10-26T04:07:02.226-0500", UTC_FORM)
    assert same_instant(None, None) and same_instant("x", "x") and not same_instant("x", "y")
    assert not same_instant("2026-10-26", "2026-10-26T00:00:00.000+0000")


def rest_issue() -> dict[str, Any]:
    """An issue as REST renders it in a -0500 site, with free text that happens to read like a time."""
    trap = "2026-10-26T04:07:02.225-0500"
    return {
        "id": "10001",
        "key": "OPS-1",
        "fields": {
            "created": "2026-10-25T23:00:00.000-0500",
            "updated": "2026-10-26T04:07:02.225-0500",
            "duedate": "2026-10-26",
            "summary": trap,
            "environment": trap,
            "description": {
                "type": "doc",
                "version": 1,
                "content": [{"type": "paragraph", "content": [{"type": "text", "text": trap}]}],
            },
            "labels": [trap],
            "customfield_10020": [{"id": 7, "name": trap, "startDate": "2026-10-20T08:00:00.000Z"}],
            "customfield_10050": "2026-10-26T10:07:02.225+0100",
            "customfield_10060": {"value": trap, "id": "3"},
            "comment": {
                "comments": [{"id": "1", "body": trap, "created": "2026-10-26T04:07:02.225-0500"}],
                "total": 1,
            },
            "worklog": {"worklogs": [{"id": "9", "comment": trap, "started": "2026-10-26T04:00:00.000-0500"}]},
            "workratio": -1,
        },
    }


def test_canonicalize_moves_every_time_to_utc_and_leaves_free_text_alone() -> None:
    doc = rest_issue()
    canonicalize(doc)

    fields = doc["fields"]
    trap = "2026-10-26T04:07:02.225-0500"
    assert (fields["created"], fields["updated"]) == ("2026-10-26T04:00:00.000+0000", UTC_FORM)
    assert fields["customfield_10050"] == UTC_FORM
    assert fields["customfield_10020"] == [{"id": 7, "name": trap, "startDate": "2026-10-20T08:00:00.000+0000"}]
    assert fields["comment"]["comments"][0] == {"id": "1", "body": trap, "created": UTC_FORM}
    assert fields["worklog"]["worklogs"][0]["started"] == "2026-10-26T09:00:00.000+0000"
    # Untouched: what people typed, dates without a time, numbers
    untouched = rest_issue()["fields"]
    for name in ("duedate", "summary", "environment", "description", "labels", "customfield_10060", "workratio"):
        assert fields[name] == untouched[name], name
    assert fields["worklog"]["worklogs"][0]["comment"] == trap


def test_canonicalize_is_idempotent_and_walks_lists_at_the_top() -> None:
    doc = rest_issue()
    canonicalize(doc)
    again = copy.deepcopy(doc)
    canonicalize(again)
    assert again == doc
    items: list[Any] = ["2026-10-26T04:07:02.225-0500", [{"created": "2026-10-26T04:07:02.225-0500"}]]
    canonicalize(items)
    assert items == [UTC_FORM, [{"created": UTC_FORM}]]


def test_canonicalize_survives_nesting_deeper_than_the_recursion_limit() -> None:
    doc: dict[str, Any] = {"at": "2026-10-26T04:07:02.225-0500"}
    for _ in range(5000):
        doc = {"content": [doc]}
    canonicalize(doc)
    while "content" in doc:
        doc = doc["content"][0]
    assert doc == {"at": UTC_FORM}


def jira_rendering(moment: datetime, colon: bool) -> str:
    """How Jira (or another renderer) writes `moment` in its own offset: millisecond precision, `±HHMM`."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}" + moment.strftime("%z")
    return text[:-2] + ":" + text[-2:] if colon else text


@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2999, 12, 30), timezones=st.just(UTC)),
    offset_minutes=st.integers(-14 * 60, 14 * 60),
    colon=st.booleans(),
)
def test_any_offset_rendering_gives_the_utc_rendering(moment: datetime, offset_minutes: int, colon: bool) -> None:
    # Given one instant rendered in UTC and in any other offset
    in_utc = jira_rendering(moment, colon=False)
    elsewhere = jira_rendering(moment.astimezone(timezone(timedelta(minutes=offset_minutes))), colon)
    # Then both have the UTC rendering as canonical form, and the same instant
    assert canonical(elsewhere) == canonical(in_utc) == in_utc
    assert epoch_ms(elsewhere) == epoch_ms(in_utc)
    assert same_instant(elsewhere, in_utc)
