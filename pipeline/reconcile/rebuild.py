"""Rebuild the webhooks Jira would have sent for an issue, from its current REST v2 document and its changelog.

Reconcile feeds JSync the changelog entries its webhooks missed. Each must arrive as the delivery Jira would have made
at that moment, so the issue document it carries is the issue as it was right after that entry. Jira keeps no past
states, only the changelog, so we start from the issue as it is now and walk back, undoing each entry's items: the
state before an entry is the state after it with its items undone, the last item first.

What a changelog item cannot tell us stays as it is now (so an old state may show some newer values): list and object
fields other than the few handled below (components, versions, sprints, links, attachments, option-valued custom
fields), derived fields with no item of their own (`statuscategorychangedate`, the aggregate time fields, `workratio`,
`watches`, `votes`), edits and deletions of comments and worklogs (those made later are left out by their
`created`), and text edited outside the changelog. A webhook's
`issue_event_type_name` comes from the workflow, which the changelog does not record either: we give
`issue_moved`, `issue_assigned` or `issue_generic`, never `issue_resolved` or `issue_closed`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.jiratime import canonical, canonicalize, epoch_ms, same_instant
from pipeline.reconcile.jira import history_order
from pipeline.snapshot import COLLECTIONS, TOP_LEVEL_NOISE

# The keys each kind of object has where an issue embeds it; a fetched resource carries more (a user's groups, a
# project's lead and components...) that a webhook's issue never shows.
EMBEDDED_KEYS: dict[str, tuple[str, ...]] = {
    "user": ("self", "accountId", "emailAddress", "avatarUrls", "displayName", "active", "timeZone", "accountType"),
    "status": ("self", "description", "iconUrl", "name", "id", "statusCategory"),
    "priority": ("self", "iconUrl", "name", "id"),
    "project": ("self", "id", "key", "name", "projectTypeKey", "simplified", "avatarUrls"),
    "issuetype": (
        "self",
        "id",
        "description",
        "iconUrl",
        "name",
        "subtask",
        "avatarId",
        "entityId",
        "hierarchyLevel",
    ),
    "resolution": ("self", "id", "description", "name"),
}
# Fields holding one of these objects, each named as its kind.
_OBJECT_FIELDS = frozenset({"status", "priority", "project", "issuetype", "resolution"})
_USER_FIELDS = frozenset({"assignee", "reporter"})
_TEXT_FIELDS = frozenset({"summary", "description", "environment"})
_SECONDS_FIELDS = frozenset({"timeoriginalestimate", "timeestimate", "timespent"})
# What GET /issue adds that a webhook's issue never has: the presentation fields a snapshot drops, and more.
_NOT_IN_WEBHOOKS = (*TOP_LEVEL_NOISE, "changelog", "names", "schema", "versionedRepresentations")


@dataclass(frozen=True)
class RebuiltEvent:
    """One webhook delivery, as Jira would have sent it."""

    key: str  # "created" for the creation event, else the changelog (history) id
    event_name: str  # "jira:issue_created" | "jira:issue_updated"
    timestamp_ms: int  # creation: fields.created; update: the history's `created`
    payload: dict[str, Any]  # {"timestamp", "webhookEvent", "issue_event_type_name", "user", "issue", "changelog"?}


class Lookup:
    """Objects (status, priority, project, issuetype, resolution, user) by id, as embedded in a v2 issue.

    Learnt from issue documents first (`seed`), so only objects no document shows cost a request; answers, misses
    included, are remembered. Everything returned is a copy, trimmed to the embedded shape, with v2 `self` links.
    """

    def __init__(self, fetch: Callable[[str, str], dict[str, Any] | None] | None = None) -> None:
        self._fetch = fetch
        self._known: dict[tuple[str, str], dict[str, Any] | None] = {}

    def seed(self, doc: dict[str, Any]) -> None:
        """Learn every embedded object of a v2 issue document, and every user anywhere in it."""
        fields = doc.get("fields")
        if isinstance(fields, dict):
            for kind in _OBJECT_FIELDS:
                self._learn(kind, fields.get(kind))
        for user in _users_in(doc):
            self._learn("user", user)

    def learn(self, kind: str, obj: Any) -> None:
        """Remember one object (e.g. a changelog author) unless this kind and id is known already."""
        self._learn(kind, obj)

    def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        """The object as an issue would embed it: from what was learnt, else from `fetch`; None if neither has it."""
        if kind not in EMBEDDED_KEYS:
            raise ValueError(f"cannot look up {kind!r}; one of {sorted(EMBEDDED_KEYS)}")
        slot = (kind, str(ident))
        if slot not in self._known:
            fetched = self._fetch(kind, str(ident)) if self._fetch else None
            self._known[slot] = trim(kind, fetched) if isinstance(fetched, dict) else None
        found = self._known[slot]
        return copy.deepcopy(found) if found is not None else None

    def _learn(self, kind: str, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        ident = obj.get("accountId" if kind == "user" else "id")
        if ident is None or ident == "":
            return
        slot = (kind, str(ident))
        # A document's own object beats a fetched miss or a fetched copy.
        if self._known.get(slot) is None:
            self._known[slot] = trim(kind, obj)


def trim(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` cut to the keys an issue embeds for its kind, every `self` pointing at REST v2."""
    keys = EMBEDDED_KEYS[kind]
    trimmed: dict[str, Any] = _v2_selves({k: copy.deepcopy(obj[k]) for k in keys if k in obj})
    return trimmed


