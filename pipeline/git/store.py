"""Documents -> commits on a bare cache repository -> one push per batch (the only module that imports dulwich)."""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from dulwich.client import (
    HTTPProxyUnauthorized,
    HTTPUnauthorized,
    LocalGitClient,
    default_urllib3_manager,
    get_transport_and_path,
)
from dulwich.errors import ChecksumMismatch, GitProtocolError, NotGitRepository, ObjectFormatException
from dulwich.file import FileLocked
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
from dulwich.pack import REF_DELTA, UnpackedObject, full_unpacked_object
from dulwich.refs import Ref
from dulwich.repo import Repo
from urllib3 import PoolManager
from urllib3.exceptions import HTTPError
from urllib3.util.retry import Retry

from pipeline.git.tree import DIR_MODE, FILE_MODE, RawTree

COMMITTER = b"JSync <jsync@jsync.invalid>"
_MAX_PACKS = 32
_EMPTY_TREE = RawTree.build([])

logger = logging.getLogger("jsync.git")
# What a remote that is down, unreachable, refusing or talking nonsense raises; anything else is our own bug and
# is raised as it is, not reported as the remote's fault.
_REMOTE_ERRORS = (
    OSError,
    HTTPError,
    GitProtocolError,
    NotGitRepository,
    HTTPUnauthorized,
    HTTPProxyUnauthorized,
    ChecksumMismatch,
    ObjectFormatException,
)
_FETCH_ATTEMPTS = 4  # a fetch that did not bring the tip it names is tried again this often


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


def _open_cache(cache_dir: Path) -> Repo:
    """The cache repository, made anew when it is missing or was left half-made (a process killed mid-init)."""
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    if (cache_dir / "HEAD").exists():
        try:
            return Repo(str(cache_dir))
        except Exception:  # a cache only: the remote holds everything it had
            logger.warning("git cache %s unreadable; starting it afresh", cache_dir)
    shutil.rmtree(cache_dir, ignore_errors=True)
    return Repo.init_bare(str(cache_dir), mkdir=True)


