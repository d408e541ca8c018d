"""Refusal counts (pipeline/refusals.py): few writes under a flood, summed across instances, "all refused" rightly.

Clocks are given, never read, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline import services
from pipeline.messages import QueuedEvent
from pipeline.refusals import AcceptedMarker, RefusalCounter, minute_of, report
from pipeline.settings import Settings
from pipeline.store import WEBHOOK_ACCEPTED_KEY, webhook_refused_key

NOON = 1764072000.0  # 2025-11-25T12:00:00Z


class CountingStore:
    """Stands in for the Store: keeps each write as it was made."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def put_json(self, key: str, data: dict[str, Any]) -> None:
        self.writes.append((key, json.loads(json.dumps(data))))


def test_a_flood_of_refusals_costs_an_instance_a_few_writes_a_minute() -> None:
    store = CountingStore()
    counter = RefusalCounter(instance="i-1", flush_seconds=10)
    # Given one ingest instance refusing 600 deliveries within one minute
    for n in range(600):
        counter.refused("signature", store, NOON + n * 0.1)
    # Then it wrote each of its first 10 refusals (a few are counted exactly), then at most every 10 s, one key
    assert len(store.writes) == 10 + 5
    assert {key for key, _ in store.writes} == {"ops/webhook/refused/202511251200/i-1.json"}
    assert [data["refused"]["signature"] for _, data in store.writes[:10]] == list(range(1, 11))
    assert store.writes[-1][1]["refused"]["signature"] == 510
    # When the next minute starts, its first refusal is written at once, and so is what the last minute owed
    counter.refused("size", store, NOON + 60)
    assert [(key, data["refused"]) for key, data in store.writes[-2:]] == [
        ("ops/webhook/refused/202511251200/i-1.json", {"signature": 600, "size": 0, "shape": 0}),
        ("ops/webhook/refused/202511251201/i-1.json", {"signature": 0, "size": 1, "shape": 0}),
    ]


def test_a_failed_write_is_made_good_by_the_next_one() -> None:
    store = CountingStore()
    counter = RefusalCounter(instance="i-2", flush_seconds=10)
    real_put = store.put_json
    store.put_json = lambda key, data: (_ for _ in ()).throw(ConnectionError("down"))
    counter.refused("signature", store, NOON)
    store.put_json = real_put
    counter.refused("signature", store, NOON + 11)
    assert store.writes == [
        (
            "ops/webhook/refused/202511251200/i-2.json",
            {"minute": "202511251200", "instance": "i-2", "refused": {"signature": 2, "size": 0, "shape": 0}},
        )
    ]


def _record(source: str, received_ms: int) -> dict[str, Any]:
    queued = QueuedEvent(f"e-{received_ms}", received_ms, "application/json", "raw/x.json", b"{}", source=source)
    return {"messageId": f"m-{received_ms}", "body": queued.to_json()}


def test_the_writer_notes_the_newest_webhook_at_most_once_a_minute_and_never_a_reconcile_feed() -> None:
    store = CountingStore()
    marker = AcceptedMarker()
    now_ms = int(NOON * 1000)
    marker.note([_record("webhook", now_ms - 5), _record("webhook", now_ms)], store)
    marker.note([_record("webhook", now_ms + 30_000)], store)
    marker.note([_record("reconcile", now_ms + 120_000)], store)
    marker.note([_record("webhook", now_ms + 61_000), _record("reconcile", now_ms + 62_000)], store)
    assert store.writes == [
        (WEBHOOK_ACCEPTED_KEY, {"received_ms": now_ms}),
        (WEBHOOK_ACCEPTED_KEY, {"received_ms": now_ms + 61_000}),
    ]


def test_health_sums_every_instance_over_the_last_hour(settings: Settings) -> None:
    store = services.store()
    for minutes_ago, instance, counts in [
        (0, "a", {"signature": 3}),
        (0, "b", {"signature": 2, "shape": 1}),
        (59, "a", {"size": 4}),
        (60, "a", {"signature": 100}),  # an hour ago: out of the window
        (61, "c", {"signature": 100}),
    ]:
        key = webhook_refused_key(minute_of(NOON - minutes_ago * 60), instance)
        store.put_json(key, {"refused": {"signature": 0, "size": 0, "shape": 0, **counts}})
    found = report(store, NOON + 30)
    assert found.last_hour == {"signature": 5, "size": 4, "shape": 1}
    assert found.refused_recently and found.unread == 0
    # No accepted delivery known: every delivery was refused
    assert found.last_accepted_ms is None and found.all_refused


def test_all_refused_only_when_nothing_was_accepted_in_the_last_15_minutes(settings: Settings) -> None:
    store = services.store()
    store.put_json(webhook_refused_key(minute_of(NOON - 14 * 60), "a"), {"refused": {"signature": 1}})
    # Accepted 10 minutes ago: some deliveries get through
    store.put_json(WEBHOOK_ACCEPTED_KEY, {"received_ms": int((NOON - 600) * 1000)})
    assert not report(store, NOON).all_refused
    # Accepted 20 minutes ago, refused since: all refused
    store.put_json(WEBHOOK_ACCEPTED_KEY, {"received_ms": int((NOON - 1200) * 1000)})
    assert report(store, NOON).all_refused
    # Refused only 20 minutes ago: nothing recent to worry about, but still counted for the hour
    later = report(store, NOON + 6 * 60)
    assert not later.refused_recently and not later.all_refused and later.last_hour["signature"] == 1
