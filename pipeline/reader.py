"""The read side: issues, projects, history, versions and diffs from S3.

Each answer takes a bounded number of S3 calls, but for history: one LIST per 1000 versions of the issue, as
its snapshots are its history (one object per captured event, which the writer has to write anyway); and the
export, which reads a whole project by design, a page at a time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import jiratime
from pipeline.attachments import AttachmentView, content_key
from pipeline.attachments import records as attachment_records
from pipeline.attachments import views as attachment_views
from pipeline.errors import JSyncError
from pipeline.fields import name_of, names
from pipeline.ids import ISSUE_ID, ISSUE_REF, PROJECT_KEY, VERSION, Order, canonical_json, stored_json
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
# A filtered listing page reads at most this many of the project's issues, matching or not, then hands back a
# cursor to go on from: a filter that matches little costs pages, never an unbounded request.
FILTER_SCAN = 500
_EXPORT_PAGE = 100  # issues read per LIST while exporting a project
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ATTACHMENT_ID = ISSUE_ID  # numeric, like issue ids


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    latest: LatestState | None = None  # history's: the issue's latest state, read on the way


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
        raise JSyncError(410, "issue_deleted", deleted_detail(ref, state))
    doc = state["issue"]
    if doc is None:  # only a deletion's snapshot can lack its issue, and a deleted issue answered 410 above
        raise JSyncError(404, "issue_not_found", f"No issue {ref} has been captured.")
    return IssueState(issue_id, doc, '"' + hashlib.sha256(canonical_json(doc)).hexdigest()[:32] + '"')


def deleted_detail(ref: str, state: LatestState) -> str:
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


@dataclass(frozen=True)
class IssueFilter:
    """What a listing keeps: each given part must match (they combine with AND)."""

    status: str | None = None  # the status name, case-insensitively
    assignee: str | None = None  # the assignee's accountId (or Server username) exactly, or display name in any case
    updated_since_ms: int | None = None  # `fields.updated` at or after this instant

    @property
    def active(self) -> bool:
        return (self.status, self.assignee, self.updated_since_ms) != (None, None, None)

    def matches(self, doc: dict[str, Any]) -> bool:
        item_fields = doc.get("fields")
        if not isinstance(item_fields, dict):
            item_fields = {}
        if self.status is not None:
            status = _listing_item(doc)["status"]
            if not isinstance(status, str) or status.casefold() != self.status.casefold():
                return False
        if self.assignee is not None and not _assigned_to(item_fields.get("assignee"), self.assignee):
            return False
        if self.updated_since_ms is not None:
            updated = jiratime.epoch_ms(item_fields.get("updated"))
            if updated is None or updated < self.updated_since_ms:
                return False
        return True


def _assigned_to(assignee: Any, wanted: str) -> bool:
    if not isinstance(assignee, dict):
        return False
    if wanted in (assignee.get("accountId"), assignee.get("name")):
        return True
    name = assignee.get("displayName")
    return isinstance(name, str) and name.casefold() == wanted.casefold()


def issue_filter(status: str | None, assignee: str | None, updated_since: str | None) -> IssueFilter:
    """The listing's filters from its query; a time without a zone, or no time at all, is a 400."""
    return IssueFilter(status, assignee, None if updated_since is None else _instant_ms(updated_since))


