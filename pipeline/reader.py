"""The read side: issues, projects, history and versions from S3.

Each answer takes a bounded number of S3 calls, but for history: one LIST per 1000 versions of the issue, as
its snapshots are its history (one object per captured event, which the writer has to write anyway).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from pipeline.errors import JSyncError
from pipeline.ids import ISSUE_REF, PROJECT_KEY, VERSION, Order, canonical_json
from pipeline.index import project_of
from pipeline.records import LatestState, as_latest
from pipeline.store import (
    Store,
    history_position,
    history_position_time,
    history_prefix,
    issue_key_index,
    latest_key,
    project_count_key,
    project_prefix,
    short_event_id,
    snapshot_prefix,
    version_key,
)

# Bounded, so a path can never make an S3 key longer than S3 allows.
_CURSOR_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}\.json$")
_PARALLEL_READS = 16


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class IssueState:
    issue_id: str
    document: dict[str, Any]
    etag: str


def _bad(code: str, detail: str) -> JSyncError:
    return JSyncError(400, code, detail)


def check_issue_ref(ref: str) -> str:
    if not ISSUE_REF.fullmatch(ref):
        raise _bad("invalid_issue_ref", f"{ref[:40]!r} is neither an issue key like OPS-17 nor a numeric issue id.")
    return ref


def check_project(project: str) -> str:
    if not PROJECT_KEY.fullmatch(project):
        raise _bad("invalid_project", f"{project[:40]!r} is not a project key like OPS.")
    return project


def resolve(store: Store, ref: str) -> str:
    """The numeric issue id for a key (current or old) or an id; 404 when JSync never saw it."""
    check_issue_ref(ref)
    if ref.isdigit():
        return ref
    found = store.read_json(issue_key_index(ref))
    if found is None:
        raise JSyncError(404, "issue_not_found", f"No issue {ref} has been captured.")
    return str(found.data["issue_id"])


def latest_issue(store: Store, ref: str) -> IssueState:
    issue_id = resolve(store, ref)
    found = store.latest(issue_id)
    if found is None:
        raise JSyncError(404, "issue_not_found", f"No issue {ref} has been captured.")
    state = as_latest(found.data)
    if state.get("deleted"):
        raise JSyncError(410, "issue_deleted", _deleted_detail(ref, state))
    doc = state["issue"]
    if doc is None:  # only a deletion's snapshot can lack its issue, and a deleted issue answered 410 above
        raise JSyncError(404, "issue_not_found", f"No issue {ref} has been captured.")
    return IssueState(issue_id, doc, '"' + hashlib.sha256(canonical_json(doc)).hexdigest()[:32] + '"')


def _deleted_detail(ref: str, state: LatestState) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(state.get("deleted_at") or 0) / 1000))
    who = (state.get("deleted_by") or {}).get("displayName")
    by = f" by {who}" if who else ""
    return f"Issue {ref} was deleted in Jira at {when}{by}; its history is still readable."


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison over a list of tags, as RFC 9110 asks for If-None-Match."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


def projects(store: Store) -> list[dict[str, Any]]:
    """Every project captured, with its issue count: one LIST plus one GET per project."""
    counts = _read_many(store, [project_count_key(k) for k in store.project_keys()])
    return [{"key": c["project"], "name": c.get("name"), "issue_count": int(c["issue_count"])} for c in counts if c]


def project_issues(store: Store, project: str, limit: int, cursor: str | None) -> Page:
    """A page of a project's issues in id order: one LIST of its members plus `limit` parallel GETs of their
    latest state."""
    prefix = project_prefix(check_project(project)) + "issues/"
    after = _decode_cursor(cursor, prefix) if cursor else None
    keys, more = store.list_keys(prefix, after, limit)
    ids = [name for name in (key[len(prefix) :].removesuffix(".json") for key in keys) if name.isdigit()]
    states = _read_many(store, [latest_key(str(int(name))) for name in ids])
    # An issue deleted or moved away since the LIST is no longer the project's.
    docs = [s["issue"] for s in states if s and not s.get("deleted") and project_of(s.get("issue")) == project]
    return Page([_listing_item(doc) for doc in docs], _encode_cursor(keys[-1]) if more and keys else None)


def _listing_item(doc: dict[str, Any]) -> dict[str, Any]:
    fields = doc.get("fields") or {}
    status = fields.get("status")
    return {
        "key": doc.get("key"),
        "id": str(doc.get("id")),
        "summary": fields.get("summary"),
        "status": status.get("name") if isinstance(status, dict) else status,
        "updated": fields.get("updated"),
    }


@dataclass(frozen=True)
class _Version:
    """One snapshot of the issue as a history entry; `changelog_id` is None until read (only ties on time need it)."""

    name: str  # `<event_time_ms>-<event_id>`: the version
    time_ms: int  # where it sorts: its event time, or for the deletion the time latest/ ranked it at
    event_id: str
    changelog_id: int | None = None

    def position(self, issue_id: str) -> str:
        return history_position(issue_id, [self.time_ms, self.changelog_id or 0, self.event_id])


def history(store: Store, ref: str, limit: int, cursor: str | None) -> Page:
    """A page of an issue's captured events, newest first, from its snapshots: its latest state, a LIST of its
    snapshots per 1000, and `limit` parallel GETs (and one per snapshot whose event time another one shares)."""
    issue_id = resolve(store, ref)
    prefix = history_prefix(issue_id)
    after = _decode_cursor(cursor, prefix) if cursor else None
    found = store.latest(issue_id)
    state = as_latest(found.data) if found else None
    versions = _versions(store, issue_id, state)
    read: dict[str, dict[str, Any]] = {}
    # Ties on time are ordered by changelog id, which only the snapshot holds; so is a tie with the cursor's entry.
    cursor_time = history_position_time(after) if after else None
    by_time = Counter(v.time_ms for v in versions)
    tied = [v for v in versions if v.changelog_id is None and (by_time[v.time_ms] > 1 or v.time_ms == cursor_time)]
    read.update(_read_snapshots(store, issue_id, tied))
    versions = [_with_changelog(v, read.get(v.name)) for v in versions]
    listed = sorted(
        (v for v in versions if after is None or v.position(issue_id) > after), key=lambda v: v.position(issue_id)
    )
    page = listed[:limit]
    read.update(_read_snapshots(store, issue_id, [v for v in page if v.name not in read]))
    shown = [(_with_changelog(v, read[v.name]), read[v.name]) for v in page if v.name in read]
    if not shown and cursor is None and state is None:
        raise JSyncError(404, "issue_not_found", f"No issue {ref} has been captured.")
    fields = ("version", "event", "event_time", "actor", "changes")
    items = [{k: item[k] for k in fields} for item in (_history_item(s, v.name) for v, s in shown)]
    more = len(listed) > limit and bool(shown)
    return Page(items, _encode_cursor(shown[-1][0].position(issue_id)) if more else None)


def _versions(store: Store, issue_id: str, state: LatestState | None) -> list[_Version]:
    """Every snapshot that is a version in the history: not one latest/ left out, the deletion where it ranked it."""
    prefix = snapshot_prefix(issue_id)
    left_out = set(state.get("not_in_history") or []) if state else set()
    deletion = state["capture"]["event_id"] if state and state.get("deleted") else None
    versions = []
    for key in store.all_keys(prefix):
        name = key[len(prefix) :].removesuffix(".json")
        if not VERSION.fullmatch(name):
            continue
        time_ms, event_id = name.split("-", 1)
        if short_event_id(event_id) in left_out:
            continue
        if event_id == deletion and state is not None:
            # Above everything, even when it came late: at latest/'s order, one changelog step above it.
            ranked = Order.of_state(state)
            versions.append(_Version(name, ranked.time_ms, event_id, ranked.changelog_id + 1))
        else:
            versions.append(_Version(name, int(time_ms), event_id))
    return versions


def _with_changelog(version: _Version, snapshot: dict[str, Any] | None) -> _Version:
    if version.changelog_id is not None or snapshot is None:
        return version
    order = snapshot["capture"].get("order") or [0, 0]
    return replace(version, changelog_id=int(order[1]))


def _read_snapshots(store: Store, issue_id: str, versions: list[_Version]) -> dict[str, dict[str, Any]]:
    snapshots = _read_many(store, [version_key(issue_id, v.name) for v in versions])
    return {v.name: s for v, s in zip(versions, snapshots, strict=True) if s is not None}


def _history_item(snapshot: dict[str, Any], version_id: str) -> dict[str, Any]:
    capture = snapshot["capture"]
    return {
        "version": version_id,
        "event": capture["event_type"],
        "event_time": capture["event_time"],
        "actor": capture["actor"],
        "changes": capture["changes"],
        "key": (snapshot.get("issue") or {}).get("key"),
        "source": capture.get("source"),
    }


def version(store: Store, ref: str, version_id: str) -> dict[str, Any]:
    issue_id = resolve(store, ref)
    if not VERSION.fullmatch(version_id):
        raise _bad("invalid_version", f"{version_id[:60]!r} is not a version; take one from the issue's history.")
    found = store.read_json(version_key(issue_id, version_id))
    if found is None:
        raise JSyncError(404, "version_not_found", f"Issue {ref} has no version {version_id}.")
    return found.data


def _read_many(store: Store, keys: list[str]) -> list[dict[str, Any] | None]:
    if not keys:
        return []

    def read(key: str) -> dict[str, Any] | None:
        found = store.read_json(key)
        return found.data if found else None  # gone since the LIST (a move or delete): skip it

    with ThreadPoolExecutor(max_workers=min(_PARALLEL_READS, len(keys))) as pool:
        return list(pool.map(read, keys))


def _encode_cursor(last_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_key}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, prefix: str) -> str:
    """Cursors are opaque to clients; one for another listing, or tampered with, is a 400."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = data["after"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _bad("invalid_cursor", "The cursor is not one this API handed out; start again without it.") from None
    if not isinstance(after, str) or not after.startswith(prefix) or not _CURSOR_NAME.fullmatch(after[len(prefix) :]):
        raise _bad("invalid_cursor", "The cursor belongs to another listing; start again without it.")
    return after
