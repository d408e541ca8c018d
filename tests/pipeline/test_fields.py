"""Jira's field catalogue (pipeline/fields.py): kept trimmed and in one order, saved only when it changed, and the
source of every field name people read."""

from __future__ import annotations

from pathlib import Path

from pipeline import fields
from pipeline.backends.embedded import Database, SqliteObjects
from pipeline.store import Store

JIRA_ANSWER = [
    {"id": "summary", "key": "summary", "name": "Summary", "custom": False, "schema": {"type": "string"}},
    {"id": "customfield_10042", "name": "Story points", "custom": True, "schema": {"type": "number"}},
    {"id": "status", "name": "Status", "schema": {"type": "status", "system": "status"}, "navigable": True},
]


def store_in(tmp_path: Path) -> Store:
    return Store(SqliteObjects(Database(tmp_path / "jsync.db")))


def test_the_catalogue_keeps_id_name_and_schema_in_id_order_whatever_order_jira_sent() -> None:
    kept = fields.catalogue_of(JIRA_ANSWER)
    assert [f["id"] for f in kept] == ["customfield_10042", "status", "summary"]
    assert kept[0] == {"id": "customfield_10042", "name": "Story points", "schema": {"type": "number"}}
    assert fields.catalogue_of(list(reversed(JIRA_ANSWER))) == kept


def test_entries_jira_could_not_mean_are_dropped_not_raised() -> None:
    odd = [
        None,
        "x",
        {"id": 7, "name": "n"},
        {"id": "a"},
        {"id": "", "name": "empty"},
        {"id": "b", "name": "B", "schema": 3},
    ]
    assert fields.catalogue_of(odd) == [{"id": "b", "name": "B", "schema": None}]
    assert fields.catalogue_of({"not": "a list"}) == []


def test_a_catalogue_is_saved_only_when_it_changed_and_names_come_from_it(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    # Given no catalogue yet: fields keep their ids
    assert fields.names(store) == {}
    assert fields.name_of("customfield_10042", fields.names(store)) == "customfield_10042"
    # When reconcile saves Jira's catalogue twice, the second time in another order
    assert fields.save(store, fields.catalogue_of(JIRA_ANSWER)) is True
    assert fields.save(store, fields.catalogue_of(list(reversed(JIRA_ANSWER)))) is False
    # Then names are Jira's, and a renamed field is a change
    assert fields.name_of("customfield_10042", fields.names(store)) == "Story points"
    renamed = [{**JIRA_ANSWER[1], "name": "Estimate"}]
    assert fields.save(store, fields.catalogue_of(renamed)) is True
    assert fields.names(store) == {"customfield_10042": "Estimate"}
