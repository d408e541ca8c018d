"""Documents -> commits on a bare cache repository -> one push per batch (the only module that imports dulwich)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dulwich.client import get_transport_and_path
from dulwich.object_store import commit_tree_changes
from dulwich.objects import Blob, Commit, ShaFile, Tree
from dulwich.pack import pack_objects_to_data
from dulwich.repo import Repo

COMMITTER = b"JSync <jsync@jsync.invalid>"
_FILE_MODE = 0o100644
_MAX_PACKS = 32


class PushRejected(Exception):
    """The remote branch moved since we last saw it; fetch and replay."""


class RemoteUnavailable(Exception):
    """The git remote could not be reached or refused us. Never carries credentials."""


@dataclass(frozen=True)
class Person:
    name: str
    email: str

    def ident(self) -> bytes:
        clean = [re.sub(r"[<>\n\r\0]", "", part).strip() for part in (self.name, self.email)]
        return f"{clean[0] or 'Unknown'} <{clean[1]}>".encode()


class _Overlay:
    """New objects of the batch in memory over the cache repository: nothing hits disk until the push took."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.new: dict[bytes, ShaFile] = {}

    def __getitem__(self, sha: bytes) -> ShaFile:
        if sha in self.new:
            # commit_tree_changes mutates the trees it loads: hand out copies.
            return self.new[sha].copy()
        return self.base[sha]  # type: ignore[no-any-return]

    def __contains__(self, sha: bytes) -> bool:
        return sha in self.new or sha in self.base

    def add_object(self, obj: ShaFile) -> None:
        self.new[obj.id] = obj


