"""Jira's field catalogue: the name people know each field by (`customfield_10042` is "Story points").

Reconcile refreshes it from Jira (`GET /rest/api/3/field`) into `fields/catalogue.json`; the committer commits it as
`fields.json` when it changes; whatever shows fields to people (the Markdown, history, diff, timeline) asks `names`.
Without Jira credentials there is no catalogue and fields keep their ids. The JSON documents stay as Jira sent them.
"""

from __future__ import annotations

from typing import Any

from pipeline.ids import canonical_json
from pipeline.store import FIELD_CATALOGUE_KEY, Store

GIT_PATH = "fields.json"  # where the committer keeps the catalogue in git, at the repository's root


def catalogue_of(answer: Any) -> list[dict[str, Any]]:
    """Jira's answer trimmed to what JSync keeps of each field (id, name, schema), sorted by id, so the same
    catalogue is the same bytes however Jira ordered it. Entries without a string id and name are dropped."""
    kept: dict[str, dict[str, Any]] = {}
    for field in answer if isinstance(answer, list) else []:
        if not isinstance(field, dict):
            continue
        ident, name = field.get("id"), field.get("name")
        if isinstance(ident, str) and ident and isinstance(name, str):
            schema = field.get("schema")
            kept[ident] = {"id": ident, "name": name, "schema": schema if isinstance(schema, dict) else None}
    return [kept[ident] for ident in sorted(kept)]


def save(store: Store, catalogue: list[dict[str, Any]]) -> bool:
    """Keep `catalogue` unless the same one is kept already. True when it changed."""
    held = store.read_json(FIELD_CATALOGUE_KEY)
    if held is not None and canonical_json(held.data.get("fields")) == canonical_json(catalogue):
        return False
    store.put_json(FIELD_CATALOGUE_KEY, {"fields": catalogue})
    return True


def load(store: Store) -> list[dict[str, Any]]:
    """The kept catalogue ([] before the first reconcile with Jira credentials)."""
    held = store.read_json(FIELD_CATALOGUE_KEY)
    fields = held.data.get("fields") if held is not None else None
    return catalogue_of(fields)


def names(store: Store) -> dict[str, str]:
    """Field id to name, for every field the catalogue knows; a field it does not know keeps its id."""
    return names_in(load(store))


def names_in(catalogue: list[dict[str, Any]]) -> dict[str, str]:
    return {field["id"]: field["name"] for field in catalogue}


def name_of(field: str, known: dict[str, str]) -> str:
    return known.get(field, field)
