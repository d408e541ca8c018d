"""JSync's objects in the store (pipeline/store.py): keys are never built from unsafe names, and a claim holds
whatever happens to the key around it."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import services
from pipeline.store import changelog_marker_key, project_count_key, raw_key, version_key
from tests.harness import Pipeline


@pytest.mark.parametrize(
    "build",
    [
        lambda: raw_key("../../latest/10042", 1764000000000, "json"),
        lambda: raw_key("a b", 1764000000000, "json"),
        lambda: version_key("10042/../10043", "1764000000000-e1"),
        lambda: version_key("10042", "../latest"),
        lambda: changelog_marker_key("10042", "../../latest/10042"),
        lambda: changelog_marker_key("10042", "12a"),
    ],
)
def test_a_name_that_could_reach_outside_its_folder_never_becomes_a_key(build: Any) -> None:
    with pytest.raises(ValueError, match="is not safe in an S3 key"):
        build()


def test_safe_names_make_the_documented_keys() -> None:
    assert raw_key("e-1", 1764000000000, "xml") == "raw/2025/11/24/e-1.xml"
    assert changelog_marker_key("10042", "created") == "index/changelogs/10042/created.json"
    assert changelog_marker_key("10042", "60001") == "index/changelogs/10042/60001.json"


def test_a_claim_on_a_key_deleted_between_the_write_and_the_read_is_taken(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services.store()
    key = project_count_key("OPS")
    store.put_json(key, {"project": "OPS", "issue_count": 3})
    real_read = store.read_json

    def deleted_first(k: str) -> Any:
        if k == key:
            store.delete(key)  # whoever held it let go just after our write found it taken
        return real_read(k)

    monkeypatch.setattr(store, "read_json", deleted_first)
    mine = {"project": "OPS", "issue_count": 0}
    # When we claim the key: our write loses to the holder, and the holder's object is gone when we read it
    assert store.claim(key, mine) == mine
    # Then nobody holding it, ours is written
    monkeypatch.undo()
    found = store.read_json(key)
    assert found is not None and found.data == mine