class GitStore:
    """A bare cache of the remote branch: stage commits on its tip, push them in one pack."""

    def __init__(self, remote: str, branch: str, cache_dir: Path, token: str | None = None) -> None:
        self.remote = remote
        self.ref = f"refs/heads/{branch}".encode()
        self.cache_dir = cache_dir
        self._client, self._path = get_transport_and_path(
            remote, username="x-access-token" if token else None, password=token
        )
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        self.repo = (
            Repo(str(cache_dir)) if (cache_dir / "HEAD").exists() else Repo.init_bare(str(cache_dir), mkdir=True)
        )
        self.tip: bytes | None = self.repo.refs[self.ref] if self.ref in self.repo.refs else None  # noqa: SIM401
        self._overlay = _Overlay(self.repo.object_store)
        self.head = self.tip

    def close(self) -> None:
        self.repo.close()

    # --- remote ---------------------------------------------------------------------------------
    def fetch(self) -> bytes | None:
        """Bring the remote branch tip into the cache; returns it (None for an empty remote).

        Only the tip commit and its trees: depth 1, no blobs. Writing a new version of a file never needs the
        old one, so a cold start costs the same at 100,000 files as at 1,000 (on servers that honour filters).
        """
        return self._fetch(depth=1, only_new=True)

    def deepen(self, depth: int) -> bool:
        """Fetch history back to `depth` commits from the tip (commits and trees, no blobs)."""
        if self.tip is None:
            return False
        self._fetch(depth=depth, only_new=False)
        return True

    def _fetch(self, depth: int, only_new: bool) -> bytes | None:
        ref = self.ref

        def wants(refs: dict[bytes, bytes], depth: int | None = None, **_: Any) -> list[bytes]:
            sha = refs.get(ref)
            return [sha] if sha and (not only_new or sha not in self.repo.object_store) else []

        try:
            result = self._client.fetch(
                self._path, self.repo, determine_wants=wants, depth=depth, filter_spec=b"blob:none"
            )
        except Exception as exc:  # dulwich raises many types; callers only need "unreachable"
            raise RemoteUnavailable(_describe(exc, self.remote)) from None
        tip = result.refs.get(ref)
        if tip:
            self.repo.refs[ref] = tip
        self.tip = tip
        self._tidy()
        self.begin()
        return tip

    def push(self) -> None:
        """Send the staged commits in one pack, only if the remote is still at the tip we built on."""
        if self.head == self.tip:
            return
        base, head, objects = self.tip, self.head, list(self._overlay.new.values())

        def update_refs(advertised: dict[bytes, bytes]) -> dict[bytes, bytes]:
            if advertised.get(self.ref) != base:
                raise PushRejected(self.ref.decode())
            assert head is not None
            return {self.ref: head}

        def pack(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None, **_: Any) -> Any:
            return pack_objects_to_data(objects)

        try:
            result = self._client.send_pack(self._path, update_refs, pack)
        except PushRejected:
            raise
        except Exception as exc:
            raise RemoteUnavailable(_describe(exc, self.remote)) from None
        failed = {ref: err for ref, err in (result.ref_status or {}).items() if err}
        if failed:
            raise PushRejected("; ".join(f"{r.decode()}: {e}" for r, e in failed.items()))
        self.repo.object_store.add_objects([(o, None) for o in objects])
        assert head is not None
        self.repo.refs[self.ref] = head
        self.tip = head
        self._tidy()
        self.begin()

    def _tidy(self) -> None:
        # Each push and fetch adds a pack, and dulwich keeps every pack open: fold them into one now and
        # then, or a warm committer runs out of file descriptors after a few hundred batches.
        if self.repo.object_store.count_pack_files() > _MAX_PACKS:
            self.repo.object_store.repack()

    # --- staging --------------------------------------------------------------------------------
    def begin(self) -> None:
        """Drop anything staged and build on the tip again."""
        self._overlay = _Overlay(self.repo.object_store)
        self.head = self.tip

    def blob_id(self, path: str) -> bytes | None:
        """The blob at `path` in the staged head, or None."""
        if self.head is None:
            return None
        node: Any = self._overlay[self._commit(self.head).tree]
        for part in path.encode().split(b"/"):
            if not isinstance(node, Tree) or part not in node:
                return None
            _, sha = node[part]
            node = self._overlay[sha]
        return node.id if isinstance(node, Blob) else None

    def stage(self, writes: dict[str, bytes | None], author: Person, author_time: int, message: str) -> bytes | None:
        """Commit `writes` (path -> content, None removes) on the staged head; None if nothing changed."""
        changes: list[tuple[bytes, int | None, bytes | None]] = []
        for path, content in writes.items():
            if content is None:
                if self.blob_id(path) is not None:
                    changes.append((path.encode(), None, None))
                continue
            blob = Blob.from_string(content)
            if self.blob_id(path) != blob.id:
                self._overlay.add_object(blob)
                changes.append((path.encode(), _FILE_MODE, blob.id))
        if not changes:
            return None
        parent_tree: Any = self._commit(self.head).tree if self.head else Tree()
        tree = commit_tree_changes(self._overlay, parent_tree, changes)  # type: ignore[arg-type]
        commit = Commit()
        commit.tree = tree
        commit.parents = [self.head] if self.head else []
        commit.author = author.ident()
        commit.committer = COMMITTER
        commit.author_time = author_time
        commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = message.encode("utf-8")
        self._overlay.add_object(commit)
        self.head = commit.id
        return commit.id

    def history(self, stop: bytes | None = None, limit: int = 10_000) -> Iterator[tuple[bytes, bytes]]:
        """(commit id, message) from the staged head back to `stop` (excluded), newest first, at most `limit`.

        A shallow cache is deepened as the walk reaches its end, so this reads what it needs and no more.
        """
        sha, seen, depth = self.head, 0, 16
        while sha is not None and sha != stop and seen < limit:
            try:
                commit = self._commit(sha)
            except KeyError:  # past the end of the shallow cache: fetch more of the past, once per depth
                if depth > 4 * limit or not self.deepen(seen + depth):
                    return
                depth *= 4
                continue
            yield sha, commit.message
            seen += 1
            sha = commit.parents[0] if commit.parents else None

    def _commit(self, sha: bytes) -> Commit:
        obj = self._overlay[sha]
        assert isinstance(obj, Commit)
        return obj


def remote_tip(remote: str, branch: str, token: str | None = None) -> bytes | None:
    """Ask the remote where the branch is, without fetching anything (health checks)."""
    try:
        client, path = get_transport_and_path(remote, username="x-access-token" if token else None, password=token)
        refs = client.get_refs(path)
    except Exception as exc:
        raise RemoteUnavailable(_describe(exc, remote)) from None
    mapping = getattr(refs, "refs", refs)
    return mapping.get(f"refs/heads/{branch}".encode())  # type: ignore[no-any-return]


def _describe(exc: Exception, remote: str) -> str:
    """Say what failed without echoing a URL that may carry a token."""
    return redact(f"{type(exc).__name__}: {exc}")


def redact(text: str) -> str:
    """Hide credentials in URLs (`https://user:token@host` -> `https://***@host`)."""
    return re.sub(r"://[^/@\s]*@", "://***@", text)


__all__ = ["COMMITTER", "GitStore", "Person", "PushRejected", "RemoteUnavailable"]
