"""Project counts stay exact under late redeliveries: the listing item remembers it was counted."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import services
from pipeline.index import update_indexes
from pipeline.store import Store, StoreConflict, project_count_key, project_item_key
from tests.builders import fixture_bytes
from tests.harness import Pipeline


def test_a_redelivery_after_the_replay_memory_is_gone_does_not_count_twice(pipeline: Pipeline) -> None:
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="i-1")
    pipeline.drain()
    store = services.store()
    count = store.read_json(project_count_key("OPS"))
    assert count is not None and count.data["issue_count"] == 1
    # Given the count has since forgotten its recent adjustments (hundreds of other issues moved)
    store.put_json(project_count_key("OPS"), {**count.data, "applied": []})
    # When the same latest state is indexed again (a late Jira retry of the still-newest event)
    update_indexes(store, "10042", pipeline.latest("10042"))
    # Then the issue is still counted once
    assert store.read_json(project_count_key("OPS")).data["issue_count"] == 1


def test_moves_and_deletes_keep_counts_exact(pipeline: Pipeline) -> None:
    for n, name in enumerate(["issue_created.json", "issue_moved.json", "issue_moved.json", "issue_deleted.json"]):
        pipeline.deliver(fixture_bytes(name), identifier=f"m-{min(n, 2)}" if n < 3 else "m-3")
        pipeline.drain()
        if name == "issue_moved.json":
            store = services.store()
            assert store.read_json(project_count_key("OPS")).data["issue_count"] == 0
            assert store.read_json(project_count_key("PLAT")).data["issue_count"] == 1
    assert services.store().read_json(project_count_key("PLAT")).data["issue_count"] == 0
    assert pipeline.keys("index/projects/PLAT/issues/") == []


def _count(store: Store, project: str) -> dict[str, Any]:
    found = store.read_json(project_count_key(project))
    assert found is not None
    return found.data


def _entering(issue_id: str, key: str, event_id: str) -> dict[str, Any]:
    """A latest/ state of an issue that has just entered its project (created there)."""
    doc = {"id": issue_id, "key": key, "fields": {"project": {"key": key.split("-")[0], "name": "Operations"}}}
    return {"issue": doc, "capture": {"event_id": event_id}}


def _another_writer_counts_first(store: Store, monkeypatch: pytest.MonkeyPatch, times: int | None) -> list[str]:
    """Before our count write (the first `times`, or every one) another writer counts another issue in: our
    compare-and-swap then holds a version that is gone. Returns the tokens the other writer applied."""
    real_write = store.write_json
    theirs: list[str] = []

    def write_json(key: str, data: dict[str, Any], expected: Any) -> None:
        if key == project_count_key("OPS") and (times is None or not theirs):
            current = _count(store, "OPS")
            theirs.append(f"2000{len(theirs)}:other:+")
            applied = [*current["applied"], theirs[-1]]
            store.put_json(key, {**current, "issue_count": current["issue_count"] + 1, "applied": applied})
        real_write(key, data, expected)

    monkeypatch.setattr(store, "write_json", write_json)
    return theirs


def test_a_count_another_writer_changed_meanwhile_is_read_again_and_both_count(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="i-1")
    pipeline.drain()
    store = services.store()
    assert _count(store, "OPS")["issue_count"] == 1
    theirs = _another_writer_counts_first(store, monkeypatch, times=1)
    # When OPS-18 enters OPS while another writer counts its own issue in
    update_indexes(store, "10043", _entering("10043", "OPS-18", "i-2"))
    # Then neither count is lost
    assert len(theirs) == 1
    count = _count(store, "OPS")
    assert count["issue_count"] == 3
    assert {theirs[0], "10043:i-2:+"} <= set(count["applied"])


def test_a_count_that_never_stops_changing_fails_the_event_rather_than_miscount(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import index

    monkeypatch.setattr(index, "_CAS_ATTEMPTS", 3)  # the same give-up, sooner
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="i-1")
    pipeline.drain()
    store = services.store()
    theirs = _another_writer_counts_first(store, monkeypatch, times=None)
    # When every attempt of OPS-18's count loses its race
    with pytest.raises(StoreConflict):
        update_indexes(store, "10043", _entering("10043", "OPS-18", "i-2"))
    # Then the error reaches the writer (which retries the event) and the count holds the others' only
    count = _count(store, "OPS")
    assert count["issue_count"] == 1 + len(theirs) == 4
    assert "10043:i-2:+" not in count["applied"]
    # and the item, listed already, is not marked counted: the retry counts it
    monkeypatch.undo()
    update_indexes(store, "10043", _entering("10043", "OPS-18", "i-2"))
    assert _count(store, "OPS")["issue_count"] == 5


def test_a_writer_that_died_between_counting_and_marking_counts_once_on_retry(pipeline: Pipeline) -> None:
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="i-1")
    pipeline.drain()
    store = services.store()
    assert _count(store, "OPS")["issue_count"] == 1
    # Given the writer died after the count took the issue, before it marked the listing item counted
    store.put_json(project_item_key("OPS", "10042"), {"issue_id": "10042", "counted": False})
    # When the event is captured again, and its indexes updated again
    update_indexes(store, "10042", pipeline.latest("10042"))
    # Then the count remembered this adjustment: the issue is counted once, and the item is now marked
    assert _count(store, "OPS")["issue_count"] == 1
    found = store.read_json(project_item_key("OPS", "10042"))
    assert found is not None and found.data["counted"] is True
