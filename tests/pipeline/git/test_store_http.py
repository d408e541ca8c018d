"""The committer's git path against git's own smart-HTTP server (git http-backend): thin packs, token, races."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.gitserver import GitServer, init_bare
from pipeline.git.store import GitStore, Person, PushRejected, RemoteUnavailable
from pipeline.git.tree import RawTree

TOKEN = "tok-3f9a"
AUTHOR = Person("Ada Example", "ada@jira.invalid")


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "srv"
    root.mkdir()
    init_bare(root / "repo.git")
    with GitServer(root, TOKEN) as s:
        yield s


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={repo}", *args], check=True, capture_output=True, text=True).stdout


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return pos, value


def blob_id(store: GitStore, path: str) -> bytes | None:
    """The blob at `path` in the store's staged head (hex), or None."""
    return store.blob_id_in(store._tree(store._commit(store.head).tree), path) if store.head else None


def apply_delta(base: bytes, patch: bytes) -> bytes:
    """Git's patch-delta, to check our own deltas against."""
    pos, base_size = _read_varint(patch, 0)
    pos, result_size = _read_varint(patch, pos)
    if base_size != len(base):
        raise ValueError("delta base size mismatch")
    out = bytearray()
    while pos < len(patch):
        op = patch[pos]
        pos += 1
        if op & 0x80:
            offset = size = 0
            for bit in range(4):
                if op & (1 << bit):
                    offset |= patch[pos] << (8 * bit)
                    pos += 1
            for bit in range(3):
                if op & (0x10 << bit):
                    size |= patch[pos] << (8 * bit)
                    pos += 1
            out += base[offset : offset + (size or 0x10000)]
        elif op:
            out += patch[pos : pos + op]
            pos += op
        else:
            raise ValueError("delta opcode 0 is reserved")
    if len(out) != result_size:
        raise ValueError("delta result size mismatch")
    return bytes(out)


def test_batches_push_as_thin_packs_that_git_accepts(server: GitServer, tmp_path: Path) -> None:
    store = GitStore(server.url("repo.git"), "main", tmp_path / "cache.git", token=TOKEN)
    store.fetch()
    expected: dict[str, bytes] = {}
    for batch in range(4):
        store.begin()
        for n in range(10):
            path = f"issues/P{n % 3}/P{n % 3}-{(batch * 7 + n) % 12}.json"
            content = json.dumps({"batch": batch, "n": n}).encode() + b"\n"
            store.stage({path: content}, AUTHOR, 1764000000 + n, f"{path}: batch {batch}\n")
            expected[path] = content
        # delete one file and a whole directory's last file too
        if batch == 3:
            store.stage({"issues/P0/P0-0.json": None}, AUTHOR, 1764000100, "delete\n")
            expected.pop("issues/P0/P0-0.json", None)
        assert store._deltas, "changed trees should travel as deltas"
        store.push()
    remote = server.root / "repo.git"
    git(remote, "fsck", "--full", "--strict")
    files = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert sorted(files) == sorted(expected)
    for path, content in expected.items():
        assert git(remote, "show", f"main:{path}").encode() == content
    assert len(git(remote, "rev-list", "main").split()) == 41
    store.close()


def test_a_cold_start_is_one_commit_and_its_trees(server: GitServer, tmp_path: Path) -> None:
    writer = GitStore(server.url("repo.git"), "main", tmp_path / "w.git", token=TOKEN)
    writer.fetch()
    for n in range(5):
        writer.stage({f"issues/A/A-{n}.json": b"x%d\n" % n}, AUTHOR, 1764000000, "c\n")
    writer.push()
    cold = GitStore(server.url("repo.git"), "main", tmp_path / "cold.git", token=TOKEN)
    tip = cold.fetch()
    objects = list(cold.repo.object_store)
    assert tip == writer.tip and len(objects) == 4  # the tip commit and its three trees: root, issues/, A/
    assert blob_id(cold, "issues/A/A-4.json") is not None  # read from a tree entry: no blob needed
    cold.close()
    writer.close()


