"""The committer's records (pipeline/git/commits.py): what git holds per issue, checkpointed in the store now and
then and read back from the commits' trailers after a crash, and `commit_batch` when the branch moves or a change
cannot be committed.

Real parts throughout: a bare git repository as the remote, a GitStore cache per committer, and the store on one
SQLite file (the embedded backend).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import fields
from pipeline.backends.embedded import Database, SqliteObjects
from pipeline.git.commits import GitRecord, GitRecords, commit_batch, commit_fields, shard_of
from pipeline.git.store import GitStore, Person, PushRejected
from pipeline.ids import Order, canonical_json
from pipeline.messages import Change
from pipeline.store import ObjectMissing, Store, StoreConflict, gitstate_key, record_shard_key
from tests.builders import change_of
from tests.environments import init_bare
from tests.harness import remote_commits, remote_file

BRANCH = "main"
T0 = 1764000000000  # change_of's time origin


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Database(tmp_path / "jsync.db")
    yield Store(SqliteObjects(db))
    db.close()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return init_bare(tmp_path / "remote.git")


@pytest.fixture
def caches(tmp_path: Path, remote: Path) -> Iterator[Any]:
    """Makes GitStores on the remote, each with a cache of its own (a committer each), closed at the end."""
    made: list[GitStore] = []

    def new(name: str) -> GitStore:
        made.append(GitStore(str(remote), BRANCH, tmp_path / f"{name}.git"))
        return made[-1]

    yield new
    for git in made:
        git.close()


def unreadable(change: Change) -> Any:
    raise ObjectMissing(change.snapshot_key)


def event_ids(remote: Path) -> list[str]:
    """The Jira event ids of the remote's commits, oldest first."""
    return [c.trailers.get("Jira-Event-Id", "") for c in reversed(remote_commits(str(remote), BRANCH))]


def deletion(issue_id: str, event_id: str, order: Order, event_time_ms: int | None = None) -> Change:
    base = change_of(issue_id, event_id, 0, document=None)
    return dataclasses.replace(
        base, event_name="jira:issue_deleted", deleted=True, order=order, event_time_ms=event_time_ms
    )


# --- checkpoints ---------------------------------------------------------------------------------------------------


def test_a_checkpoint_lets_a_cold_committer_know_what_git_holds(store: Store, remote: Path, caches: Any) -> None:
    records, git = GitRecords(store, every_commits=3), caches("a")
    first = [change_of("101", "e-1", 1), change_of("165", "e-2", 2)]
    # When two commits are pushed, fewer than a checkpoint waits for
    assert commit_batch(first, git, records, unreadable).commits == ["e-1", "e-2"]
    # Then the store holds no records yet: they are in git's trailers only
    assert store.committed_tip() is None
    assert store.all_keys("gitstate/") == []

    # When a third commit reaches the checkpoint's count
    third = change_of("101", "e-3", 3)
    assert commit_batch([third], git, records, unreadable).commits == ["e-3"]
    # Then the records of both issues and the tip they describe are in the store
    tip = remote_commits(str(remote), BRANCH)[0].sha
    assert store.committed_tip() == tip
    assert shard_of("101") == shard_of("165")  # one shard object holds both
    assert store.all_keys("gitstate/records/") == [record_shard_key(shard_of("101"))]

    # When a new committer starts cold, with nothing in memory
    cold = GitRecords(store)
    assert cold.get("101") == GitRecord(third.order, "issues/BIG/BIG-101.json")
    assert cold.get("165") == GitRecord(first[1].order, "issues/BIG/BIG-165.json")
    assert cold.get("999") is None
    # and every change comes again (at-least-once delivery)
    again = commit_batch([*first, third], caches("cold"), cold, unreadable)
    # Then nothing is committed twice
    assert again.commits == [] and again.skipped == ["e-1", "e-2", "e-3"]
    assert remote_commits(str(remote), BRANCH)[0].sha == tip
    assert event_ids(remote) == ["e-1", "e-2", "e-3"]


def test_a_quiet_committer_checkpoints_once_enough_time_has_passed(store: Store, remote: Path, caches: Any) -> None:
    now = [0.0]
    records = GitRecords(store, every_commits=1000, every_seconds=300, clock=lambda: now[0])
    git = caches("a")
    commit_batch([change_of("101", "q-1", 1)], git, records, unreadable)
    assert store.committed_tip() is None  # one commit in a minute: not yet
    # When the next push comes more than five minutes after the last checkpoint
    now[0] = 301.0
    commit_batch([change_of("102", "q-2", 2)], git, records, unreadable)
    # Then the store catches up with git, both issues included
    assert store.committed_tip() == remote_commits(str(remote), BRANCH)[0].sha
    cold = GitRecords(store)
    assert cold.get("101") is not None and cold.get("102") is not None


