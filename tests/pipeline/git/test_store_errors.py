"""Which failures GitStore reports as the remote's (RemoteUnavailable: health shows it, changes wait) and which it
raises as they are (a bug of ours must not pass for an outage)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dulwich.errors import HangupException

from pipeline.git.store import GitStore, Person, RemoteUnavailable
from tests.environments import init_bare

AUTHOR = Person("Ada Example", "ada@jira.invalid")


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    git = GitStore(str(init_bare(tmp_path / "remote.git")), "main", tmp_path / "cache.git")
    git.fetch()
    git.stage({"issues/A/A-1.json": b"{}\n"}, AUTHOR, 1764000000, "A-1: created\n")
    return git


def failing_send_pack(error: Exception) -> Any:
    def send_pack(*_: Any, **__: Any) -> Any:
        raise error

    return send_pack


@pytest.mark.parametrize(
    "error", [OSError("connection refused"), HangupException(), ConnectionResetError("reset by peer")]
)
def test_a_remote_that_fails_to_answer_is_unavailable(
    store: GitStore, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    monkeypatch.setattr(store._client, "send_pack", failing_send_pack(error))
    with pytest.raises(RemoteUnavailable):
        store.push()
    assert store.tip is None  # nothing moved: the batch is still staged for the next try


@pytest.mark.parametrize("error", [TypeError("bad argument"), KeyError("missing"), ValueError("bad value")])
def test_a_bug_in_our_own_code_is_raised_as_itself_not_as_an_outage(
    store: GitStore, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    monkeypatch.setattr(store._client, "send_pack", failing_send_pack(error))
    with pytest.raises(type(error)):
        store.push()


def test_a_remote_that_is_gone_is_unavailable_on_fetch(tmp_path: Path) -> None:
    git = GitStore(str(tmp_path / "nowhere.git"), "main", tmp_path / "cache.git")
    with pytest.raises(RemoteUnavailable):
        git.fetch()


def test_the_push_moves_the_remote_when_nothing_fails(store: GitStore, tmp_path: Path) -> None:
    store.push()
    fresh = GitStore(str(tmp_path / "remote.git"), "main", tmp_path / "other.git")
    assert fresh.fetch() == store.tip is not None


# --- a local remote mid-push, a half-made cache -------------------------------------------------------------------


def test_a_branch_another_push_holds_locked_is_a_rejection_to_replay(store: GitStore, tmp_path: Path) -> None:
    from pipeline.git.store import PushRejected

    # Given another push holds the branch's lock on the local remote
    lock = tmp_path / "remote.git" / "refs" / "heads" / "main.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_bytes(b"")
    # When this store pushes, it is told the branch is moving (fetch and replay), not that the remote is down
    with pytest.raises(PushRejected):
        store.push()
    assert store.tip is None
    # and once the other push is done, the same batch goes through
    lock.unlink()
    store.push()
    assert store.tip is not None


def _pushed(store: GitStore) -> bytes:
    store.push()
    assert store.tip is not None
    return store.tip


def _cold_fetching(
    store: GitStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, brings: Callable[[int], bool]
) -> tuple[GitStore, bytes, list[int]]:
    """After a push, a committer with an empty cache whose `n`th fetch names the remote's tip but brings its
    objects only if `brings(n)`, as while another push is still writing its pack. Returns it, the tip and the
    fetches made."""
    tip = _pushed(store)
    cold = GitStore(str(tmp_path / "remote.git"), "main", tmp_path / "cold.git")
    real_fetch = cold._client.fetch
    calls: list[int] = []

    def fetch(path: Any, target: Any, determine_wants: Any, **kwargs: Any) -> Any:
        calls.append(1)
        wants = determine_wants if brings(len(calls)) else (lambda refs, depth=None: [])
        return real_fetch(path, target, determine_wants=wants, **kwargs)

    monkeypatch.setattr(cold._client, "fetch", fetch)
    return cold, tip, calls


def test_a_tip_named_before_its_objects_arrived_is_fetched_again(
    store: GitStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cold, tip, calls = _cold_fetching(store, tmp_path, monkeypatch, brings=lambda n: n > 1)
    assert cold.fetch() == tip
    assert len(calls) == 2
    assert cold.blob_id_in(cold._tree(cold._commit(tip).tree), "issues/A/A-1.json") is not None


def test_a_tip_whose_objects_never_arrive_is_unavailable(
    store: GitStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cold, tip, _ = _cold_fetching(store, tmp_path, monkeypatch, brings=lambda n: False)
    with pytest.raises(RemoteUnavailable, match=f"the remote's tip {tip.decode()[:12]} did not arrive"):
        cold.fetch()
    assert cold.tip is None  # nothing half-fetched is built on


def test_a_cache_left_half_made_is_started_afresh(store: GitStore, tmp_path: Path) -> None:
    tip = _pushed(store)
    # Given a cache directory a killed process left with a HEAD and nothing else a repository needs
    cache = tmp_path / "half.git"
    cache.mkdir()
    (cache / "HEAD").write_text("ref: refs/heads/main\n")
    # When a committer starts on it
    git = GitStore(str(tmp_path / "remote.git"), "main", cache)
    # Then it works as on a new cache: fetch, commit and push
    assert git.fetch() == tip
    git.stage({"issues/A/A-2.json": b"{}\n"}, AUTHOR, 1764000001, "A-2: created\n")
    git.push()
    fresh = GitStore(str(tmp_path / "remote.git"), "main", tmp_path / "check.git")
    assert fresh.fetch() == git.tip != tip


def test_a_history_walk_whose_past_was_force_pushed_away_ends_instead_of_fetching_forever(tmp_path: Path) -> None:
    remote = init_bare(tmp_path / "remote.git")
    writer = GitStore(str(remote), "main", tmp_path / "writer.git")
    writer.fetch()
    for n in range(3):
        writer.stage({f"issues/A/A-{n}.json": b"{}\n"}, AUTHOR, 1764000000 + n, f"A-{n}: created\n")
    writer.push()
    # Given a committer with a shallow cache of the tip only
    git = GitStore(str(remote), "main", tmp_path / "cache.git")
    tip = git.fetch()
    assert tip is not None
    # and the branch then rewritten on the remote to an unrelated history (a force-push)

    def run(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["git", f"--git-dir={remote}", *args], input=stdin, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    empty_tree = run("hash-object", "-w", "-t", "tree", "--stdin", stdin="")
    unrelated = run("-c", "user.name=X", "-c", "user.email=x@example.com", "commit-tree", empty_tree, "-m", "anew")
    run("update-ref", "refs/heads/main", unrelated)
    # When it walks back from its tip for what it committed
    walked = [sha for sha, _ in git.history()]
    # Then the walk gives what it holds and ends, though the past it looked for is gone for good
    assert walked == [tip]
