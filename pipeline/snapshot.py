"""A webhook event -> the canonical issue document, its git path and the capture metadata."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from pipeline.ids import Order, is_issue_key, project_of_key
from pipeline.jiratime import canonicalize
from pipeline.payload import WebhookEvent

# Fields that change with who is looking, not with an edit; they never reach git or `latest/`.
_VIEWER_RELATIVE: tuple[tuple[str, ...], ...] = (
    ("fields", "lastViewed"),
    ("fields", "watches", "isWatching"),
    ("fields", "votes", "hasVoted"),
)

TOP_LEVEL_NOISE = ("expand", "renderedFields", "editmeta", "transitions", "operations")
# Lists inside the issue that comment and worklog events update one item at a time: event kind -> (field, its list).
COLLECTIONS = {"comment": ("comment", "comments"), "worklog": ("worklog", "worklogs")}


def order_of(event: WebhookEvent, event_id: str) -> Order:
    return Order(event.timestamp_ms, event.changelog_id, event_id)


def issue_document(issue: dict[str, Any]) -> dict[str, Any]:
    """The issue's own data: the payload's issue minus viewer-relative and presentation fields, times in UTC."""
    doc = copy.deepcopy(issue)
    for name in TOP_LEVEL_NOISE:
        doc.pop(name, None)
    for path in _VIEWER_RELATIVE:
        parent: Any = doc
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    # REST renders times in the site's zone, webhooks in UTC: one form, so one state is always the same bytes.
    canonicalize(doc)
    return doc


def apply_event(previous: dict[str, Any] | None, event: WebhookEvent) -> dict[str, Any] | None:
    """The issue document after `event`, given the stored one; None when the issue is deleted."""
    name = event.event_name
    if name == "jira:issue_deleted":
        return None
    kind = name.split("_", 1)[0]
    if kind in COLLECTIONS:
        # Comment and worklog events carry a cut-down issue: update one item, never drop stored fields.
        # A document stored before times were kept in UTC gets them now, so its next diff shows only the edit.
        base = copy.deepcopy(previous) if previous else _partial_document(event)
        canonicalize(base)
        item = event.data.get(kind)
        if isinstance(item, dict) and item.get("id") is not None:
            _apply_item(base, kind, item, deleted=name.endswith("_deleted"))
        return base
    issue = event.data.get("issue")
    doc = issue_document(issue if isinstance(issue, dict) else {"id": event.issue_id})
    held = (previous or {}).get("fields")
    if isinstance(held, dict):
        # Webhook issues do not always list comments and worklogs; keep what we hold rather than erase it.
        fields = doc.setdefault("fields", {})
        for field in COLLECTIONS:
            if field not in fields and field in held:
                fields[field] = copy.deepcopy(held[field])
                if isinstance(fields[field], dict | list):
                    canonicalize(fields[field])
    return doc


def _partial_document(event: WebhookEvent) -> dict[str, Any]:
    issue = event.data.get("issue")
    if isinstance(issue, dict):
        return issue_document(issue)
    return {"id": event.issue_id, "fields": {}}


def _apply_item(doc: dict[str, Any], kind: str, item: dict[str, Any], *, deleted: bool) -> None:
    field, list_name = COLLECTIONS[kind]
    fields = doc.setdefault("fields", {})
    holder = fields.get(field)
    if not isinstance(holder, dict):
        holder = fields[field] = {list_name: []}
    items = [i for i in holder.get(list_name) or [] if isinstance(i, dict) and str(i.get("id")) != str(item["id"])]
    if not deleted:
        items.append(copy.deepcopy(item))
    canonicalize(items)  # an item's zone is its renderer's; in UTC, sorting `created` as text sorts by time
    items.sort(key=lambda i: (str(i.get("created", "")), str(i.get("id"))))
    holder[list_name] = items
    holder["total"] = len(items)
    if "maxResults" in holder:
        holder["maxResults"] = max(int(holder.get("maxResults") or 0), len(items))


def issue_key(doc: dict[str, Any] | None, event: WebhookEvent) -> str | None:
    key = (doc or {}).get("key") or event.issue_key
    return key if is_issue_key(key) else None


def git_path(key: str | None, issue_id: str) -> str:
    """`issues/<PROJECT>/<KEY>.json`; an issue without a key Jira could produce is filed by id so nothing is lost
    and no path outgrows what a checkout can hold."""
    if key is not None and is_issue_key(key):
        return f"issues/{project_of_key(key)}/{key}.json"
    return f"issues/_unkeyed/{issue_id}.json"


def markdown_path(json_path: str) -> str:
    """The Markdown beside an issue's JSON in git: `issues/OPS/OPS-17.md`."""
    return json_path.removesuffix(".json") + ".md"