def test_a_record_made_before_the_branch_exists_is_checkpointed_with_the_first_push(
    store: Store, remote: Path, caches: Any
) -> None:
    records = GitRecords(store, every_commits=1, every_seconds=0)
    git = caches("a")
    # Given the first change ever is the deletion of an issue git never held: nothing to commit, no branch yet
    gone = deletion("300", "d-1", Order(T0 + 5000, 9, "d-1"))
    result = commit_batch([gone], git, records, unreadable)
    assert result.commits == [] and result.skipped == ["d-1"]
    assert remote_commits(str(remote), BRANCH) == []
    # Then no checkpoint describes a branch that does not exist, though the record is kept
    assert store.committed_tip() is None and store.all_keys("gitstate/") == []
    assert records.get("300") == GitRecord(gone.order, None)

    # When the first push happens
    commit_batch([change_of("301", "c-1", 1)], git, records, unreadable)
    # Then the checkpoint holds the deletion too: an older change of the deleted issue never brings its file back
    cold = GitRecords(store)
    assert cold.get("300") == GitRecord(gone.order, None)
    late = commit_batch([change_of("300", "c-0", 0)], caches("cold"), cold, unreadable)
    assert late.skipped == ["c-0"]
    assert remote_file(str(remote), BRANCH, "issues/BIG/BIG-300.json") is None


def test_records_kept_before_shards_existed_still_stop_a_replay(store: Store, remote: Path, caches: Any) -> None:
    # Given issue 500 committed and recorded by an earlier version, one object per issue
    newest = change_of("500", "l-5", 5)
    commit_batch([newest], caches("a"), GitRecords(store, every_commits=1), unreadable)
    for key in store.all_keys("gitstate/records/"):
        store.delete(key)
    store.put_json(gitstate_key("500"), {"order": newest.order.as_list(), "path": "issues/BIG/BIG-500.json"})
    cold = GitRecords(store)
    assert cold.get("500") == GitRecord(newest.order, "issues/BIG/BIG-500.json")

    # When an older change comes again and a newer one arrives
    result = commit_batch([change_of("500", "l-3", 3), change_of("500", "l-6", 6)], caches("cold"), cold, unreadable)
    # Then the older one is recognised, the newer one committed
    assert result.skipped == ["l-3"] and result.commits == ["l-6"]
    assert event_ids(remote) == ["l-5", "l-6"]


# --- shards written by two committers ---------------------------------------------------------------------------


def _committed_unrecorded(store: Store, caches: Any, *changes: tuple[str, str]) -> tuple[GitRecords, list[Change]]:
    """Changes (issue id, event id) committed and pushed, their records not yet checkpointed to the store."""
    records = GitRecords(store, every_commits=1000)
    ours = [change_of(issue_id, event_id, n) for n, (issue_id, event_id) in enumerate(changes, start=1)]
    commit_batch(ours, caches("a"), records, unreadable)
    return records, ours


def _write_racing(store: Store, monkeypatch: pytest.MonkeyPatch, times: int | None) -> list[int]:
    """Before each of our shard writes (the first `times`, or all), another committer writes the shard first: our
    compare-and-swap then holds a version that is gone. Returns a counter of the races."""
    real_write = store.write_json
    races: list[int] = []

    def write_json(key: str, data: dict[str, Any], expected: Any) -> None:
        if key.startswith("gitstate/records/") and (times is None or len(races) < times):
            races.append(1)
            found = store.read_json(key)
            held = dict(found.data["records"]) if found else {}
            held["229"] = {"order": [T0 + len(races), 1, f"other-{len(races)}"], "path": "issues/BIG/BIG-229.json"}
            store.put_json(key, {"records": held})
        real_write(key, data, expected)

    monkeypatch.setattr(store, "write_json", write_json)
    return races


