"""Changes out (pipeline/events_out.py): one event per change a push carried, shaped as CONTRACT §7 says, sent in
calls PutEvents takes, refused entries retried alone, what still fails kept for the next run, never one for a
replay.

Real commits on a bare git repository with the embedded store; sinks: a recording fake, the NDJSON file,
EventBridge on a moto server (delivering to an SQS target), and botocore's Stubber for PutEvents' partial failures.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pipeline import services
from pipeline.backends.embedded import Database, SqliteObjects
from pipeline.events_out import (
    DETAIL_TYPE,
    MAX_CALL_BYTES,
    MAX_ENTRIES,
    SOURCE,
    Event,
    EventBridgeSink,
    NdjsonSink,
    Publisher,
    entry_bytes,
    events_for,
)
from pipeline.events_out import destination as events_destination
from pipeline.git.commits import GitRecords, commit_batch
from pipeline.git.store import GitStore
from pipeline.messages import Change
from pipeline.settings import Settings
from pipeline.store import EVENTS_OUTBOX_KEY, Store
from tests.builders import change_of
from tests.environments import init_bare
from tests.harness import remote_commits

BRANCH = "main"
NOW = 1764100000.0
NAMES = {"customfield_10042": "Story points", "summary": "Summary"}
DETAIL_KEYS = {"issue_id", "key", "previous_key", "event", "event_time", "actor", "changes", "version", "commit"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Database(tmp_path / "jsync.db")
    yield Store(SqliteObjects(db))
    db.close()


@pytest.fixture
def remote(tmp_path: Path) -> str:
    return str(init_bare(tmp_path / "remote.git"))


@pytest.fixture
def git(tmp_path: Path, remote: str) -> Iterator[GitStore]:
    repo = GitStore(remote, BRANCH, tmp_path / "cache.git")
    yield repo
    repo.close()


def inline(change: Change) -> Any:
    return change.document


def commit(changes: list[Change], git: GitStore, records: GitRecords) -> list[Event]:
    """Commit and push `changes` as the committer does, and return the events the push calls for."""
    return events_for(changes, commit_batch(changes, git, records, inline, NAMES), NAMES, NOW)


class Recording:
    """A sink that takes what `refuse` does not name (by call number, then position) and records each call."""

    def __init__(self, refuse: dict[int, set[int]] | None = None, all_or_none: bool = False) -> None:
        self.refuse = refuse or {}
        self.max_entries, self.all_or_none = MAX_ENTRIES, all_or_none
        self.calls: list[list[Event]] = []
        self.taken: list[Event] = []

    def put(self, events: list[Event]) -> list[int]:
        refused = sorted(self.refuse.get(len(self.calls), set()) & set(range(len(events))))
        self.calls.append(list(events))
        self.taken += [e for i, e in enumerate(events) if i not in refused]
        return refused


def no_sleep(_: float) -> None:
    return None


# --- the event's shape --------------------------------------------------------------------------------------------


def test_each_committed_change_is_one_event_shaped_as_the_contract_says(
    store: Store, git: GitStore, remote: str
) -> None:
    # Given two changes of one issue, the second changing a custom field the catalogue names and one it does not
    first = change_of("101", "e-1", 1)
    second = dataclasses.replace(
        change_of("101", "e-2", 2),
        previous_key="OLD-1",
        changes=[
            {"field": "customfield_10042", "from": "3", "to": "5"},
            {"field": "customfield_99", "from": None, "to": "x"},
        ],
    )

    # When they are committed and pushed
    events = commit([first, second], git, GitRecords(store))

    # Then each is one event, in order, naming its commit on the remote, its version and its fields by name
    shas = [c.sha for c in reversed(remote_commits(remote, BRANCH))]
    assert [e["detail"]["commit"] for e in events] == shas
    event = events[1]
    assert set(event) == {"source", "detail-type", "time", "detail"}
    assert (event["source"], event["detail-type"]) == (SOURCE, DETAIL_TYPE) == ("jsync", "Jira issue changed")
    assert event["time"] == "2025-11-25T19:46:40.000Z"
    assert set(event["detail"]) == DETAIL_KEYS
    assert event["detail"] == {
        "issue_id": "101",
        "key": "BIG-101",
        "previous_key": "OLD-1",
        "event": "jira:issue_updated",
        "event_time": "2025-11-24T16:00:02.000Z",
        "actor": {"displayName": "Ada", "accountId": "ada"},
        "changes": [
            {"field": "customfield_10042", "name": "Story points", "from": "3", "to": "5"},
            {"field": "customfield_99", "name": "customfield_99", "from": None, "to": "x"},
        ],
        "version": "1764000002000-e-2",
        "commit": shas[1],
    }
    # The event time is ISO-8601 UTC, and the version is one the read API serves (`<event time ms>-<event id>`)
    assert datetime.fromisoformat(event["detail"]["event_time"]) == datetime.fromtimestamp(1764000002, UTC)


def test_a_replay_an_older_change_and_a_change_altering_nothing_get_no_event(
    store: Store, git: GitStore, remote: str
) -> None:
    records = GitRecords(store)
    assert len(commit([change_of("201", "r-1", 1), change_of("201", "r-2", 2)], git, records)) == 2
    # When the same changes come back (a crash before the delete), with an older one and a newer no-op
    same_document = dataclasses.replace(change_of("201", "r-3", 3), document=change_of("201", "r-2", 2).document)
    replay = [change_of("201", "r-1", 1), change_of("201", "r-2", 2), same_document]
    # Then the push carries nothing, and no event is made
    assert commit(replay, git, records) == []
    assert len(remote_commits(remote, BRANCH)) == 2


def test_a_value_too_long_for_one_put_events_call_is_cut_as_the_writer_cuts_it(store: Store, git: GitStore) -> None:
    # Given a change whose description grew past what PutEvents takes in one call
    long = "x" * (MAX_CALL_BYTES + 10)
    change = dataclasses.replace(
        change_of("301", "l-1", 1), changes=[{"field": "description", "from": "short", "to": long}]
    )
    [event] = commit([change], git, GitRecords(store))
    # Then the long value keeps its first 500 characters and says it was cut; the short one is as it was
    assert event["detail"]["changes"][0]["to"] == "x" * 500 + "..."
    assert event["detail"]["changes"][0]["from"] == "short"
    assert entry_bytes(event) <= MAX_CALL_BYTES


# --- publishing ---------------------------------------------------------------------------------------------------


def event_of(issue: str, n: int, size: int = 0) -> Event:
    return {"source": SOURCE, "detail-type": DETAIL_TYPE, "time": "2026-01-01T00:00:00.000Z",
            "detail": {"issue_id": issue, "version": f"{n}-v", "pad": "p" * size}}  # fmt: skip


def test_calls_hold_at_most_ten_entries_under_256_kb_and_one_event_of_an_issue(store: Store) -> None:
    sink = Recording()
    # Given 25 small events of 25 issues, 4 large ones, and 3 of one issue
    events = [event_of(str(i), 0) for i in range(25)]
    events += [event_of(f"big-{i}", 0, size=100_000) for i in range(4)]
    events += [event_of("same", n) for n in range(3)]
    Publisher(sink, store).publish(events)
    # Then every event went once, in order, in calls PutEvents takes
    assert sink.taken == events
    assert all(len(call) <= MAX_ENTRIES for call in sink.calls)
    assert all(sum(entry_bytes(e) for e in call) <= MAX_CALL_BYTES for call in sink.calls)
    assert all(len({e["detail"]["issue_id"] for e in call}) == len(call) for call in sink.calls)
    assert [len(call) for call in sink.calls[:2]] == [10, 10]
    assert max(sum(entry_bytes(e) for e in call) for call in sink.calls) > 200_000  # large ones share a call


def test_only_refused_entries_are_sent_again_and_their_issue_s_later_events_wait_for_them(store: Store) -> None:
    # Given a sink refusing the second entry of the first call (issue B's first event)
    sink = Recording(refuse={0: {1}})
    events = [event_of("A", 1), event_of("B", 1), event_of("C", 1), event_of("B", 2), event_of("A", 2)]
    sleeps: list[float] = []
    Publisher(sink, store, sleep=sleeps.append).publish(events)
    # Then the next call is only A's second event (B's second waits for B's first); the retry sends B's two alone
    assert [[e["detail"]["version"] for e in call] for call in sink.calls] == [
        ["1-v", "1-v", "1-v"],
        ["2-v"],
        ["1-v"],
        ["2-v"],
    ]
    assert [call[0]["detail"]["issue_id"] for call in sink.calls[1:]] == ["A", "B", "B"]
    assert sleeps == [0.2]  # one backoff before the retry
    taken_b = [e["detail"]["version"] for e in sink.taken if e["detail"]["issue_id"] == "B"]
    assert taken_b == ["1-v", "2-v"]
    assert store.read_json(EVENTS_OUTBOX_KEY) is None  # nothing failed for good: nothing written


def test_what_still_fails_waits_in_the_outbox_and_goes_first_at_the_next_run(store: Store) -> None:
    # Given a sink that refuses everything, three attempts
    down = Recording(refuse={n: set(range(10)) for n in range(100)})
    Publisher(down, store, sleep=no_sleep).publish([event_of("A", 1), event_of("B", 1)])
    # Then the events are kept in the store, not lost, and the push was never in question
    held = store.read_json(EVENTS_OUTBOX_KEY)
    assert held is not None and [e["detail"]["issue_id"] for e in held.data["events"]] == ["A", "B"]
    assert len(down.calls) == 3

    # When a new committer (a cold start) publishes its own batch on a sink that works
    up = Recording()
    Publisher(up, store, sleep=no_sleep).publish([event_of("A", 2)])
    # Then the kept events go first, each issue in order, and the outbox is emptied
    assert [(e["detail"]["issue_id"], e["detail"]["version"]) for e in up.taken] == [
        ("A", "1-v"),
        ("B", "1-v"),
        ("A", "2-v"),
    ]
    emptied = store.read_json(EVENTS_OUTBOX_KEY)
    assert emptied is not None and emptied.data["events"] == []


def test_a_sink_that_raises_never_fails_the_publish(store: Store) -> None:
    class Broken(Recording):
        def put(self, events: list[Event]) -> list[int]:
            raise RuntimeError("the sink broke its promise")

    Publisher(Broken(), store, sleep=no_sleep).publish([event_of("A", 1)])
    held = store.read_json(EVENTS_OUTBOX_KEY)
    assert held is not None and len(held.data["events"]) == 1


def test_an_unreadable_outbox_holds_new_events_back_rather_than_reorder_them(store: Store) -> None:
    sink = Recording()
    publisher = Publisher(sink, store)
    real = store.read_json

    def down(key: str) -> Any:
        raise OSError("store down")

    store.read_json = down  # type: ignore[method-assign]
    publisher.publish([event_of("A", 1)])
    assert sink.calls == []
    store.read_json = real  # type: ignore[method-assign]
    publisher.publish([event_of("A", 2)])
    assert [e["detail"]["version"] for e in sink.taken] == ["1-v", "2-v"]


def test_without_a_sink_nothing_is_published_or_read(store: Store) -> None:
    Publisher(None, store).publish([event_of("A", 1)])
    assert store.read_json(EVENTS_OUTBOX_KEY) is None


def test_the_ndjson_sink_appends_one_envelope_a_line(tmp_path: Path) -> None:
    path = tmp_path / "home" / "events.ndjson"
    sink = NdjsonSink(path)
    assert sink.put([event_of("A", 1), event_of("B", 1)]) == []
    assert sink.put([event_of("A", 2)]) == []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["detail"]["version"] for line in lines] == ["1-v", "1-v", "2-v"]
    assert all(set(line) == {"source", "detail-type", "time", "detail"} for line in lines)


def test_the_ndjson_sink_reports_a_write_it_could_not_make(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert NdjsonSink(tmp_path / "file" / "events.ndjson").put([event_of("A", 1)]) == [0]


# --- EventBridge ----------------------------------------------------------------------------------------------------


@pytest.fixture
def bus(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A bus on the moto server, named to the committer as a deploy with eventBusName does."""
    monkeypatch.setenv("JSYNC_EVENT_BUS", "jira")
    services.reset()
    services.aws("events").create_event_bus(Name="jira")
    yield "jira"
    services.reset()