def actor(event: WebhookEvent) -> dict[str, str] | None:
    """Who made the change: the comment's or worklog's author for those events, else the webhook user."""
    kind = event.event_name.split("_", 1)[0]
    candidates: list[Any] = []
    if kind in COLLECTIONS and isinstance(event.data.get(kind), dict):
        item = event.data[kind]
        candidates += (
            [item.get("updateAuthor"), item.get("author")]
            if event.event_name.endswith("_updated")
            else [item.get("author")]
        )
    candidates.append(event.data.get("user"))
    for user in candidates:
        if isinstance(user, dict) and (user.get("accountId") or user.get("name") or user.get("displayName")):
            person = {k: str(user[k]) for k in ("accountId", "name", "displayName", "emailAddress") if user.get(k)}
            return person
    return None


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str | None
    after: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "from": self.before, "to": self.after}


def field_changes(
    event: WebhookEvent, previous: dict[str, Any] | None, doc: dict[str, Any] | None
) -> list[FieldChange]:
    """What changed, from the changelog when Jira sent one, else from comparing documents."""
    if doc is None or event.event_name == "jira:issue_created":
        # A deletion or a creation: the headline says it all. (A creation that arrives late must not list its
        # differences from the newer state we hold as if it had made them.)
        return []
    changelog = event.data.get("changelog")
    items = changelog.get("items") if isinstance(changelog, dict) else None
    if isinstance(items, list) and items:
        return [
            FieldChange(
                str(i.get("field")),
                _text(i.get("fromString"), i.get("from")),
                _text(i.get("toString"), i.get("to")),
            )
            for i in items
            if isinstance(i, dict)
        ]
    kind = event.event_name.split("_", 1)[0]
    if kind in COLLECTIONS and isinstance(event.data.get(kind), dict):
        item_id = str(event.data[kind].get("id"))
        verb = event.event_name.rsplit("_", 1)[-1]
        return [FieldChange(kind, None if verb == "created" else item_id, None if verb == "deleted" else item_id)]
    before = (previous or {}).get("fields") or {}
    after = (doc or {}).get("fields") or {}
    if previous is None:
        return []
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return [FieldChange(k, _summary(before.get(k)), _summary(after.get(k))) for k in changed]


def _text(label: Any, raw: Any) -> str | None:
    value = label if label not in (None, "") else raw
    return None if value is None else str(value)


def _summary(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        for k in ("name", "displayName", "value", "key"):
            name = value.get(k)
            if isinstance(name, str):
                return name
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


def headline(event: WebhookEvent, key: str, previous_key: str | None, changes: list[FieldChange]) -> str:
    """The commit subject after `<KEY>: `: what happened, in a few words."""
    name = event.event_name
    if name == "jira:issue_created":
        summary = ((event.data.get("issue") or {}).get("fields") or {}).get("summary")
        return f"created: {summary}" if isinstance(summary, str) and summary else "created"
    if name == "jira:issue_deleted":
        return "deleted"
    if previous_key and previous_key != key:
        return f"moved from {previous_key}"
    kind, _, verb = name.partition("_")
    if kind in COLLECTIONS:
        item = event.data.get(kind)
        item = item if isinstance(item, dict) else {}
        who = (actor(event) or {}).get("displayName")
        text = f"{kind} {item.get('id')} {verb}"
        return f"{text} by {who}" if who else text
    if changes:
        return "updated " + ", ".join(dict.fromkeys(c.field for c in changes))
    return name.removeprefix("jira:").replace("_", " ")
