"""Property: any interleaving, duplication and reordering of deliveries ends in the newest state,
one commit per state-advancing event and none for a replay."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import reader, services
from pipeline.snapshot import issue_document
from tests.builders import fixture_json, summary_edit
from tests.environments import BACKENDS, fresh_environment
from tests.harness import Pipeline

BASE = fixture_json("issue_updated.json")


def make_event(issue: int, version: int) -> tuple[str, bytes]:
    return f"wh-{issue}-{version}", summary_edit(20000 + issue, f"OPS-{100 + issue}", version, 50000 + version)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[dict[int, int], list[tuple[int, int]], list[int]]:
    versions = {i: draw(st.integers(1, 4)) for i in range(draw(st.integers(1, 3)))}
    events = [(i, v) for i, n in versions.items() for v in range(n)]
    copies = [e for e in events for _ in range(draw(st.integers(1, 3)))]
    order = draw(st.permutations(copies))
    drain_after = draw(st.lists(st.integers(0, len(order) - 1), max_size=3))
    return versions, list(order), drain_after


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_any_delivery_order_converges(
    moto_endpoint: str, backend: str, case: tuple[dict[int, int], list[tuple[int, int]], list[int]]
) -> None:
    versions, order, drain_after = case
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as root:
        pipeline = Pipeline(fresh_environment(moto_endpoint, Path(root), mp, backend))
        # When every delivery arrives, in this order, with drains at arbitrary points
        for n, (issue, version) in enumerate(order):
            identifier, body = make_event(issue, version)
            assert pipeline.deliver(body, identifier=identifier)["statusCode"] == 202
            if n in drain_after:
                pipeline.drain()
        pipeline.drain()

        # Then each issue's newest version is in latest/ and in git
        for issue, count in versions.items():
            newest = json.loads(make_event(issue, count - 1)[1])["issue"]
            assert pipeline.latest(str(20000 + issue))["issue"] == issue_document(newest)
            stored = pipeline.git_file(f"issues/OPS/OPS-{100 + issue}.json")
            assert stored is not None and json.loads(stored) == issue_document(newest)

        # And exactly one commit per state-advancing event, in the order they advanced, none for replays
        advancing: list[str] = []
        best: dict[int, int] = {}
        for issue, version in order:  # each issue's events are processed in delivery order (one FIFO group)
            if version > best.get(issue, -1):
                best[issue] = version
                advancing.append(f"wh-{issue}-{version}")
        committed = [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())]
        assert sorted(committed) == sorted(advancing)
        for issue in versions:
            mine = [e for e in committed if e.startswith(f"wh-{issue}-")]
            assert mine == [e for e in advancing if e.startswith(f"wh-{issue}-")]


# --- history: newest first in the order the history index kept before it was derived from snapshots -----------

CREATED = fixture_json("issue_created.json")
DELETED = fixture_json("issue_deleted.json")


def history_event(kind: str, time_ms: int, changelog_id: int) -> bytes:
    """Issue 30000 (OPS-300): its creation, an update with that changelog id, or its deletion."""
    payload = copy.deepcopy({"created": CREATED, "updated": BASE, "deleted": DELETED}[kind])
    payload["timestamp"] = time_ms
    payload["issue"]["id"] = "30000"
    payload["issue"]["key"] = "OPS-300"
    if kind == "updated":
        payload["issue"]["fields"]["summary"] = f"change {changelog_id}"
        payload["changelog"] = {"id": str(changelog_id), "items": copy.deepcopy(BASE["changelog"]["items"])}
    return json.dumps(payload).encode()


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[str, str, int, int]], list[int], int]:
    """(event id, kind, time, changelog id) of one issue's events, the order they are delivered in (repeats are
    redeliveries), and a page size. Times tie often, with changelog ids that order them otherwise than event ids."""
    base = int(CREATED["timestamp"])
    events = [(f"hc-{draw(st.integers(0, 999)):03d}", "created", base, 0)]
    time_ms = base
    for n in range(draw(st.integers(1, 6))):
        time_ms += draw(st.sampled_from([0, 0, 1, 1000]))
        events.append((f"h{draw(st.sampled_from('abcxyz'))}-{n}", "updated", time_ms, 20_000 - 10 * n))
    if draw(st.booleans()):  # a deletion, at any time among them (a late one is ranked on top)
        events.append(("hd-0", "deleted", base + draw(st.sampled_from([0, 1, 1000, 5000])), 0))
    copies = [n for n in range(len(events)) for _ in range(draw(st.integers(1, 2)))]
    return events, list(draw(st.permutations(copies))), draw(st.integers(1, 4))


def old_history_order(events: list[tuple[str, str, int, int]], delivered: list[int]) -> list[str]:
    """The versions as the history index listed them: each event at its order (time, changelog id, then event id
    ascending, newest first), the deletion where latest/ ranked it when it advanced there (above the newest state,
    one changelog step up), later deletions not at all."""
    state: tuple[int, int, str] | None = None
    deleted = False
    ranked: dict[str, tuple[int, int, str]] = {}
    for n in dict.fromkeys(delivered):  # a redelivery is the same event
        event_id, kind, time_ms, changelog_id = events[n]
        order = (time_ms, changelog_id, event_id)
        if kind != "deleted":
            ranked[event_id] = order
            if not deleted and (state is None or order > state):
                state = order
        elif not deleted:
            deleted = True
            state = order if state is None or order > state else (state[0], state[1], f"{state[2]}+{event_id}")
            ranked[event_id] = (state[0], state[1] + 1, event_id)
    newest_first = sorted(ranked.items(), key=lambda item: (-item[1][0], -item[1][1], item[1][2]))
    return [f"{next(e[2] for e in events if e[0] == event_id)}-{event_id}" for event_id, _ in newest_first]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=histories())
def test_history_keeps_the_order_of_the_history_index_whatever_the_arrival_order(
    moto_endpoint: str, backend: str, case: tuple[list[tuple[str, str, int, int]], list[int], int]
) -> None:
    events, delivered, limit = case
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as root:
        pipeline = Pipeline(fresh_environment(moto_endpoint, Path(root), mp, backend))
        # When the issue's events arrive in this order, redeliveries included
        for n in delivered:
            event_id, kind, time_ms, changelog_id = events[n]
            answer = pipeline.deliver(history_event(kind, time_ms, changelog_id), identifier=event_id)
            assert answer["statusCode"] == 202
        pipeline.drain()

        # Then its history, walked page by page, lists every version once, in the order the index kept
        walked: list[str] = []
        cursor: str | None = None
        for _ in range(len(events) + 1):
            page = reader.history(services.store(), "30000", limit, cursor)
            assert len(page.items) == limit or page.next_cursor is None
            walked += [item["version"] for item in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert walked == old_history_order(events, delivered)
