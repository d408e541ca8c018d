"""The read side: issues, projects, history and versions from S3, each answer in a bounded number of S3 calls."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.errors import JSyncError
from pipeline.keys import ISSUE_REF, PROJECT_KEY
from pipeline.snapshot import canonical_json
from pipeline.store import (
    VERSION,
    Store,
    history_prefix,
    issue_key_index,
    project_count_key,
    project_prefix,
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
    state = found.data
    if state.get("deleted"):
        raise JSyncError(410, "issue_deleted", _deleted_detail(ref, state))
    doc = state["issue"]
    return IssueState(issue_id, doc, '"' + hashlib.sha256(canonical_json(doc)).hexdigest()[:32] + '"')


def _deleted_detail(ref: str, state: dict[str, Any]) -> str:
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
    folders = store.list_folders("index/projects/")
    keys = [folder.removeprefix("index/projects/").rstrip("/") for folder in folders]
    counts = _read_many(store, [project_count_key(k) for k in keys if PROJECT_KEY.fullmatch(k)])
    return [{"key": c["project"], "name": c.get("name"), "issue_count": int(c["issue_count"])} for c in counts if c]


def project_issues(store: Store, project: str, limit: int, cursor: str | None) -> Page:
    """A page of a project's issues in id order: one LIST plus `limit` parallel GETs."""
    prefix = project_prefix(check_project(project)) + "issues/"
    page = _page(store, prefix, limit, cursor)
    fields = ("key", "id", "summary", "status", "updated")
    return Page([{k: item.get(k) for k in fields} for item in page.items], page.next_cursor)


def history(store: Store, ref: str, limit: int, cursor: str | None) -> Page:
    """A page of an issue's captured events, newest first: one LIST plus `limit` parallel GETs."""
    issue_id = resolve(store, ref)
    page = _page(store, history_prefix(issue_id), limit, cursor)
    if not page.items and cursor is None and store.latest(issue_id) is None:
        raise JSyncError(404, "issue_not_found", f"No issue {ref} has been captured.")
    fields = ("version", "event", "event_time", "actor", "changes")
    return Page([{k: item.get(k) for k in fields} for item in page.items], page.next_cursor)


def version(store: Store, ref: str, version_id: str) -> dict[str, Any]:
    issue_id = resolve(store, ref)
    if not VERSION.fullmatch(version_id):
        raise _bad("invalid_version", f"{version_id[:60]!r} is not a version; take one from the issue's history.")
    found = store.read_json(version_key(issue_id, version_id))
    if found is None:
        raise JSyncError(404, "version_not_found", f"Issue {ref} has no version {version_id}.")
    return found.data


def _page(store: Store, prefix: str, limit: int, cursor: str | None) -> Page:
    after = _decode_cursor(cursor, prefix) if cursor else None
    keys, more = store.list_keys(prefix, after, limit)
    items = [item for item in _read_many(store, keys) if item is not None]
    return Page(items, _encode_cursor(keys[-1]) if more and keys else None)


def _read_many(store: Store, keys: list[str]) -> list[dict[str, Any] | None]:
    if not keys:
        return []

    def read(key: str) -> dict[str, Any] | None:
        found = store.read_json(key)
        return found.data if found else None  # removed since the LIST (a move or delete): skip it

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
