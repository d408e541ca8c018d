"""The committer and its events (functions/committer.py, pipeline/events_out.py): publishing follows the push and
can never undo it; what could not be published goes out with a later run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline import events_out, services
from pipeline.store import EVENTS_OUTBOX_KEY
from tests.functions.test_committer import committed, invoke, queue_changes, waiting
from tests.harness import Pipeline


def published(pipeline: Pipeline) -> list[str]:
    path = pipeline.settings.events_file
    assert path is not None
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["detail"]["version"].split("-", 1)[1] for line in lines]


def test_a_publisher_that_breaks_leaves_the_push_and_the_delete_alone(
    any_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given changes waiting, and events that cannot even be made
    queue_changes(any_pipeline, [("issue_created.json", "p-1"), ("issue_updated.json", "p-2")])

    def broken(*_: Any) -> Any:
        raise RuntimeError("events broke")

    monkeypatch.setattr("functions.committer.events_for", broken)
    # When the committer runs
    invoke()
    # Then the changes are committed and gone from the queue all the same
    assert committed(any_pipeline) == ["p-1", "p-2"] and waiting(any_pipeline) == 0
    assert published(any_pipeline) == []


def test_events_the_sink_refused_go_out_with_the_next_run_before_newer_ones(any_pipeline: Pipeline) -> None:
    # Given a committer whose event file cannot be written
    queue_changes(any_pipeline, [("issue_created.json", "q-1")])
    with pytest.MonkeyPatch.context() as broken:
        broken.setattr(events_out.NdjsonSink, "put", lambda self, events: list(range(len(events))))
        broken.setattr(events_out.Publisher, "__init__", _no_backoff(events_out.Publisher.__init__))
        services.publisher.cache_clear()
        invoke()
    # Then the change is in git, its event waits in the outbox
    assert committed(any_pipeline) == ["q-1"] and published(any_pipeline) == []
    held = services.store().read_json(EVENTS_OUTBOX_KEY)
    assert held is not None and len(held.data["events"]) == 1

    # When the file works again and a cold committer commits the next change
    services.publisher.cache_clear()
    queue_changes(any_pipeline, [("issue_updated.json", "q-2")])
    invoke()
    # Then the waiting event goes first, then the new one, and the outbox is empty
    assert published(any_pipeline) == ["q-1", "q-2"]
    emptied = services.store().read_json(EVENTS_OUTBOX_KEY)
    assert emptied is not None and emptied.data["events"] == []


def _no_backoff(init: Any) -> Any:
    def quick(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "sleep": lambda _: None})

    return quick