def test_events_reach_an_eventbridge_rule_s_target(bus: str) -> None:
    # Given a rule on the bus sending JSync's events to an SQS queue
    sqs, events = services.aws("sqs"), services.aws("events")
    url = sqs.create_queue(QueueName="changes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["jsync"], "detail-type": ["Jira issue changed"], "detail": {"key": [{"prefix": "OPS-"}]}}
    events.put_rule(Name="ops", EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule="ops", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])

    # When the committer's publisher sends an OPS change and a DEV change
    publisher = services.publisher()
    assert isinstance(publisher.sink, EventBridgeSink)
    ops, dev = event_of("1", 1), event_of("2", 1)
    ops["detail"]["key"], dev["detail"]["key"] = "OPS-1", "DEV-1"
    publisher.publish([ops, dev])

    # Then the rule's target got the OPS change, its detail as published
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in got]
    assert [(b["source"], b["detail-type"], b["detail"]) for b in bodies] == [(SOURCE, DETAIL_TYPE, ops["detail"])]


def test_put_events_partial_failure_retries_only_the_refused_entry(bus: str) -> None:
    client = services.aws("events")
    sink = EventBridgeSink(client, bus)
    first, second = event_of("A", 1), event_of("B", 1)

    def entries(*events: Event) -> list[dict[str, Any]]:
        return [
            {
                "Source": SOURCE,
                "DetailType": DETAIL_TYPE,
                "Detail": json.dumps(e["detail"], separators=(",", ":")),
                "Time": datetime.fromisoformat(e["time"]),
                "EventBusName": bus,
            }
            for e in events
        ]

    with Stubber(client) as stubber:
        # PutEvents takes A's entry and refuses B's, then takes B's alone
        refused = {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}
        stubber.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"EventId": "1"}, refused]},
            {"Entries": entries(first, second)},
        )
        stubber.add_response(
            "put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "2"}]}, {"Entries": entries(second)}
        )
        store = services.store()
        Publisher(sink, store, sleep=no_sleep).publish([first, second])
        stubber.assert_no_pending_responses()
    assert store.read_json(EVENTS_OUTBOX_KEY) is None


