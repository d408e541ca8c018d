"""Which failures GitStore reports as the remote's (RemoteUnavailable: health shows it, changes wait) and which it
raises as they are (a bug of ours must not pass for an outage)."""

from __future__ import annotations

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
