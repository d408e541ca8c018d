"""The committer's job: changes from the commits queue -> one commit each on the branch, once, one push per batch."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline import fields
from pipeline.git.store import GitStore, Person, PushRejected, redact
from pipeline.ids import Order, canonical_json
from pipeline.markdown import render_issue
from pipeline.messages import Change
from pipeline.snapshot import git_path, markdown_path
from pipeline.store import Store, StoreConflict, record_shard_key

log = logging.getLogger(__name__)
_PUSH_ATTEMPTS = 5
_HISTORY_SCAN = 10_000  # bound on the commits read back when the branch moved past our records
_TRAILER = re.compile(rb"^(Jira-[A-Za-z-]+): (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class GitRecord:
    """What git holds for one issue: the newest event committed and where its file is (None once deleted)."""

    order: Order
    path: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"order": self.order.as_list(), "path": self.path}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GitRecord:
        return cls(Order.from_list(data["order"]), data.get("path"))


@dataclass(frozen=True)
class BatchResult:
    commits: list[str]  # event ids that became commits
    skipped: list[str]  # event ids already recorded (replays, older events) or changing nothing
    left: list[int]  # positions of the changes not dealt with (one failed, and its issue's later ones): retry them
    shas: list[str] = field(default_factory=list)  # the commit of each of `commits`, in the same order

    def done(self, count: int) -> list[int]:
        """Positions, of `count` changes, that were dealt with."""
        left = set(self.left)
        return [i for i in range(count) if i not in left]


RECORD_SHARDS = 64  # records are kept in this many objects: a push of many issues rewrites at most this many


class GitRecords:
    """What git holds per issue, in memory while warm, checkpointed in the store now and then.

    A checkpoint writes the shards (`gitstate/records/NN.json`) that changed, then the tip they describe
    (`gitstate/_tip.json`). It is taken every `every_commits` commits or `every_seconds`, not per push: between
    checkpoints the records are in git itself, in the trailers of the commits since the checkpoint's tip, which a
    cold start reads back (`commit_batch` does). So the store holds a record per issue at a cost of a few writes
    per thousand changes, and records are never ahead of git, only behind it by what the walk makes good.
    Issues recorded before shards existed (`gitstate/<issue id>.json`) are read from there until a checkpoint
    holds them.
    """

    def __init__(
        self,
        store: Store,
        every_commits: int = 5_000,
        every_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.every_commits, self.every_seconds, self._clock = every_commits, every_seconds, clock
        self._cache: dict[str, GitRecord | None] = {}
        self._shards: dict[int, dict[str, Any]] = {}  # shard -> its records as last read or written
        self._dirty: set[str] = set()  # issues recorded since the last checkpoint
        self._tip: str | None = None  # the branch tip the records in memory describe
        self._tip_loaded = False
        self._since_checkpoint = 0  # commits between the checkpoint's tip and ours
        self._checkpointed_at = clock()

    def tip(self) -> str | None:
        """The branch tip the records describe."""
        if not self._tip_loaded:
            self._tip, self._tip_loaded = self.store.committed_tip(), True
        return self._tip

    def get(self, issue_id: str) -> GitRecord | None:
        if issue_id not in self._cache:
            data = self._shard(shard_of(issue_id)).get(issue_id) or self.store.gitstate(issue_id)
            self._cache[issue_id] = GitRecord.from_dict(data) if data else None
        return self._cache[issue_id]

    def save(self, records: dict[str, GitRecord], tip: str | None, commits: int = 0) -> None:
        """Remember `records` as of `tip` (`commits` new commits since the last save); checkpoint when due."""
        for issue_id, record in records.items():
            self._cache[issue_id] = record
            self._dirty.add(issue_id)
        self.tip()
        self._tip = tip or self._tip
        self._since_checkpoint += commits
        due = (
            self._since_checkpoint >= self.every_commits or self._clock() - self._checkpointed_at >= self.every_seconds
        )
        if self._dirty and due:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write the changed shards, then the tip they describe. A crash in between leaves the old tip: the walk
        from it finds the same records again."""
        if self._tip is None:
            return
        by_shard: dict[int, dict[str, GitRecord]] = {}
        for issue_id in self._dirty:
            record = self._cache.get(issue_id)
            if record is not None:
                by_shard.setdefault(shard_of(issue_id), {})[issue_id] = record
        for shard, records in sorted(by_shard.items()):
            self._write_shard(shard, records)
        self.store.put_committed_tip(self._tip)
        self._dirty.clear()
        self._since_checkpoint = 0
        self._checkpointed_at = self._clock()

    def _shard(self, shard: int) -> dict[str, Any]:
        if shard not in self._shards:
            found = self.store.read_json(record_shard_key(shard))
            self._shards[shard] = dict(found.data.get("records") or {}) if found else {}
        return self._shards[shard]

    def _write_shard(self, shard: int, records: dict[str, GitRecord]) -> None:
        # Compare-and-swap, keeping the newer record of each issue: a second committer (which never should run,
        # but may) cannot take a record back to an older commit by writing over ours.
        for _ in range(20):
            found = self.store.read_json(record_shard_key(shard))
            held = dict(found.data.get("records") or {}) if found else {}
            for issue_id, record in records.items():
                other = held.get(issue_id)
                if other is None or Order.from_list(other["order"]) <= record.order:
                    held[issue_id] = record.as_dict()
            try:
                self.store.write_json(record_shard_key(shard), {"records": held}, found)
            except StoreConflict:
                continue
            self._shards[shard] = held
            return
        raise StoreConflict(record_shard_key(shard))