def test_put_events_failing_as_a_whole_leaves_the_events_for_the_next_run(bus: str) -> None:
    client = services.aws("events")
    with Stubber(client) as stubber:
        for _ in range(3):
            stubber.add_client_error("put_events", "AccessDeniedException", http_status_code=400)
        store = services.store()
        Publisher(EventBridgeSink(client, bus), store, sleep=no_sleep).publish([event_of("A", 1)])
    held = store.read_json(EVENTS_OUTBOX_KEY)
    assert held is not None and len(held.data["events"]) == 1


# --- the property ---------------------------------------------------------------------------------------------------


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[list[tuple[int, int]]], list[bool], list[bool]]:
    """Batches of (issue, version) as the commits queue could hand them over: any interleaving of several issues,
    copies (redeliveries), older versions after newer (replays, redrives)."""
    versions = {i: draw(st.integers(1, 4)) for i in range(draw(st.integers(1, 3)))}
    changes = [(i, v) for i, n in versions.items() for v in range(1, n + 1)]
    copies = [c for c in changes for _ in range(draw(st.integers(1, 2)))]
    order = draw(st.permutations(copies))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=3)))
    batches = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True) if order[a:b]]
    cold = draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))  # a new committer
    refusals = draw(st.lists(st.booleans(), max_size=40))  # the sink refuses an entry when true
    return batches, cold, refusals


