"""The Markdown beside each issue's JSON in git: written, moved and removed in the same commit as the JSON, and never
a commit of its own for a change git already holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich.repo import Repo

from pipeline.backends.embedded import Database, SqliteObjects
from pipeline.git.commits import GitRecords, commit_batch
from pipeline.git.store import GitStore
from pipeline.ids import Order, canonical_json
from pipeline.markdown import render_issue
from pipeline.messages import Change
from pipeline.store import Store
from tests.builders import change_of
from tests.environments import init_bare
from tests.harness import remote_commits

BRANCH = "main"
NAMES = {"customfield_10016": "Story points"}


@pytest.fixture
def remote(tmp_path: Path) -> str:
    return str(init_bare(tmp_path / "remote.git"))


@pytest.fixture
def git(remote: str, tmp_path: Path) -> Iterator[GitStore]:
    store = GitStore(remote, BRANCH, tmp_path / "cache.git")
    yield store
    store.close()


@pytest.fixture
def records(tmp_path: Path) -> Iterator[GitRecords]:
    db = Database(tmp_path / "jsync.db")
    yield GitRecords(Store(SqliteObjects(db)))
    db.close()


def commit(git: GitStore, records: GitRecords, *changes: Change, names: dict[str, str] = NAMES) -> list[str]:
    return commit_batch(list(changes), git, records, lambda c: None, names).commits


def files(remote: str) -> dict[str, bytes]:
    """Every file on the remote branch."""
    repo = Repo(remote)
    try:
        tree = repo[repo.refs[f"refs/heads/{BRANCH}".encode()]].tree
        return {
            entry.path.decode(): bytes(repo[entry.sha].data) for entry in repo.object_store.iter_tree_contents(tree)
        }
    finally:
        repo.close()


def with_points(change: Change, points: int) -> Change:
    document = {**(change.document or {}), "fields": {"summary": "v", "customfield_10016": points}}
    return dataclasses.replace(change, document=document)


def test_an_issue_gets_its_markdown_beside_its_json_in_the_same_commit(
    git: GitStore, records: GitRecords, remote: str
) -> None:
    # When a change is committed
    change = with_points(change_of("101", "md-1", 1), 5)
    assert commit(git, records, change) == ["md-1"]
    # Then one commit holds both files, the Markdown rendered from the same document with Jira's names
    held = files(remote)
    assert set(held) == {"issues/BIG/BIG-101.json", "issues/BIG/BIG-101.md"}
    assert held["issues/BIG/BIG-101.json"] == canonical_json(change.document)
    assert held["issues/BIG/BIG-101.md"] == render_issue(change.document or {}, NAMES).encode()
    assert "Story points" in held["issues/BIG/BIG-101.md"].decode()
    assert len(remote_commits(remote, BRANCH)) == 1


def test_a_move_renames_both_files_and_a_delete_removes_both(git: GitStore, records: GitRecords, remote: str) -> None:
    commit(git, records, change_of("101", "mv-1", 1))
    # When the issue moves to OPS
    moved = change_of("101", "mv-2", 2)
    document = {**(moved.document or {}), "key": "OPS-7"}
    commit(git, records, dataclasses.replace(moved, key="OPS-7", previous_key="BIG-101", document=document))
    # Then only the new paths exist, both in that one commit
    assert set(files(remote)) == {"issues/OPS/OPS-7.json", "issues/OPS/OPS-7.md"}
    # When it is deleted
    gone = dataclasses.replace(
        change_of("101", "mv-3", 3, document=None),
        key="OPS-7",
        event_name="jira:issue_deleted",
        deleted=True,
        order=Order(1764000000000 + 9000, 9, "mv-3"),
    )
    assert commit(git, records, gone) == ["mv-3"]
    # Then no file of it is left
    assert files(remote) == {}
    assert len(remote_commits(remote, BRANCH)) == 3


def test_a_renamed_field_alone_never_makes_a_commit(git: GitStore, records: GitRecords, remote: str) -> None:
    first = with_points(change_of("101", "rn-1", 1), 3)
    commit(git, records, first)
    # Given a later event whose document is the same (a viewer-relative change, already stripped), while the
    # catalogue renamed a field
    same = dataclasses.replace(with_points(change_of("101", "rn-2", 2), 3), document=first.document)
    # When it is committed with the new names
    assert commit(git, records, same, names={"customfield_10016": "Estimate"}) == []
    # Then git has no new commit, and the Markdown keeps the name it had until the JSON next changes
    assert len(remote_commits(remote, BRANCH)) == 1
    assert "Story points" in files(remote)["issues/BIG/BIG-101.md"].decode()
    commit(git, records, with_points(change_of("101", "rn-3", 3), 8), names={"customfield_10016": "Estimate"})
    assert "Estimate" in files(remote)["issues/BIG/BIG-101.md"].decode()