def shard_of(issue_id: str) -> int:
    return int(issue_id) % RECORD_SHARDS if issue_id.isdigit() else 0


def commit_batch(
    changes: list[Change],
    git: GitStore,
    records: GitRecords,
    document: Callable[[Change], Any],
    names: Mapping[str, str] | None = None,
) -> BatchResult:
    """Commit every change git does not hold yet, push once, and replay on a fresh tip if the remote moved.

    Changes of one issue are in order; issues are independent. A change that cannot be committed holds back its
    issue's later changes (they are left for retry, in `left`) while every other issue goes on. `names` (field id
    to name, from Jira's catalogue) is what the Markdown beside each JSON calls fields.
    """
    if not git.fetched:
        git.fetch()
    for attempt in range(_PUSH_ATTEMPTS):
        git.begin()
        since_records = _records_since(git, records.tip())
        staged: dict[str, GitRecord] = {}
        committed: list[str] = []
        shas: list[str] = []
        skipped: list[str] = []
        left: list[int] = []
        held_back: set[str] = set()
        for position, change in enumerate(changes):
            if change.issue_id in held_back:
                left.append(position)
                continue
            try:
                record = (
                    staged.get(change.issue_id) or since_records.get(change.issue_id) or records.get(change.issue_id)
                )
                order = change.order
                if record is not None and order <= record.order:
                    skipped.append(change.event_id)
                else:
                    staged[change.issue_id], sha = _stage(change, record, git, document, names or {})
                    if sha is None:
                        skipped.append(change.event_id)
                    else:
                        committed.append(change.event_id)
                        shas.append(sha)
            except Exception:
                log.exception("change %s cannot be committed; its issue waits for retry", change.event_id)
                held_back.add(change.issue_id)
                left.append(position)
        try:
            git.push()
        except PushRejected:
            if attempt == _PUSH_ATTEMPTS - 1:
                raise
            git.fetch()
            continue
        # Recorded only after the push took; a crash before this line is made good by _records_since.
        # What the walk since the recorded tip found is saved too, so records never lag behind git.
        try:
            records.save(
                {**since_records, **staged}, git.tip.decode() if git.tip else None, len(committed) + len(since_records)
            )
        except Exception:
            # The push stands: raising here would leave its changes undeleted and unpublished, and their retry would
            # find them in git and skip them, publishing nothing. The next batch's walk from the recorded tip
            # (_records_since) makes the records good.
            log.exception("the push took but its records were not saved; the next batch catches them up")
        return BatchResult(committed, skipped, left, shas)
    raise AssertionError("unreachable")