def rebuild(current: dict[str, Any], histories: list[dict[str, Any]], lookup: Lookup) -> list[RebuiltEvent]:
    """The creation webhook and one update webhook per changelog entry, oldest first.

    `current` is GET /rest/api/2/issue/{id}; `histories` the issue's changelog entries as changelog/bulkfetch gives
    them. Entries newer than `current`'s `updated` are left out: the issue changed between the two reads, and the
    next run, reading both again, rebuilds them on a document that includes them. REST renders times in the site's
    zone; the rebuilt webhooks, like Jira's, give them in UTC.
    """
    latest = copy.deepcopy(current)
    for name in _NOT_IN_WEBHOOKS:
        latest.pop(name, None)
    canonicalize(latest)  # REST renders times in the site's zone; a webhook, as JSync stores them, in UTC
    fields = latest.setdefault("fields", {})
    created_text = fields.get("created")
    created_ms = _ms(created_text, "the issue's fields.created")
    updated_ms = _ms(fields["updated"], "the issue's fields.updated") if fields.get("updated") else None
    entries = [h for h in histories if updated_ms is None or _ms(h.get("created"), _which(h)) <= updated_ms]
    entries.sort(key=history_order)

    lookup.seed(latest)
    for history in entries:
        lookup.learn("user", history.get("author"))

    # states[0] is the issue at creation, states[i] the issue right after entries[i - 1].
    states = [latest]
    for history in reversed(entries):
        states.insert(0, _undo(states[0], history, lookup))
    states[0]["fields"]["updated"] = created_text
    _as_of(states[0]["fields"], created_ms)
    for state, history in zip(states[1:], entries, strict=True):
        state["fields"]["updated"] = _utc(history.get("created"))
        _as_of(state["fields"], _ms(history.get("created"), _which(history)))

    # The reporter may have changed since: the one at creation stands in when Jira shows no creator.
    first = states[0]["fields"]
    creator = first.get("creator") or first.get("reporter")
    events = [
        RebuiltEvent(
            "created",
            "jira:issue_created",
            created_ms,
            {
                "timestamp": created_ms,
                "webhookEvent": "jira:issue_created",
                "issue_event_type_name": "issue_created",
                "user": trim("user", creator) if isinstance(creator, dict) else None,
                "issue": states[0],
            },
        )
    ]
    for state, history in zip(states[1:], entries, strict=True):
        at = _ms(history.get("created"), _which(history))
        items = copy.deepcopy(list(history.get("items") or []))
        author = history.get("author")
        events.append(
            RebuiltEvent(
                str(history.get("id")),
                "jira:issue_updated",
                at,
                {
                    "timestamp": at,
                    "webhookEvent": "jira:issue_updated",
                    "issue_event_type_name": _type_name(items),
                    "user": trim("user", author) if isinstance(author, dict) else None,
                    "issue": state,
                    "changelog": {"id": str(history.get("id")), "items": items},
                },
            )
        )
    return events


def _as_of(fields: dict[str, Any], at_ms: int) -> None:
    """Comments and worklogs made after `at_ms` did not exist yet. (Edits to older ones cannot be undone: Jira
    keeps no history of them, so an old state shows their latest text.)"""
    for field, listing in COLLECTIONS.values():  # each item with a `created`
        holder = fields.get(field)
        if not isinstance(holder, dict) or not isinstance(holder.get(listing), list):
            continue
        items = holder[listing]
        kept = [i for i in items if not isinstance(i, dict) or _made_by(i, at_ms)]
        if len(kept) == len(items):
            continue
        holder[listing] = kept
        if holder.get("total") == len(items):
            holder["total"] = len(kept)
        if holder.get("maxResults") == len(items):
            holder["maxResults"] = len(kept)


def _made_by(item: dict[str, Any], at_ms: int) -> bool:
    try:
        return _ms(item.get("created"), "a comment's or worklog's created") <= at_ms
    except ValueError:
        return True  # no readable time: keep it rather than lose it


def _undo(after: dict[str, Any], history: dict[str, Any], lookup: Lookup) -> dict[str, Any]:
    """The issue before `history`, given the issue right after it."""
    before = copy.deepcopy(after)
    for item in reversed(list(history.get("items") or [])):
        if isinstance(item, dict):
            _undo_item(before, item, lookup)
    return before


