"""Project counts stay exact under late redeliveries: the listing item remembers it was counted."""

from __future__ import annotations

from pipeline import services
from pipeline.index import update_indexes
from pipeline.store import project_count_key
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