class Flaky(Recording):
    """Refuses entries as `refusals` says, one answer an entry, until they run out."""

    def __init__(self, refusals: list[bool]) -> None:
        super().__init__()
        self.refusals = list(refusals)

    def put(self, events: list[Event]) -> list[int]:
        refused = [i for i in range(len(events)) if self.refusals and self.refusals.pop(0)]
        self.calls.append(list(events))
        self.taken += [e for i, e in enumerate(events) if i not in refused]
        return refused


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_events_are_exactly_the_committed_changes_each_issue_in_order(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[list[list[tuple[int, int]]], list[bool], list[bool]]
) -> None:
    batches, cold, refusals = case
    root = tmp_path_factory.mktemp("property")
    db = Database(root / "jsync.db")
    store = Store(SqliteObjects(db))
    remote = str(init_bare(root / "remote.git"))
    gits: list[GitStore] = []
    sink = Flaky(refusals)
    try:
        publisher, records = None, None
        for n, batch in enumerate(batches):
            if publisher is None or cold[n]:  # a cold committer: no records or outbox in memory, a new cache
                gits.append(GitStore(remote, BRANCH, root / f"cache-{n}.git"))
                records, publisher = GitRecords(store), Publisher(sink, store, sleep=no_sleep)
            assert records is not None
            changes = [change_of(str(700 + i), f"ev-{i}-{v}", v) for i, v in batch]
            publisher.publish(commit(changes, gits[-1], records))
        # Once the sink takes everything, whatever waited goes out with the next run
        sink.refusals.clear()
        Publisher(sink, store, sleep=no_sleep).publish([])

        # Then the events taken are exactly git's commits: one each, per issue in commit order
        committed: dict[str, list[tuple[str, str]]] = {}
        for c in reversed(remote_commits(remote, BRANCH)):
            committed.setdefault(c.trailers["Jira-Issue-Id"], []).append((c.trailers["Jira-Event-Id"], c.sha))
        published: dict[str, list[tuple[str, str]]] = {}
        for e in sink.taken:
            detail = e["detail"]
            published.setdefault(detail["issue_id"], []).append((detail["version"].split("-", 1)[1], detail["commit"]))
        assert published == committed
        # ... and every issue's newest version was committed (one commit per state-advancing change)
        newest = {str(700 + i): max(v for j, v in sum(batches, []) if j == i) for i, _ in sum(batches, [])}
        assert {issue: events[-1][0] for issue, events in published.items()} == {
            issue: f"ev-{int(issue) - 700}-{v}" for issue, v in newest.items()
        }
    finally:
        for g in gits:
            g.close()
        db.close()


