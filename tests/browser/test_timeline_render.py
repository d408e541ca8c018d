"""The timeline's rendering without a browser: escaping, word diffs, zones, paging links."""

from __future__ import annotations

from datetime import UTC

import pytest

from pipeline import timeline
from pipeline.errors import JSyncError

HOSTILE = "<script>alert(1)</script>\"' onmouseover=alert(2) &amp;"


def view(items: list[dict], **overrides: object) -> timeline.Timeline:
    base = {
        "ref": "OPS-17",
        "key": "OPS-17",
        "summary": HOSTILE,
        "items": items,
        "older_href": None,
        "zone": None,
        "gone": None,
        "favicon": "/assets/x/favicon.svg",
        "nonce": "n0nce",
    }
    return timeline.Timeline(**{**base, **overrides})  # type: ignore[arg-type]


def item(**overrides: object) -> dict:
    return {
        "version": "1764000100456-e1",
        "event": "jira:issue_updated",
        "event_time": 1764000100456,
        "actor": {"displayName": HOSTILE},
        "changes": [{"field": "summary", "name": HOSTILE, "from": HOSTILE, "to": "plain"}],
        **overrides,
    }


def test_every_jira_text_is_escaped() -> None:
    page = timeline.render(view([item()], gone=HOSTILE, ref=HOSTILE[:20]))
    # Only the page's own script runs: one, carrying the nonce
    assert page.count("<script") == 1 and '<script nonce="n0nce">' in page
    assert "<script>alert" not in page and '" onmouseover' not in page and "' onmouseover" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp;amp;" in page


def test_long_text_is_a_word_diff_and_short_values_are_from_to() -> None:
    before = "The export fails for large projects. " * 3
    after = before.replace("large", "<b>huge</b>", 1)
    page = timeline.render(view([item(changes=[{"field": "description", "from": before, "to": after}])]))
    assert "<del>large</del><ins>&lt;b&gt;huge&lt;/b&gt;</ins>" in page
    short = timeline.render(view([item(changes=[{"field": "status", "from": None, "to": "Done"}])]))
    assert '<span class="empty">none</span>' in short and "<ins>Done</ins>" in short
    # A change without a name shows its field id
    assert "<th>status</th>" in short


def test_word_diff_keeps_whitespace_and_escapes() -> None:
    assert timeline.word_diff("a b\nc", "a x\nc") == "a <del>b</del><ins>x</ins>\nc"
    assert timeline.word_diff("<", "&") == "<del>&lt;</del><ins>&amp;</ins>"


def test_times_in_utc_or_the_zone_asked_for() -> None:
    utc = timeline.render(view([item()]))
    assert '<time datetime="2025-11-24T16:01:40.456Z">2025-11-24 16:01:40 UTC</time>' in utc
    tokyo = timeline.render(view([item()], zone=timeline.zone("Asia/Tokyo")))
    assert ">2025-11-25 01:01:40 JST</time>" in tokyo and "<script" not in tokyo
    assert timeline.zone(None) is None and timeline.zone("UTC") is not None
    assert timeline.zone("UTC").utcoffset(None) == UTC.utcoffset(None)  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "Europe/", "a" * 90])
def test_an_unknown_zone_is_a_400(name: str) -> None:
    with pytest.raises(JSyncError) as raised:
        timeline.zone(name)
    assert raised.value.status == 400 and raised.value.code == "invalid_tz"


def test_older_link_keeps_limit_and_zone() -> None:
    assert timeline.older_href(None, 50, "UTC") is None
    assert timeline.older_href("abc+/=", 10, "Europe/Berlin") == "?cursor=abc%2B%2F%3D&limit=10&tz=Europe%2FBerlin"


def test_a_move_and_a_deletion_are_named() -> None:
    moved = item(changes=[{"field": "Key", "from": "OPS-17", "to": "PLAT-5"}])
    deleted = item(event="jira:issue_deleted", changes=[], actor=None)
    page = timeline.render(view([deleted, moved], older_href="?cursor=x&limit=2"))
    assert "Moved OPS-17 → PLAT-5" in page and '<li class="version deleted"' in page
    assert "someone (Jira did not say)" in page
    assert '<a rel="next" href="?cursor=x&amp;limit=2">' in page