def _instant_ms(value: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            # A zoneless time would be read in some zone the caller did not choose: a silent hours-wide gap.
            raise _bad("invalid_updated_since", "updated_since needs a time zone, e.g. 2026-11-01T00:00:00Z.")
        return (moment - _EPOCH) // timedelta(milliseconds=1)
    except (ValueError, OverflowError):
        raise _bad(
            "invalid_updated_since", f"updated_since {value[:60]!r} is not an ISO-8601 time like 2026-11-01T00:00:00Z."
        ) from None


def project_issues(
    store: Store, project: str, limit: int, cursor: str | None, where: IssueFilter | None = None
) -> Page:
    """A page of a project's issues in id order: one LIST of its members plus `limit` parallel GETs of their
    latest state. Filtered, it reads on until `limit` match or it has read `FILTER_SCAN` issues, so a page may
    hold fewer than `limit` (even none) and still carry a `next_cursor`."""
    prefix = project_prefix(check_project(project)) + "issues/"
    after = _decode_cursor(cursor, prefix) if cursor else None
    if where is None or not where.active:
        keys, more = store.list_keys(prefix, after, limit)
        docs = [doc for doc in _members(store, project, prefix, keys) if doc is not None]
        return Page([_listing_item(doc) for doc in docs], _encode_cursor(keys[-1]) if more and keys else None)
    found: list[dict[str, Any]] = []
    budget = FILTER_SCAN
    while budget > 0:
        # Read about what the page still needs (at least one parallel batch), never past the budget.
        keys, more = store.list_keys(prefix, after, min(budget, max(limit - len(found), _PARALLEL_READS)))
        for n, (key, doc) in enumerate(zip(keys, _members(store, project, prefix, keys), strict=True)):
            if doc is not None and where.matches(doc):
                found.append(_listing_item(doc))
                if len(found) == limit:
                    rest = more or n + 1 < len(keys)
                    return Page(found, _encode_cursor(key) if rest else None)
        if not keys or not more:
            return Page(found, None)
        budget -= len(keys)
        after = keys[-1]
    return Page(found, _encode_cursor(after) if after else None)


def _members(store: Store, project: str, prefix: str, keys: list[str]) -> list[dict[str, Any] | None]:
    """The latest document of each listed member, in order; None for one deleted or moved away since the LIST."""
    members = [key[len(prefix) :].removesuffix(".json") for key in keys]
    ids = [name for name in members if name.isdigit()]
    states = iter(_read_many(store, [latest_key(str(int(name))) for name in ids]))
    docs: list[dict[str, Any] | None] = []
    for name in members:
        state = next(states) if name.isdigit() else None
        alive = state is not None and not state.get("deleted") and project_of(state.get("issue")) == project
        docs.append(state["issue"] if alive and state is not None else None)
    return docs


def check_project_known(store: Store, project: str) -> None:
    """404 for a project JSync never captured an issue of (one that has lost all its issues is still known)."""
    if store.read_json(project_count_key(check_project(project))) is not None:
        return
    if not store.list_keys(project_prefix(project), None, 1)[0]:
        raise JSyncError(404, "project_not_found", f"No issue of project {project} has been captured.")


def export(store: Store, project: str) -> Iterator[bytes]:
    """Every live issue of the project, its latest document as one line of JSON each (sorted keys), in id order:
    one LIST and up to `_EXPORT_PAGE` parallel GETs at a time, so memory stays flat however big the project."""
    prefix = project_prefix(check_project(project)) + "issues/"
    after: str | None = None
    while True:
        keys, more = store.list_keys(prefix, after, _EXPORT_PAGE)
        for doc in _members(store, project, prefix, keys):
            if doc is not None:
                yield stored_json(doc)
        if not keys or not more:
            return
        after = keys[-1]


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
    keep = ("version", "event", "event_time", "actor", "changes")
    items = [{k: item[k] for k in keep} for item in (_history_item(s, v.name) for v, s in shown)]
    if items:
        known = names(store)
        kept = attachment_records(store, issue_id)
        for item in items:
            item["changes"] = [_named(change, known) for change in item["changes"]]
            # What became of the attachments this version added: stored, or skipped and why (one GET a page).
            item["attachments"] = [_attachment_note(r) for r in kept.values() if r.get("version") == item["version"]]
    more = len(listed) > limit and bool(shown)
    return Page(items, _encode_cursor(shown[-1][0].position(issue_id)) if more else None, state)


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


def _attachment_note(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("id", "filename", "size", "state", "reason")}


def issue_attachments(store: Store, ref: str, copying: bool) -> list[AttachmentView]:
    """Every attachment an issue lists or once listed, with what JSync kept of it. A deleted issue's attachments
    stay readable: keeping them is what a backup is for."""
    return _attachments_of(store, ref, copying)[1]


def _attachments_of(store: Store, ref: str, copying: bool) -> tuple[str, list[AttachmentView]]:
    issue_id = resolve(store, ref)
    found = store.latest(issue_id)
    kept = attachment_records(store, issue_id)
    if found is None and not kept:
        raise JSyncError(404, "issue_not_found", f"No issue {ref} has been captured.")
    state = as_latest(found.data) if found else None
    document = None if state is None or state.get("deleted") else state["issue"]
    return issue_id, list(attachment_views(document, kept, copying))


@dataclass(frozen=True)
class StoredAttachment:
    view: AttachmentView
    key: str


def stored_attachment(store: Store, ref: str, attachment_id: str, copying: bool) -> StoredAttachment:
    """Where one attachment's content is, or a 404 that says why JSync has none."""
    if not ATTACHMENT_ID.fullmatch(attachment_id):
        raise _bad("invalid_attachment_id", f"{attachment_id[:40]!r} is not an attachment id (a number).")
    issue_id, views = _attachments_of(store, ref, copying)
    found = next((v for v in views if v.id == attachment_id), None)
    if found is None:
        raise JSyncError(404, "attachment_not_found", f"Issue {ref} has no attachment {attachment_id}.")
    if found.state != "stored":
        raise JSyncError(404, f"attachment_{found.state}", _not_stored(found))
    return StoredAttachment(found, content_key(issue_id, attachment_id))


def _not_stored(view: AttachmentView) -> str:
    match view.state:
        case "pending":
            return f"Attachment {view.id} is being copied from Jira; try again in a minute."
        case "metadata_only":
            return (
                f"JSync keeps attachment metadata only: it has no Jira credentials to copy {view.id} with "
                "(set them as the README's Attachments section says)."
            )
        case _:
            return f"Attachment {view.id} was not copied: {view.reason or view.state}"


def _named(change: dict[str, Any], known: dict[str, str]) -> dict[str, Any]:
    field = change.get("field")
    return {**change, "name": name_of(field, known) if isinstance(field, str) else str(field)}


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


def diff(store: Store, ref: str, from_version: str, to_version: str) -> dict[str, Any]:
    """The fields that differ between two versions of an issue, by field id, with their JSON values as stored.

    Either order works (`from` is read as the before); the same version twice gives no changes. A version whose
    snapshot holds no document (a deletion captured without the issue) compares as an issue without fields.
    Two GETs of snapshots and one of the field catalogue (none when nothing differs).
    """
    issue_id = resolve(store, ref)
    for version_id in (from_version, to_version):
        if not VERSION.fullmatch(version_id):
            raise _bad("invalid_version", f"{version_id[:60]!r} is not a version; take one from the issue's history.")
    wanted = [from_version] if from_version == to_version else [from_version, to_version]
    snapshots = _read_many(store, [version_key(issue_id, v) for v in wanted])
    for version_id, snapshot in zip(wanted, snapshots, strict=True):
        if snapshot is None:
            raise JSyncError(404, "version_not_found", f"Issue {ref} has no version {version_id}.")
    before, after = (_diffable(s) for s in (snapshots[0], snapshots[-1]))
    changed = sorted(f for f in before.keys() | after.keys() if stored_json(before.get(f)) != stored_json(after.get(f)))
    known = names(store) if changed else {}
    changes = [{"field": f, "name": name_of(f, known), "from": before.get(f), "to": after.get(f)} for f in changed]
    return {"from": from_version, "to": to_version, "changes": changes}


def _diffable(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    """A version's fields by id, and its key (which a move changes); an absent field and a null one are alike."""
    doc = (snapshot or {}).get("issue")
    doc = doc if isinstance(doc, dict) else {}
    values = dict(doc["fields"]) if isinstance(doc.get("fields"), dict) else {}
    if "key" in doc:
        values["key"] = doc["key"]
    return {f: v for f, v in values.items() if v is not None}


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