def test_a_change_of_thousands_of_long_fields_keeps_what_fits(store: Store, git: GitStore) -> None:
    fields = [{"field": f"customfield_{n:05d}", "from": "a" * 70, "to": "b" * 70} for n in range(8_000)]
    [event] = commit([dataclasses.replace(change_of("401", "t-1", 1), changes=fields)], git, GitRecords(store))
    assert entry_bytes(event) <= MAX_CALL_BYTES
    kept = event["detail"]["changes"]
    assert 0 < len(kept) < len(fields) and kept == [
        {**f, "name": f["field"], "from": "...", "to": "..."} for f in fields[: len(kept)]
    ]


def test_an_outbox_past_its_limit_drops_the_oldest(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.events_out.OUTBOX_LIMIT", 2)
    down = Recording(refuse={n: set(range(10)) for n in range(100)})
    Publisher(down, store, sleep=no_sleep).publish([event_of("A", 1), event_of("B", 1), event_of("C", 1)])
    held = store.read_json(EVENTS_OUTBOX_KEY)
    assert held is not None and [e["detail"]["issue_id"] for e in held.data["events"]] == ["B", "C"]


def test_an_outbox_that_cannot_be_saved_is_kept_in_memory_for_the_next_batch(store: Store) -> None:
    sink = Recording(refuse={0: {0}, 1: {0}, 2: {0}})
    publisher = Publisher(sink, store, sleep=no_sleep)
    real = store.put_json

    def down(key: str, data: Any) -> None:
        raise OSError("store down")

    store.put_json = down  # type: ignore[method-assign]
    publisher.publish([event_of("A", 1)])
    store.put_json = real  # type: ignore[method-assign]
    publisher.publish([event_of("A", 2)])
    assert [e["detail"]["version"] for e in sink.taken] == ["1-v", "2-v"]


def test_where_events_go_is_said_in_a_few_words(tmp_path: Path) -> None:
    from pipeline.settings import load_settings

    home = {"JSYNC_HOME": str(tmp_path)}
    assert events_destination(load_settings(home)) == f"NDJSON lines in {tmp_path / 'events.ndjson'}"
    assert events_destination(load_settings({**home, "JSYNC_EVENT_BUS": "jira"})) == "EventBridge bus jira"
    on_lambda = load_settings({**home, "AWS_LAMBDA_FUNCTION_NAME": "jsync-prod-committer"})
    assert events_destination(on_lambda) == "off (no eventBusName)" and on_lambda.events_file is None
