"""The read side (pipeline/reader.py) called directly, as the API routes call it: it checks what it is given itself
(the routes' path patterns are a first guard, not the only one) and reads an issue's history from its snapshots."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline import reader, services
from pipeline.errors import JSyncError
from pipeline.store import Store
from tests.builders import fixture_bytes
from tests.harness import Pipeline


@pytest.fixture
def story(pipeline: Pipeline) -> Pipeline:
    for n, name in enumerate(["issue_created.json", "issue_updated.json", "issue_updated_assignee.json"]):
        assert pipeline.deliver(fixture_bytes(name), identifier=f"r-{n}")["statusCode"] == 202
    pipeline.drain()
    return pipeline


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda store: reader.latest_issue(store, "../latest/10042"), "invalid_issue_ref"),
        (lambda store: reader.history(store, "ops-17", 10, None), "invalid_issue_ref"),
        (lambda store: reader.project_issues(store, "ops/../x", 10, None), "invalid_project"),
        (lambda store: reader.version(store, "OPS-17", "../../latest/10042"), "invalid_version"),
    ],
)
def test_what_could_not_name_a_stored_object_is_a_400_never_a_read(
    story: Pipeline, call: Callable[[Store], object], code: str
) -> None:
    with pytest.raises(JSyncError) as raised:
        call(services.store())
    assert (raised.value.status, raised.value.code) == (400, code)


def test_objects_in_an_issue_s_snapshot_folder_that_are_not_versions_stay_out_of_its_history(story: Pipeline) -> None:
    store = services.store()
    before = reader.history(store, "OPS-17", 50, None)
    assert len(before.items) == 3
    # Given an object someone put beside the snapshots (a note, a copy with another name)
    store.put_json("snapshots/10042/notes.json", {"capture": {"event_type": "jira:issue_updated"}})
    store.put_json("snapshots/10042/1764000000000-r-0.json.bak", {})
    # Then the history is unchanged
    assert reader.history(store, "OPS-17", 50, None) == before