def test_a_push_from_a_stale_tip_is_rejected_never_forced(server: GitServer, tmp_path: Path) -> None:
    one = GitStore(server.url("repo.git"), "main", tmp_path / "one.git", token=TOKEN)
    two = GitStore(server.url("repo.git"), "main", tmp_path / "two.git", token=TOKEN)
    one.fetch()
    two.fetch()
    one.stage({"issues/A/A-1.json": b"one\n"}, AUTHOR, 1764000000, "one\n")
    one.push()
    two.stage({"issues/A/A-2.json": b"two\n"}, AUTHOR, 1764000000, "two\n")
    with pytest.raises(PushRejected):
        two.push()
    assert git(server.root / "repo.git", "show", "main:issues/A/A-1.json") == "one\n"
    one.close()
    two.close()


def test_a_wrong_token_is_unavailable_and_never_echoed(server: GitServer, tmp_path: Path) -> None:
    store = GitStore(server.url("repo.git"), "main", tmp_path / "c.git", token="wrong-secret-token")
    with pytest.raises(RemoteUnavailable) as caught:
        store.fetch()
    assert "wrong-secret-token" not in str(caught.value)
    store.close()


def test_tree_splices_match_a_full_rebuild() -> None:
    entries = [(b"K-%d.json" % n, 0o100644, bytes([n % 256]) * 20) for n in range(300)]
    tree = RawTree.build(entries)
    for n in (0, 150, 299, 400):
        new, delta = tree.with_entry(b"K-%d.json" % n, 0o100644, b"\x01" * 20)
        rebuilt = RawTree.build(
            [e for e in entries if e[0] != b"K-%d.json" % n] + [(b"K-%d.json" % n, 0o100644, b"\x01" * 20)]
        )
        assert new.sha == rebuilt.sha and apply_delta(tree.data, delta) == new.data
    removed, delta = tree.with_entry(b"K-7.json", 0o100644, None)
    assert len(removed) == 299 and apply_delta(tree.data, delta) == removed.data


def test_emptied_directories_and_round_trips_push_cleanly(server: GitServer, tmp_path: Path) -> None:
    remote = server.root / "repo.git"
    # index-pack (not unpack-objects) for every push: the stricter path, as big pushes and hosts take
    git(remote, "config", "receive.unpackLimit", "1")
    store = GitStore(server.url("repo.git"), "main", tmp_path / "c.git", token=TOKEN)
    store.fetch()
    store.stage({"issues/A/A-1.json": b"a\n", "issues/B/B-1.json": b"b\n"}, AUTHOR, 1764000000, "two\n")
    store.push()
    # the last issue of a project moves away: its directory empties and disappears
    store.stage({"issues/A/A-1.json": None, "issues/C/C-1.json": b"a\n"}, AUTHOR, 1764000001, "move\n")
    # and within the same batch a directory goes back to exactly what the remote has (no delta cycle)
    store.stage({"issues/B/B-2.json": b"new\n"}, AUTHOR, 1764000002, "add\n")
    store.stage({"issues/B/B-2.json": None}, AUTHOR, 1764000003, "remove\n")
    store.push()
    git(remote, "fsck", "--full", "--strict")
    assert sorted(git(remote, "ls-tree", "-r", "--name-only", "main").split()) == [
        "issues/B/B-1.json",
        "issues/C/C-1.json",
    ]
    store.close()