def _undo_item(doc: dict[str, Any], item: dict[str, Any], lookup: Lookup) -> None:
    fields: dict[str, Any] = doc["fields"]
    raw_from, text_from = item.get("from"), item.get("fromString")
    if item.get("field") == "Key" and not item.get("fieldId"):
        _rekey(doc, item)
        return
    name = str(item.get("fieldId") or item.get("field"))
    if name in _TEXT_FIELDS:
        fields[name] = text_from
    elif name == "labels":
        fields[name] = text_from.split() if isinstance(text_from, str) else []
    elif name in _OBJECT_FIELDS:
        if raw_from is None:
            fields[name] = None
        else:
            fields[name] = lookup.get(name, str(raw_from)) or {"id": str(raw_from), "name": text_from}
        if name == "resolution" and raw_from is None and "resolutiondate" in fields:
            # Jira clears the resolution date with the resolution, and records no item for it.
            fields["resolutiondate"] = None
    elif name in _USER_FIELDS:
        account = raw_from or item.get("tmpFromAccountId")
        if account is None:
            fields[name] = None
        else:
            # A user we cannot see is still not "unassigned": keep who the changelog names.
            fields[name] = lookup.get("user", str(account)) or {"accountId": str(account), "displayName": text_from}
    elif name == "duedate":
        fields[name] = raw_from  # `from` is the ISO date; fromString is "2026-01-05 00:00:00.0"
    elif name in _SECONDS_FIELDS:
        # Not a number of seconds: leave the value we have rather than invent one.
        with contextlib.suppress(TypeError, ValueError):
            fields[name] = None if raw_from is None else int(raw_from)
    elif name in fields:
        _undo_other(fields, name, item)


def _undo_other(fields: dict[str, Any], name: str, item: dict[str, Any]) -> None:
    """Any other field: text values can be undone, when the item describes the value we hold.

    Lists and objects (options, versions, sprints, users in custom fields...) cannot be rebuilt from an item's strings,
    so they keep their current value. A string whose item describes something else (Rank holds a LexoRank while its
    item says "Ranked higher") is left alone too, rather than replaced by a label.
    """
    value = fields[name]
    if value is not None and not isinstance(value, str):
        return
    to_raw, to_text = item.get("to"), item.get("toString")
    if value == to_text or (value is None and to_text in (None, "")):
        fields[name] = item.get("fromString")
    elif to_raw is not None and same_instant(value, to_raw):
        # The document's times are UTC now; the item's are as Jira rendered them (a date-time custom field).
        fields[name] = _utc(item.get("from"))


def _rekey(doc: dict[str, Any], item: dict[str, Any]) -> None:
    """Undo a move: the old key, and the old key in every key-based link (watches, votes)."""
    old, new = item.get("fromString"), item.get("toString") or doc.get("key")
    if not isinstance(old, str) or not old:
        return
    if isinstance(new, str) and new and new != old:
        replaced = _replace_key(doc, f"/issue/{new}", f"/issue/{old}")
        doc.clear()
        doc.update(replaced)
    doc["key"] = old


def _replace_key(value: Any, new: str, old: str) -> Any:
    if isinstance(value, dict):
        return {k: _replace_key(v, new, old) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_key(v, new, old) for v in value]
    if isinstance(value, str):
        # `/issue/OPS-1/` or a trailing `/issue/OPS-1`, never `/issue/OPS-10`.
        text = value.replace(new + "/", old + "/")
        return text[: -len(new)] + old if text.endswith(new) else text
    return value


def _type_name(items: list[Any]) -> str:
    names = {item.get("field") for item in items if isinstance(item, dict)}
    if "Key" in names:
        return "issue_moved"
    if names == {"assignee"}:
        return "issue_assigned"
    return "issue_generic"


def _users_in(value: Any) -> list[dict[str, Any]]:
    """Every user object anywhere in a document (assignee, comment authors, ...)."""
    found: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("accountId"), str):
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _v2_selves(value: Any) -> Any:
    """Every `self` link rewritten from REST v3 to v2 (changelog authors come from v3, webhooks speak v2)."""
    if isinstance(value, dict):
        return {
            k: v.replace("/rest/api/3/", "/rest/api/2/") if k == "self" and isinstance(v, str) else _v2_selves(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_v2_selves(v) for v in value]
    return value


def _ms(text: Any, what: str) -> int:
    """Epoch ms of a Jira time; a rebuild cannot place an entry without one, so it refuses."""
    found = epoch_ms(text)
    if found is None:
        raise ValueError(f"{what} is not a Jira time: {text!r}")
    return found


def _utc(value: Any) -> Any:
    """A Jira datetime in its canonical form; anything else as it is."""
    return (canonical(value) or value) if isinstance(value, str) else value


def _which(history: dict[str, Any]) -> str:
    return f"changelog entry {history.get('id')!r}'s created"