class GitStore:
    """A bare cache of the remote branch: stage commits on its tip, push them in one pack."""

    def __init__(self, remote: str, branch: str, cache_dir: Path, token: str | None = None) -> None:
        self.ref = Ref(f"refs/heads/{branch}".encode())
        self.cache_dir = cache_dir
        self._client, self._path = get_transport_and_path(
            remote, username="x-access-token" if token else None, password=token
        )
        self.repo = _open_cache(cache_dir)
        self.tip: bytes | None = self.repo.refs[self.ref] if self.ref in self.repo.refs else None  # noqa: SIM401
        self.head: bytes | None = self.tip  # the staged commits' head; the tip until something is staged
        self._trees: dict[bytes, RawTree] = {}  # every tree read or written, by hex id
        self._new: dict[bytes, ShaFile] = {}  # the batch's blobs and commits, in memory until the push took
        self._new_trees: dict[bytes, RawTree] = {}  # the batch's trees, likewise
        self._deltas: dict[bytes, tuple[bytes, bytes]] = {}  # new tree -> (base tree, delta from it)
        self._replaced: set[bytes] = set()  # tip trees this batch replaced
        # Thin packs (deltas against the remote's trees) for git servers; a local path remote takes whole objects.
        self._deltas_ok = not isinstance(self._client, LocalGitClient)
        self.fetched = False  # once per process: /tmp may hold an old tip from a previous runtime
        self.begin()

    def close(self) -> None:
        self.repo.close()

    # --- remote ---------------------------------------------------------------------------------
    def fetch(self) -> bytes | None:
        """Bring the remote branch tip into the cache; returns it (None for an empty remote).

        Only the tip commit and its trees: depth 1, no blobs. Writing a new version of a file never needs the
        old one, so a cold start costs the same at 100,000 files as at 1,000 (on servers that honour filters).
        """
        if not self.fetched and self.tip is not None:
            # A cache left by an earlier process holds commits only (trees live in memory): the first tree read
            # would start it afresh and fetch again, so start afresh now and fetch once.
            self._fresh_cache()
        return self._fetch(depth=1, only_new=True, filter_spec=b"blob:none")

    def deepen(self, depth: int) -> bool:
        """Fetch history back to `depth` commits from the tip (commits and trees, no blobs)."""
        if self.tip is None:
            return False
        # Recovery reads commit messages only: no trees either.
        self._fetch(depth=depth, only_new=False, filter_spec=b"tree:0")
        return True

    def _fetch(self, depth: int, only_new: bool, filter_spec: bytes, restart: bool = True) -> bytes | None:
        ref = self.ref

        def wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            sha = refs.get(ref)
            return [sha] if sha and (not only_new or sha not in self.repo.object_store) else []

        for attempt in range(_FETCH_ATTEMPTS):
            try:
                result = self._client.fetch(
                    self._path, self.repo, determine_wants=wants, depth=depth, filter_spec=filter_spec
                )
            except _REMOTE_ERRORS as exc:
                raise RemoteUnavailable(describe_error(exc)) from None
            tip: bytes | None = result.refs.get(ref)
            # A local remote read while another push writes it can name a tip whose pack it did not yet see.
            if not tip or ObjectID(tip) in self.repo.object_store:
                break
            if attempt == _FETCH_ATTEMPTS - 1:
                raise RemoteUnavailable(f"the remote's tip {tip.decode()[:12]} did not arrive")
            time.sleep(0.05 * (attempt + 1))
        if tip:
            self.repo.refs[ref] = ObjectID(tip)
        if restart:
            self.tip = tip
            self.fetched = True
            self.begin()
        return tip

    def push(self) -> None:
        """Send the staged commits in one pack, only if the remote is still at the tip we built on."""
        base, head = self.tip, self.head
        if head is None or head == base:
            return
        entries = [full_unpacked_object(o) for o in self._new.values()]
        entries += [_tree_entry(key, tree, self._deltas.get(key)) for key, tree in self._new_trees.items()]

        def update_refs(advertised: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
            if advertised.get(self.ref) != base:
                raise PushRejected(self.ref.decode())
            return {self.ref: ObjectID(head)}

        def pack(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None, **_: Any) -> Any:
            return len(entries), iter(entries)

        try:
            result = self._client.send_pack(
                self._path.encode() if isinstance(self._path, str) else self._path, update_refs, pack
            )
        except PushRejected:
            raise
        except FileLocked:
            # Another push holds the branch's lock on a local remote: it is moving, as a rejection says.
            raise PushRejected(self.ref.decode()) from None
        except _REMOTE_ERRORS as exc:
            raise RemoteUnavailable(describe_error(exc)) from None
        failed = {ref: err for ref, err in (result.ref_status or {}).items() if err}
        if failed:
            raise PushRejected("; ".join(f"{r.decode()}: {e}" for r, e in failed.items()))
        # Locally only the commits (history reads their messages). Blobs never: the cache is blobless. Trees stay
        # in memory, where the next batch reads them; a new process fetches the tip's trees afresh.
        commits = [o for o in self._new.values() if o.type_num == Commit.type_num]
        self.repo.object_store.add_objects([(o, None) for o in commits])
        self.repo.refs[self.ref] = ObjectID(head)
        self.tip = head
        for key in self._replaced:  # the remote has moved past them
            self._trees.pop(key, None)
        self._new_trees.clear()  # pushed: they are the remote's now, and stay cached
        self.begin()
        self._tidy()

    def _tidy(self) -> None:
        # Each push adds a pack and dulwich keeps every pack open, and trees pile up: now and then start the
        # cache afresh from a depth-1 fetch (a fraction of a second) rather than repack it all in memory.
        if self.repo.object_store.count_pack_files() <= _MAX_PACKS:
            return
        self._fresh_cache()
        self.tip = self.head = None
        self.fetched = False
        with contextlib.suppress(RemoteUnavailable):  # the pushed batch stands; the next batch fetches first
            self.fetch()

    def _fresh_cache(self) -> None:
        self.repo.close()
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.repo = Repo.init_bare(str(self.cache_dir), mkdir=True)

    # --- staging --------------------------------------------------------------------------------
    def begin(self) -> None:
        """Drop anything staged and build on the tip again."""
        for key in self._new_trees:
            self._trees.pop(key, None)  # never pushed: the remote does not have them
        self._new = {}
        self._new_trees = {}
        self._deltas = {}
        self._replaced = set()
        self.head = self.tip

    def stage(self, writes: dict[str, bytes | None], author: Person, author_time: int, message: str) -> bytes | None:
        """Commit `writes` (path -> content, None removes) on the staged head; None if nothing changed.

        Only the trees on the changed paths are rebuilt, each by splicing one entry into its cached bytes.
        """
        root = self._tree(self._commit(self.head).tree) if self.head else _EMPTY_TREE
        changed = False
        for path, content in writes.items():
            current = self.blob_id_in(root, path)
            if content is None:
                if current is not None:
                    root, changed = self._set(root, path, None), True
                continue
            blob = Blob.from_string(content)
            if current != blob.id:
                self._new[blob.id] = blob
                root, changed = self._set(root, path, bytes.fromhex(blob.id.decode())), True
        if not changed:
            return None
        commit = Commit()
        commit.tree = root.sha.hex().encode()
        commit.parents = [ObjectID(self.head)] if self.head else []
        commit.author = author.ident()
        commit.committer = COMMITTER
        commit.author_time = author_time
        commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = message.encode("utf-8")
        self._new[commit.id] = commit
        self.head = commit.id
        return commit.id

    def holds(self, path: str, content: bytes) -> bool:
        """Whether the staged head has exactly `content` at `path`."""
        if self.head is None:
            return False
        return self.blob_id_in(self._tree(self._commit(self.head).tree), path) == Blob.from_string(content).id

    def blob_id_in(self, root: RawTree, path: str) -> bytes | None:
        *dirs, name = path.encode().split(b"/")
        tree = root
        for part in dirs:
            sub = tree.find(part, DIR_MODE)
            if sub is None:
                return None
            tree = self._tree(sub.hex().encode())
        found = tree.find(name, FILE_MODE)
        return found.hex().encode() if found else None

    def _set(self, root: RawTree, path: str, sha: bytes | None) -> RawTree:
        """`root` with the file at `path` set to `sha` (None removes it and any directory left empty)."""
        *dirs, name = path.encode().split(b"/")
        chain = [root]
        for part in dirs:
            sub = chain[-1].find(part, DIR_MODE)
            chain.append(self._tree(sub.hex().encode()) if sub else _EMPTY_TREE)
        entry_name, mode, entry_sha = name, FILE_MODE, sha
        for depth in range(len(chain) - 1, -1, -1):
            old = chain[depth]
            new, delta = old.with_entry(entry_name, mode, entry_sha)
            self._remember(new, old, delta, root=depth == 0)
            if depth:
                entry_name, mode = dirs[depth - 1], DIR_MODE
                entry_sha = new.sha if len(new) else None
            chain[depth] = new
        return chain[0]

    def _remember(self, new: RawTree, old: RawTree, delta: bytes, root: bool) -> None:
        if not len(new) and not root:
            return  # an emptied directory disappears from its parent: nothing refers to it
        key, old_key = new.sha.hex().encode(), old.sha.hex().encode()
        if old_key in self._new_trees:
            self._trees.pop(old_key, None)  # an intermediate version: nothing reads it again
        elif len(old):
            self._replaced.add(old_key)
        # A tree the remote already has (a directory put back as it was) is not sent again: no delta cycles.
        known = key in self._trees or ObjectID(key) in self.repo.object_store
        self._trees[key] = new
        if key not in self._new_trees and not known:
            self._new_trees[key] = new
            # Git refuses deltas shorter than 4 bytes and against an empty base: send those whole.
            if len(old) and len(new) and self._deltas_ok:
                self._deltas[key] = (old.sha, delta)
        self._replaced.discard(key)

    def _tree(self, sha: bytes) -> RawTree:
        """A tree by hex id, parsed once and then kept: the directories written to stay in memory.

        The cache holds one version per directory read or written (superseded versions leave it), so it is
        bounded by the repository's trees along the paths JSync writes, a few MB at 100,000 issues.
        """
        cached = self._trees.get(sha)
        if cached is not None:
            return cached
        try:
            obj = self.repo.object_store[ObjectID(sha)]
        except KeyError:  # tip trees live in memory only and this one is not there: rebuild the cache from the tip
            self._fresh_cache()
            self._fetch(depth=1, only_new=True, filter_spec=b"blob:none", restart=False)
            obj = self.repo.object_store[ObjectID(sha)]
        if not isinstance(obj, Tree):
            raise TypeError(f"{sha.decode()} is a {obj.type_name.decode()}, not a tree")
        tree = RawTree.build((name, mode, bytes.fromhex(hexsha.decode())) for name, mode, hexsha in obj.iteritems())
        self._trees[sha] = tree
        return tree

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
        obj = self._new[sha] if sha in self._new else self.repo.object_store[ObjectID(sha)]
        if not isinstance(obj, Commit):
            raise TypeError(f"{sha.decode()} is a {obj.type_name.decode()}, not a commit")
        return obj


def _tree_entry(key: bytes, tree: RawTree, delta: tuple[bytes, bytes] | None) -> UnpackedObject:
    """A changed tree for the pack: a delta against its previous version where there is one, else whole."""
    if delta is None:
        return UnpackedObject(Tree.type_num, decomp_chunks=[tree.data], sha=tree.sha)
    base, data = delta
    return UnpackedObject(REF_DELTA, delta_base=base, decomp_chunks=[data], sha=tree.sha)


def remote_tip(remote: str, branch: str, token: str | None = None) -> bytes | None:
    """Ask the remote where the branch is, with the token, without fetching anything (the committer benchmark)."""
    try:
        client, path = get_transport_and_path(remote, username="x-access-token" if token else None, password=token)
        return _branch_tip(client, path, branch)
    except Exception as exc:
        raise RemoteUnavailable(describe_error(exc)) from None


def _branch_tip(client: Any, path: str, branch: str) -> bytes | None:
    refs = client.get_refs(path)
    mapping = getattr(refs, "refs", refs)  # dulwich returns a plain dict or, in newer versions, a result object
    return mapping.get(f"refs/heads/{branch}".encode())  # type: ignore[no-any-return]


def is_local_remote(remote: str) -> bool:
    """A path or file:// URL: its refs can be read directly, with no credential."""
    if "://" in remote:
        return remote.startswith("file://")
    # `host:path` (scp-like) is ssh; one letter before the colon is a Windows drive.
    return not re.match(r"^[^/\\]{2,}:", remote)


def probe_tip(remote: str, branch: str, timeout: float = 3.0) -> bytes | None:
    """Where the branch is, asked without any credential (health): a local remote's refs read directly, an http(s)
    remote asked anonymously, with user-info stripped from its URL (only public repositories answer)."""
    parts = urlsplit(remote)
    try:
        if is_local_remote(remote):
            client, path = get_transport_and_path(remote)
        elif parts.scheme in ("http", "https"):
            anonymous = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
            # Without credentials dulwich builds a plain PoolManager.
            pool = cast(PoolManager, default_urllib3_manager(None, timeout=timeout))
            # One try, redirects followed: health answers within seconds whatever the remote does.
            pool.connection_pool_kw["retries"] = Retry(total=3, connect=0, read=0, status=0, other=0, redirect=3)
            client, path = get_transport_and_path(anonymous, pool_manager=pool)
        else:
            raise RemoteUnavailable("only path, file:// and http(s) remotes are looked at without credentials")
        return _branch_tip(client, path, branch)
    except RemoteUnavailable:
        raise
    except Exception as exc:
        raise RemoteUnavailable(describe_error(exc)) from None


def describe_error(exc: BaseException) -> str:
    """What failed, without echoing a URL that may carry a token."""
    return redact(f"{type(exc).__name__}: {exc}")


def redact(text: str) -> str:
    """Hide credentials in URLs (`https://user:token@host` -> `https://***@host`)."""
    return re.sub(r"://[^/@\s]*@", "://***@", text)


__all__ = [
    "COMMITTER",
    "GitStore",
    "Person",
    "PushRejected",
    "RemoteUnavailable",
    "describe_error",
    "is_local_remote",
    "probe_tip",
    "redact",
]