def commit_fields(git: GitStore, catalogue: list[dict[str, Any]], now: float) -> bool:
    """Commit Jira's field catalogue as `fields.json` when it differs from the branch's, and push it. False when
    there is no catalogue or git holds it already (the usual case: one tree lookup, no push)."""
    if not catalogue:
        return False
    if not git.fetched:
        git.fetch()
    content = canonical_json(catalogue)
    for attempt in range(_PUSH_ATTEMPTS):
        git.begin()
        if git.stage({fields.GIT_PATH: content}, _JSYNC, int(now), _FIELDS_MESSAGE) is None:
            return False
        try:
            git.push()
            return True
        except PushRejected:
            if attempt == _PUSH_ATTEMPTS - 1:
                raise
            git.fetch()
    raise AssertionError("unreachable")


_JSYNC = Person("JSync", "jsync@jsync.invalid")
_FIELDS_MESSAGE = (
    "fields.json: Jira's field catalogue changed\n\nWhat each field id is called in Jira, as of the last reconcile.\n"
)


def _records_since(git: GitStore, saved_tip: str | None) -> dict[str, GitRecord]:
    """What the commits after `saved_tip` say about their issues, newest first (empty when at the tip)."""
    found: dict[str, GitRecord] = {}
    for _, message in git.history(stop=saved_tip.encode() if saved_tip else None, limit=_HISTORY_SCAN):
        # Only the final paragraph holds trailers; a changed field's line could look like one.
        block = message.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        trailers = {k.decode(): v.decode("utf-8", "replace").strip() for k, v in _TRAILER.findall(block)}
        issue_id = trailers.get("Jira-Issue-Id")
        if not issue_id or issue_id in found or "Jira-Event-Time" not in trailers:
            continue
        if "Jira-Order" in trailers:
            time_ms, changelog_id, key = trailers["Jira-Order"].split(" ", 2)
            order = Order(int(time_ms), int(changelog_id), key)
        else:
            order = Order(
                int(trailers["Jira-Event-Time"]), int(trailers.get("Jira-Changelog-Id") or 0), trailers["Jira-Event-Id"]
            )
        deleted = trailers.get("Jira-Event") == "jira:issue_deleted"
        found[issue_id] = GitRecord(order, None if deleted else git_path(trailers.get("Jira-Issue-Key"), issue_id))
    return found


