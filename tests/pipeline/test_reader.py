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
        (lambda store: reader.diff(store, "OPS-17", "1764000000123-r-0", "../../latest/10042"), "invalid_version"),
        (lambda store: reader.diff(store, "ops-17", "1-x", "1-x"), "invalid_issue_ref"),
        (lambda store: next(reader.export(store, "ops/../x")), "invalid_project"),
        (lambda store: reader.check_project_known(store, "ops"), "invalid_project"),
        (lambda store: reader.issue_filter(None, None, "2025-11-24T16:00:00"), "invalid_updated_since"),
        (lambda store: reader.issue_filter(None, None, "2025-11-24T25:00:00Z"), "invalid_updated_since"),
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


def test_a_diff_of_the_same_version_reads_one_snapshot_and_no_catalogue(story: Pipeline) -> None:
    store = services.store()
    created = reader.history(store, "OPS-17", 50, None).items[-1]["version"]
    assert reader.diff(store, "10042", created, created) == {"from": created, "to": created, "changes": []}


@pytest.mark.parametrize(
    ("where", "matches"),
    [
        (reader.IssueFilter(status="IN PROGRESS"), True),
        (reader.IssueFilter(status="In"), False),
        (reader.IssueFilter(assignee="712020:a1b2-grace"), True),
        (reader.IssueFilter(assignee="GRACE EXAMPLE"), True),
        (reader.IssueFilter(assignee="712020:A1B2-GRACE"), False),
        (reader.issue_filter(None, None, "2025-11-24T16:03:20.784+00:00"), True),
        (reader.issue_filter(None, None, "2025-11-24T11:03:20.785-05:00"), False),
        (reader.issue_filter("in progress", "Grace Example", "2025-11-24T00:00:00Z"), True),
        (reader.issue_filter("in progress", "Ada Example", None), False),
    ],
)
def test_filters_match_the_latest_document(story: Pipeline, where: reader.IssueFilter, matches: bool) -> None:
    doc = reader.latest_issue(services.store(), "OPS-17").document
    assert where.matches(doc) is matches
    assert where.matches({"fields": None}) is False