def test_a_shard_keeps_the_newer_record_of_each_issue_when_two_committers_write_it(
    store: Store, remote: Path, caches: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, ours = _committed_unrecorded(store, caches, ("101", "o-1"), ("165", "o-2"))
    # Given another committer (which should never run, but may) recorded a newer state of issue 101 meanwhile
    newer = Order(T0 + 9000, 10, "other-newer")
    store.put_json(
        record_shard_key(shard_of("101")),
        {"records": {"101": {"order": newer.as_list(), "path": "issues/BIG/BIG-101.json"}}},
    )
    # and writes the shard again between our read and our write
    races = _write_racing(store, monkeypatch, times=1)

    # When our checkpoint is taken
    records.checkpoint()

    # Then it read again and merged: the other's newer record of 101 and its 229 stand beside our 165
    assert races == [1]
    found = store.read_json(record_shard_key(shard_of("101")))
    assert found is not None
    held = found.data["records"]
    assert Order.from_list(held["101"]["order"]) == newer
    assert Order.from_list(held["165"]["order"]) == ours[1].order
    assert "229" in held
    assert store.committed_tip() == remote_commits(str(remote), BRANCH)[0].sha


def test_a_shard_that_never_stops_changing_fails_the_checkpoint_and_keeps_the_old_tip(
    store: Store, remote: Path, caches: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, ours = _committed_unrecorded(store, caches, ("101", "s-1"), ("102", "s-2"))
    _write_racing(store, monkeypatch, times=None)
    # When every write of the checkpoint loses its race
    with pytest.raises(StoreConflict):
        records.checkpoint()
    # Then no tip claims records the store does not hold
    assert store.committed_tip() is None
    # and a cold committer still finds what git holds, from the trailers
    monkeypatch.undo()
    again = commit_batch(ours, caches("cold"), GitRecords(store), unreadable)
    assert again.commits == [] and again.skipped == ["s-1", "s-2"]


# --- commit_batch ------------------------------------------------------------------------------------------------


def test_a_change_that_cannot_be_committed_holds_back_its_issue_s_later_changes(
    store: Store, remote: Path, caches: Any
) -> None:
    # Given issue 700's first change has no document anywhere (its snapshot is missing), then its second change,
    # and issue 701's change
    broken = change_of("700", "h-1", 1, document=None)
    changes = [broken, change_of("700", "h-2", 2), change_of("701", "h-3", 3)]
    records = GitRecords(store)

    # When the batch is committed
    result = commit_batch(changes, caches("a"), records, unreadable)

    # Then issue 701 is committed; both of 700's changes are left for retry, in order, none skipped
    assert result.commits == ["h-3"] and result.skipped == []
    assert result.left == [0, 1] and result.done(3) == [2]
    assert event_ids(remote) == ["h-3"]
    assert records.get("700") is None


def test_a_push_the_remote_rejects_is_replayed_on_its_new_tip(store: Store, remote: Path, caches: Any) -> None:
    first, second = caches("first"), caches("second")
    first.fetch()
    second.fetch()
    # Given another committer pushed issue 800's change after this one fetched the (empty) branch
    assert commit_batch([change_of("800", "a-1", 1)], first, GitRecords(store), unreadable).commits == ["a-1"]

    # When this one commits a batch holding the same change and another issue's
    batch = [change_of("801", "b-1", 2), change_of("800", "a-1", 1)]
    result = commit_batch(batch, second, GitRecords(store), unreadable)

    # Then its push was refused, it fetched and replayed: the change already there is recognised, the other added
    assert result.commits == ["b-1"] and result.skipped == ["a-1"]
    commits = remote_commits(str(remote), BRANCH)
    assert [c.trailers["Jira-Event-Id"] for c in commits] == ["b-1", "a-1"]
    assert commits[0].parents == [commits[1].sha]  # on top, never forced over it


def test_a_branch_that_moves_under_every_push_is_given_up_after_five_tries(
    store: Store, remote: Path, caches: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    git, other = caches("ours"), caches("other")
    real_push = git.push
    tries: list[int] = []

    def push_after_someone_else() -> None:
        # Someone else pushes between our fetch and our push, every time
        tries.append(1)
        other.fetch()
        other.stage({f"elsewhere/{len(tries)}.txt": b"x"}, Person("Someone", "s@example.com"), 0, "elsewhere\n")
        other.push()
        real_push()

    monkeypatch.setattr(git, "push", push_after_someone_else)
    records = GitRecords(store, every_commits=1)

    with pytest.raises(PushRejected):
        commit_batch([change_of("900", "m-1", 1)], git, records, unreadable)

    # Then it tried five times, nothing of ours is on the branch, and nothing was recorded as committed
    assert len(tries) == 5
    assert event_ids(remote) == [""] * 5
    assert records.get("900") is None
    assert store.committed_tip() is None


def test_a_late_deletion_recovered_from_git_keeps_its_place_above_newer_events(
    store: Store, remote: Path, caches: Any
) -> None:
    # Given issue 400's creation, an update at T0+3s, and its deletion, which happened at T0+2s but arrived late
    # and was placed above the update (its order is not its event time)
    created, updated = change_of("400", "c-1", 1), change_of("400", "c-3", 3)
    late = deletion("400", "d-2", Order(T0 + 3000, 5, "d-2"), event_time_ms=T0 + 2000)
    records = GitRecords(store)  # no checkpoint: what git holds is in the trailers only
    assert commit_batch([created, updated, late], caches("a"), records, unreadable).commits == ["c-1", "c-3", "d-2"]
    assert remote_file(str(remote), BRANCH, "issues/BIG/BIG-400.json") is None
    assert "Jira-Order" in remote_commits(str(remote), BRANCH)[0].trailers

    # When a cold committer, with nothing in the store, gets the update again (a redelivery)
    cold = GitRecords(store)
    result = commit_batch([updated], caches("cold"), cold, unreadable)

    # Then it read the deletion's place from git, not its event time: the update stays below it, the file stays gone
    assert result.commits == [] and result.skipped == ["c-3"]
    assert cold.get("400") == GitRecord(late.order, None)
    assert remote_file(str(remote), BRANCH, "issues/BIG/BIG-400.json") is None


def test_a_move_whose_old_file_git_never_held_writes_the_new_file_only(store: Store, remote: Path, caches: Any) -> None:
    # Given issue 600 was never committed under its old key (its earlier events went elsewhere, say)
    moved = dataclasses.replace(change_of("600", "mv-1", 1), key="NEW-600", previous_key="BIG-600")
    # When its move is committed
    assert commit_batch([moved], caches("a"), GitRecords(store), unreadable).commits == ["mv-1"]
    # Then the commit adds its file under the new key, and there is nothing under the old one
    assert remote_file(str(remote), BRANCH, "issues/NEW/NEW-600.json") is not None
    assert remote_file(str(remote), BRANCH, "issues/BIG/BIG-600.json") is None


# --- Jira's field catalogue -------------------------------------------------------------------------------------


def test_the_field_catalogue_is_committed_once_per_change_of_it(remote: Path, caches: Any) -> None:
    git = caches("a")
    catalogue = fields.catalogue_of([{"id": "customfield_10016", "name": "Story points", "schema": {"type": "number"}}])
    # Without a catalogue nothing is committed
    assert commit_fields(git, [], 1764000000.0) is False
    # The first catalogue is one commit; the same again is none; a rename is one more
    assert commit_fields(git, catalogue, 1764000000.0) is True
    assert commit_fields(git, catalogue, 1764000001.0) is False
    renamed = [{**catalogue[0], "name": "Estimate"}]
    assert commit_fields(git, renamed, 1764000002.0) is True
    assert remote_file(str(remote), BRANCH, fields.GIT_PATH) == canonical_json(renamed)
    commits = remote_commits(str(remote), BRANCH)
    assert [c.subject for c in commits] == ["fields.json: Jira's field catalogue changed"] * 2
    assert {c.author for c in commits} == {"JSync <jsync@jsync.invalid>"}


def test_a_push_stands_when_its_records_cannot_be_saved(
    store: Store, remote: Path, caches: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 failing right after a push: the batch still reports its commits (so they are deleted and published), and
    a cold committer given the same changes again learns from git's trailers that they are there."""
    records, git = GitRecords(store, every_commits=1, every_seconds=0), caches("a")

    def s3_down(*args: Any, **kwargs: Any) -> None:
        raise StoreConflict("gitstate/records/00.json")

    monkeypatch.setattr(store, "put_json", s3_down)
    monkeypatch.setattr(store, "put_committed_tip", s3_down)
    batch = [change_of("101", "e-1", 1), change_of("102", "e-2", 2)]
    result = commit_batch(batch, git, records, unreadable)
    assert result.commits == ["e-1", "e-2"] and len(result.shas) == 2
    assert event_ids(remote) == ["e-1", "e-2"]

    monkeypatch.undo()
    again = commit_batch(batch, caches("cold"), GitRecords(store), unreadable)
    assert again.commits == [] and again.skipped == ["e-1", "e-2"]
    assert event_ids(remote) == ["e-1", "e-2"]
