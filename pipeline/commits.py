"""The committer's job: changes from the commits queue -> one commit each on the branch, once, one push per batch."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.gitstore import GitStore, Person, PushRejected
from pipeline.messages import Change
from pipeline.snapshot import Order, canonical_json, git_path

log = logging.getLogger(__name__)
_PUSH_ATTEMPTS = 5
_HISTORY_SCAN = 10_000  # commits to look back through when our record of an issue cannot be trusted
_TRAILER = re.compile(rb"^(Jira-[A-Za-z-]+): (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class GitRecord:
    """What git holds for one issue: the newest event committed, where its file is and which blob it is."""

    order: Order
    path: str | None
    blob: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"order": self.order.as_list(), "path": self.path, "blob": self.blob}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GitRecord:
        return cls(Order.from_list(data["order"]), data.get("path"), data.get("blob"))


@dataclass(frozen=True)
class BatchResult:
    commits: list[str]  # event ids that became commits
    skipped: list[str]  # event ids already recorded (replays, older events) or changing nothing
    processed: int  # changes dealt with, from the first; the rest are to be retried


class GitRecords:
    """Per-issue records kept in S3 (durable across cold starts), cached in memory while warm."""

    def __init__(self, load: Callable[[str], dict[str, Any] | None], save: Callable[[str, dict[str, Any]], None]):
        self._load, self._save = load, save
        self._cache: dict[str, GitRecord | None] = {}

    def get(self, issue_id: str) -> GitRecord | None:
        if issue_id not in self._cache:
            data = self._load(issue_id)
            self._cache[issue_id] = GitRecord.from_dict(data) if data else None
        return self._cache[issue_id]

    def save(self, records: dict[str, GitRecord]) -> None:
        for issue_id, record in records.items():
            self._save(issue_id, record.as_dict())
            self._cache[issue_id] = record


def commit_batch(
    changes: list[Change], git: GitStore, records: GitRecords, document: Callable[[Change], Any]
) -> BatchResult:
    """Commit every change git does not hold yet, push once, and replay on a fresh tip if the remote moved.

    A change that cannot be committed stops the batch there (FIFO): the ones before it are pushed, it and the
    rest are left for retry; `processed` says how many were dealt with.
    """
    if git.tip is None and git.head is None:
        git.fetch()
    for attempt in range(_PUSH_ATTEMPTS):
        git.begin()
        staged: dict[str, GitRecord] = {}
        committed: list[str] = []
        skipped: list[str] = []
        processed = 0
        for change in changes:
            try:
                record = staged.get(change.issue_id) or _trusted_record(change.issue_id, git, records)
                order = Order.from_list(change.order)
                if record is not None and order <= record.order:
                    skipped.append(change.event_id)
                else:
                    staged[change.issue_id], made = _stage(change, record, git, document)
                    (committed if made else skipped).append(change.event_id)
            except Exception:
                log.exception("change %s cannot be committed; it and the rest wait for retry", change.event_id)
                break
            processed += 1
        try:
            git.push()
        except PushRejected:
            if attempt == _PUSH_ATTEMPTS - 1:
                raise
            git.fetch()
            continue
        # Recorded only after the push took: a crash before this line is caught by _trusted_record.
        records.save(staged)
        return BatchResult(committed, skipped, processed)
    raise AssertionError("unreachable")


def _trusted_record(issue_id: str, git: GitStore, records: GitRecords) -> GitRecord | None:
    """Our S3 record if git agrees with it, else what the commit history says."""
    record = records.get(issue_id)
    if record is not None:
        current = git.blob_id(record.path) if record.path else None
        if (current.decode() if current else None) == record.blob:
            return record
    return _record_from_history(issue_id, git) or record


def _record_from_history(issue_id: str, git: GitStore) -> GitRecord | None:
    for count, (_, message) in enumerate(git.history()):
        if count >= _HISTORY_SCAN:
            break
        trailers = {k.decode(): v.decode("utf-8", "replace").strip() for k, v in _TRAILER.findall(message)}
        if trailers.get("Jira-Issue-Id") != issue_id or "Jira-Event-Time" not in trailers:
            continue
        order = Order(
            int(trailers["Jira-Event-Time"]), int(trailers.get("Jira-Changelog-Id") or 0), trailers["Jira-Event-Id"]
        )
        key = trailers.get("Jira-Issue-Key")
        path = None if trailers.get("Jira-Event") == "jira:issue_deleted" else git_path(key, issue_id)
        blob = git.blob_id(path) if path else None
        return GitRecord(order, path, blob.decode() if blob else None)
    return None


def _stage(
    change: Change, record: GitRecord | None, git: GitStore, document: Callable[[Change], Any]
) -> tuple[GitRecord, bool]:
    order = Order.from_list(change.order)
    new_path = None if change.deleted else git_path(change.key, change.issue_id)
    old_paths = {p for p in (record.path if record else None, _path_of(change.previous_key, change.issue_id)) if p}
    writes: dict[str, bytes | None] = {p: None for p in old_paths if p != new_path}
    content: bytes | None = None
    if new_path is not None:
        content = canonical_json(change.document if change.document is not None else document(change))
        writes[new_path] = content
    made = git.stage(writes, _author(change), order.time_ms // 1000, commit_message(change)) is not None
    blob = git.blob_id(new_path) if new_path else None
    return GitRecord(order, new_path, blob.decode() if blob else None), made


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
    order = Order.from_list(change.order)
    lines += [
        f"Jira-Event-Id: {change.event_id}",
        f"Jira-Event: {change.event_name}",
        f"Jira-Issue-Id: {change.issue_id}",
        f"Jira-Issue-Key: {key}",
        f"Jira-Event-Time: {order.time_ms}",
        f"Jira-Changelog-Id: {order.changelog_id}",
    ]
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 120 else text[:117] + "..."