def _stage(
    change: Change, record: GitRecord | None, git: GitStore, document: Callable[[Change], Any], names: Mapping[str, str]
) -> tuple[GitRecord, str | None]:
    """One commit for the change: the issue's JSON and Markdown written (or removed, or moved) together. Returns
    the commit's sha, or None when the change alters no file."""
    order = change.order
    new_path = None if change.deleted else git_path(change.key, change.issue_id)
    old_paths = {p for p in (record.path if record else None, _path_of(change.previous_key, change.issue_id)) if p}
    writes: dict[str, bytes | None] = {}
    for old in old_paths - {new_path}:
        writes[old] = writes[markdown_path(old)] = None
    if new_path is not None:
        doc = change.document if change.document is not None else document(change)
        content = canonical_json(doc)
        # The Markdown is rendered only when the JSON changes: a renamed field alone never makes a commit.
        if writes or not git.holds(new_path, content):
            writes[new_path] = content
            writes[markdown_path(new_path)] = render_issue(doc, names).encode("utf-8", "backslashreplace")
    sha = git.stage(writes, _author(change), change.time_ms // 1000, commit_message(change)) if writes else None
    return GitRecord(order, new_path), sha.decode() if sha else None


def _path_of(key: str | None, issue_id: str) -> str | None:
    return git_path(key, issue_id) if key else None


def _author(change: Change) -> Person:
    who = change.actor or {}
    name = who.get("displayName") or who.get("name") or who.get("accountId") or "Jira"
    email = who.get("emailAddress") or f"{who.get('accountId') or who.get('name') or 'jira'}@jira.invalid"
    return Person(name, email)


def commit_message(change: Change) -> str:
    """Subject, changed fields, trailers (the trailers also let the committer recover its records from git)."""
    key = change.key or change.issue_id
    lines = [f"{key}: {change.subject}".replace("\n", " ")[:200], ""]
    for c in change.changes:
        lines.append(f"{c['field']}: {_show(c.get('from'))} -> {_show(c.get('to'))}")
    if change.changes:
        lines.append("")
    order = change.order
    lines += [
        f"Jira-Event-Id: {change.event_id}",
        f"Jira-Event: {change.event_name}",
        f"Jira-Issue-Id: {change.issue_id}",
        f"Jira-Issue-Key: {key}",
        f"Jira-Event-Time: {change.time_ms}",
        f"Jira-Changelog-Id: {order.changelog_id}",
    ]
    if (order.time_ms, order.event_id) != (change.time_ms, change.event_id):
        # Placed above a newer state (a late delete, a full issue over a partial one): keep where, for recovery.
        lines.append(f"Jira-Order: {order.time_ms} {order.changelog_id} {order.event_id}")
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 120 else text[:117] + "..."


class PushLog:
    """The committer's last push and last push error, one small object health reads (`gitstate/_push.json`).

    Health learns how git is doing from this record, so the read API needs no git credential. Written once per
    batch that reached the remote; the previous record is read once per cold start, to carry the last good push
    and the start of a run of failures across invocations.
    """

    def __init__(
        self,
        load: Callable[[], dict[str, Any] | None],
        save: Callable[[dict[str, Any]], None],
        every_seconds: float = 60.0,
    ) -> None:
        self._load, self._save, self.every_seconds = load, save, every_seconds
        self._record: dict[str, Any] | None = None
        self._loaded = False
        self._written_at: float | None = None  # when this process last wrote the record

    def _previous(self) -> dict[str, Any]:
        if not self._loaded:
            self._record, self._loaded = self._load(), True
        return self._record or {}

    def pushed(self, tip: str | None, now: float) -> None:
        """Record a good push; while pushes keep succeeding, at most once every `every_seconds` (health reads
        "last push at", and a write a push would be a write a change when changes come one at a time)."""
        previous = self._previous()
        at = _iso(now)
        record = {**previous, "ok": True, "attempt_at": at, "last_push": {"at": at, "tip": tip}}
        recent = self._written_at is not None and now - self._written_at < self.every_seconds
        if previous.get("ok") is True and recent:
            self._record = record
            return
        self._write(record, now)

    def failed(self, error: str, now: float, secrets: tuple[str | None, ...] = ()) -> None:
        """Record a failed push; `error` is cleaned of URL credentials and of each of `secrets` before it is kept."""
        previous = self._previous()
        at = _iso(now)
        since = previous["last_error"]["since"] if previous.get("ok") is False and previous.get("last_error") else at
        record = {
            "last_push": previous.get("last_push"),
            "ok": False,
            "attempt_at": at,
            "last_error": {"at": at, "since": since, "error": clean_error(error, secrets)},
        }
        self._write(record, now)

    def _write(self, record: dict[str, Any], now: float) -> None:
        record.setdefault("last_push", None)
        record.setdefault("last_error", None)
        self._save(record)
        self._record = record
        self._written_at = now


def clean_error(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """One line, short, with no credential: URL user-info redacted, and any known secret's value removed."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    line = redact(text).strip().splitlines()[0] if text.strip() else "unknown error"
    return line if len(line) <= 300 else line[:297] + "..."


def _iso(epoch_seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))