def test_the_cache_starts_afresh_instead_of_growing(server: GitServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("pipeline.git.store._MAX_PACKS", 3)
    store = GitStore(server.url("repo.git"), "main", tmp_path / "c.git", token=TOKEN)
    store.fetch()
    for n in range(8):
        store.stage({f"issues/A/A-{n}.json": b"%d\n" % n}, AUTHOR, 1764000000, f"c{n}\n")
        store.push()
        assert store.repo.object_store.count_pack_files() <= 4
    assert store.tip == git(server.root / "repo.git", "rev-parse", "main").strip().encode()
    assert blob_id(store, "issues/A/A-7.json") is not None
    store.close()


def test_trees_lost_from_memory_are_fetched_again(server: GitServer, tmp_path: Path) -> None:
    store = GitStore(server.url("repo.git"), "main", tmp_path / "c.git", token=TOKEN)
    store.fetch()
    store.stage({"issues/A/A-1.json": b"1\n"}, AUTHOR, 1764000000, "one\n")
    store.push()
    store._trees.clear()  # pushed trees live only in memory: pretend they were lost
    store.stage({"issues/A/A-2.json": b"2\n"}, AUTHOR, 1764000001, "two\n")
    store.push()
    git(server.root / "repo.git", "fsck", "--full", "--strict")
    assert sorted(git(server.root / "repo.git", "ls-tree", "-r", "--name-only", "main").split()) == [
        "issues/A/A-1.json",
        "issues/A/A-2.json",
    ]
    store.close()


def test_a_cache_left_by_an_earlier_process_is_fetched_once(server: GitServer, tmp_path: Path, monkeypatch) -> None:
    first = GitStore(server.url("repo.git"), "main", tmp_path / "c.git", token=TOKEN)
    first.fetch()
    first.stage({"issues/A/A-1.json": b"1\n"}, AUTHOR, 1764000000, "one\n")
    first.push()
    first.close()
    # When a new process opens the same cache (a local restart, or a reconnect after the remote failed)
    fetches: list[int | None] = []
    real = GitStore._fetch

    def counted(self: GitStore, depth: int, *args, **kwargs):  # type: ignore[no-untyped-def]
        fetches.append(depth)
        return real(self, depth, *args, **kwargs)

    monkeypatch.setattr(GitStore, "_fetch", counted)
    again = GitStore(server.url("repo.git"), "main", tmp_path / "c.git", token=TOKEN)
    again.fetch()
    again.stage({"issues/A/A-2.json": b"2\n"}, AUTHOR, 1764000001, "two\n")
    again.push()
    # Then the remote is asked once, not once for the commit and again for its trees
    assert fetches == [1]
    assert git(server.root / "repo.git", "show", "main:issues/A/A-1.json") == "1\n"
    again.close()


def test_removing_a_name_a_tree_lacks_changes_nothing() -> None:
    tree = RawTree.build([(b"K-1.json", 0o100644, b"\x01" * 20)])
    same, delta = tree.with_entry(b"K-2.json", 0o100644, None)
    assert same is tree and apply_delta(tree.data, delta) == tree.data


def test_a_push_the_server_declines_is_rejected_with_its_reason(server: GitServer, tmp_path: Path) -> None:
    # Given the host refuses pushes to the branch (a protection rule, here a pre-receive hook)
    hook = server.root / "repo.git" / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    store = GitStore(server.url("repo.git"), "main", tmp_path / "cache.git", token=TOKEN)
    store.fetch()
    store.stage({"issues/A/A-1.json": b"{}\n"}, AUTHOR, 1764000000, "A-1: created\n")
    # When it pushes, the refusal names the branch and why; nothing moved
    with pytest.raises(PushRejected, match="refs/heads/main: .*declined"):
        store.push()
    assert store.tip is None
    assert git(server.root / "repo.git", "for-each-ref").strip() == ""


def test_the_remote_tip_is_asked_with_the_token_which_no_error_repeats(server: GitServer, tmp_path: Path) -> None:
    from pipeline.git.store import remote_tip

    store = GitStore(server.url("repo.git"), "main", tmp_path / "cache.git", token=TOKEN)
    store.fetch()
    assert remote_tip(server.url("repo.git"), "main", TOKEN) is None  # empty
    store.stage({"issues/A/A-1.json": b"{}\n"}, AUTHOR, 1764000000, "A-1: created\n")
    store.push()
    assert remote_tip(server.url("repo.git"), "main", TOKEN) == store.tip
    with pytest.raises(RemoteUnavailable) as raised:
        remote_tip(server.url("repo.git"), "main", "wrong-" + TOKEN)
    assert TOKEN not in str(raised.value)
