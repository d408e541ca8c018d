"""A fake Jira Cloud REST server for tests, generated from one seeded model that also yields Jira's webhooks.

`JiraModel(seed, ...)` holds issues with full changelogs; replaying an issue's changelog from its creation gives its
current fields, and `webhooks()` gives, for every entry, the delivery Jira would have sent. `FakeJira(model)` serves
that model over real HTTP on loopback (search/jql, search/approximate-count, issue, changelog, changelog/bulkfetch,
and the status, priority, project, issuetype, resolution and user resources) with Basic auth, injected 429/503s, 404
for deleted and 403 for hidden issues, and a log of every request (`counts()` tallies it by endpoint).

Comments (`add_comment`) bump the issue's `updated` without a changelog entry, as Jira's do. An issue that has any
lists them in its `comment` field, all of them in GET issue; search results list them all too unless a test sets
`search_comment_limit` (whether real search results cut them is not documented, so that is off by default).

Issue `self` links and embedded objects follow the API version asked (`/rest/api/2/` in webhooks, 3 or 2 over REST),
and REST v3 gives the description as ADF where webhooks and v2 give the text, as Jira does. REST answers render
times in the model's `rest_zone` (the site's zone on a real Jira), webhooks always in UTC.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import random
import re
import threading
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SITE = "https://example.atlassian.net"
EMAIL = "reconcile@example.com"
TOKEN = "ATATT3xFfGF0-fake-jira-token-0123456789"
START_MS = 1_767_603_600_000  # 2026-01-05T09:00:00Z: a fixed origin keeps every seed reproducible
CHANGE_KINDS = ("summary", "description", "status", "assignee", "priority", "labels", "move")
_KIND_WEIGHTS = (3, 1, 4, 2, 1, 2, 1)

# accountId, display name, time zone
USERS = (
    ("712020:0f3c-demo", "Ada Example", "Europe/London"),
    ("712020:a1b2-grace", "Grace Example", "America/New_York"),
    ("712020:c3d4-alan", "Alan Example", "Europe/London"),
    ("712020:e5f6-edsger", "Edsger Example", "Europe/Amsterdam"),
)
# id -> name, category id, category key, category colour, category name
STATUSES = {
    "10000": ("To Do", 2, "new", "blue-gray", "To Do"),
    "3": ("In Progress", 4, "indeterminate", "yellow", "In Progress"),
    "10001": ("In Review", 4, "indeterminate", "yellow", "In Progress"),
    "10002": ("Done", 3, "done", "green", "Done"),
}
PRIORITIES = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}
PROJECT_NAMES = {"OPS": "Operations", "PLAT": "Platform"}
# id -> name, description, avatar id
ISSUE_TYPES = {"10001": ("Task", "A small, distinct piece of work.", 10318)}
# id -> name, description; no model issue is resolved, but Jira serves them all the same
RESOLUTIONS = {
    "10000": ("Done", "Work has been completed on this issue."),
    "10001": ("Won't Do", "This issue won't be actioned."),
    "10002": ("Duplicate", "The problem is a duplicate of an existing issue."),
}
_VERBS = ("Rotate", "Upgrade", "Document", "Fix", "Migrate", "Audit", "Retire", "Tune", "Replace", "Review")
_NOUNS = ("certificates", "the load balancer", "backups", "DNS records", "the CI cache", "alerts", "the VPN", "quotas")
_LABELS = ("security", "tls", "infra", "oncall", "debt", "customer", "perf")
_AVATAR = "https://secure.gravatar.com/avatar/{}?d=identicon"

_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
_UNBOUNDED = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
_FORBIDDEN = "You do not have the permission to see the specified issue."
_RESOURCE_PATH = r"/rest/api/([23])/(status|priority|project|issuetype|resolution)/([^/]+)"
_GONE = "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API."

# What GET /rest/api/3/field answers for the fields this site renders (Jira Cloud's names and schemas), in the
# order Jira lists them: not sorted. Custom fields are named, so names people read can be checked against ids.
_FIELD_DEFINITIONS = [
    ("summary", "Summary", {"type": "string", "system": "summary"}),
    ("status", "Status", {"type": "status", "system": "status"}),
    ("issuetype", "Issue Type", {"type": "issuetype", "system": "issuetype"}),
    ("assignee", "Assignee", {"type": "user", "system": "assignee"}),
    ("reporter", "Reporter", {"type": "user", "system": "reporter"}),
    ("priority", "Priority", {"type": "priority", "system": "priority"}),
    ("labels", "Labels", {"type": "array", "items": "string", "system": "labels"}),
    ("description", "Description", {"type": "string", "system": "description"}),
    ("project", "Project", {"type": "project", "system": "project"}),
    (
        "customfield_10016",
        "Story point estimate",
        {"type": "number", "custom": "com.pyxis.greenhopper.jira:jsw-story-points", "customId": 10016},
    ),
    (
        "customfield_10020",
        "Sprint",
        {"type": "array", "items": "json", "custom": "com.pyxis.greenhopper.jira:gh-sprint", "customId": 10020},
    ),
]


def iso(ms: int, zone: tzinfo = UTC) -> str:
    """Jira's timestamp format, in `zone`: 2026-01-05T09:00:00.000+0000, or 2026-01-05T04:00:00.000-0500."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC).astimezone(zone)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}" + moment.strftime("%z")


# --- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelHistory:
    """One changelog entry: who, when, and the field items."""

    id: str
    author: str  # accountId
    created_ms: int
    items: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class ModelComment:
    """One comment: no changelog entry records it; it moves the issue's `updated`."""

    id: str
    author: str  # accountId
    created_ms: int
    body: str


@dataclass
class ModelIssue:
    """An issue and everything it ever was: `states[0]` at creation, `states[i]` right after `histories[i-1]`."""

    id: str
    created_ms: int
    creator: str
    states: list[dict[str, Any]]
    histories: list[ModelHistory] = field(default_factory=list)
    old_keys: list[str] = field(default_factory=list)
    deleted_ms: int | None = None
    deleted_by: str | None = None
    hidden: bool = False
    comments: list[ModelComment] = field(default_factory=list)
    touched_ms: int = 0  # the last edit no changelog entry records (a comment)
    attachments: list[dict[str, Any]] = field(default_factory=list)  # metadata as Jira lists it; contents: FakeJira

    @property
    def state(self) -> dict[str, Any]:
        return self.states[-1]

    @property
    def key(self) -> str:
        return str(self.state["key"])

    @property
    def project(self) -> str:
        return str(self.state["project"])

    @property
    def updated_ms(self) -> int:
        return max(int(self.state["updated_ms"]), self.touched_ms)

    @property
    def visible(self) -> bool:
        return self.deleted_ms is None and not self.hidden


@dataclass(frozen=True)
class ModelWebhook:
    """One webhook delivery Jira would have sent; `identifier` is stable per entry across runs of one seed."""

    issue_id: str
    identifier: str
    event_name: str
    timestamp_ms: int
    history_id: str | None
    payload: dict[str, Any]

    @property
    def body(self) -> bytes:
        return json.dumps(self.payload).encode()

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Atlassian Webhook HTTP Client",
            "X-Atlassian-Webhook-Identifier": self.identifier,
            "X-Atlassian-Webhook-Flow": "Primary",
        }


class JiraModel:
    """A seeded Jira site: N issues over some projects, each with up to `max_changes` changelog entries."""

    def __init__(
        self,
        seed: int,
        projects: tuple[str, ...] = ("OPS", "PLAT"),
        issues: int = 20,
        max_changes: int = 6,
        site: str = SITE,
        rest_zone: tzinfo = UTC,
    ) -> None:
        self.seed = seed
        self.projects = tuple(projects)
        self.site = site
        # Jira's REST answers render times in the site's (or account's) zone; its webhooks always in UTC.
        self.rest_zone = rest_zone
        self.lock = threading.RLock()  # the server thread reads while a test adds changes
        self.issues: dict[str, ModelIssue] = {}
        self.now_ms = START_MS
        self._rng = random.Random(seed)
        self._next_number = dict.fromkeys(self.projects, 1)
        self._next_history = 30000
        self._next_comment = 50000
        self._generate(issues, max_changes)

    # --- building history ---------------------------------------------------------------------------

    def _generate(self, count: int, max_changes: int) -> None:
        rng = self._rng
        events: list[tuple[int, int, int]] = []  # (time, 0 create / 1 change, issue index)
        created = START_MS
        for index in range(count):
            created += rng.randint(60_000, 3_600_000) + rng.randint(0, 999)
            events.append((created, 0, index))
            at = created
            for _ in range(rng.randint(0, max_changes)):
                at += rng.randint(60_000, 2 * 86_400_000) + rng.randint(0, 999)
                events.append((at, 1, index))
        # One global timeline, so history ids and moved issues' new keys are handed out in time order, as Jira does.
        for at, kind, index in sorted(events):
            if kind == 0:
                self._create(rng.choice(self.projects), at, issue_id=str(10000 + index))
            else:
                self._change(self.issues[str(10000 + index)], self._pick_kind(), at)
            self.now_ms = max(self.now_ms, at)

    def _pick_kind(self) -> str:
        # A move needs somewhere to go.
        count = len(CHANGE_KINDS) if len(self.projects) > 1 else len(CHANGE_KINDS) - 1
        return self._rng.choices(CHANGE_KINDS[:count], _KIND_WEIGHTS[:count])[0]

    def _create(self, project: str, at: int, issue_id: str) -> ModelIssue:
        rng = self._rng
        creator = rng.choice(USERS)[0]
        state = {
            "key": self._allocate_key(project),
            "project": project,
            "summary": self._summary(),
            "description": rng.choice((None, f"{self._summary()}. See the runbook.")),
            "status": "10000",
            "assignee": rng.choice((None, *(u[0] for u in USERS))),
            "priority": rng.choice(tuple(PRIORITIES)),
            "labels": sorted(rng.sample(_LABELS, rng.randint(0, 2))),
            "updated_ms": at,
        }
        issue = ModelIssue(id=issue_id, created_ms=at, creator=creator, states=[state])
        self.issues[issue_id] = issue
        return issue

    def _allocate_key(self, project: str) -> str:
        number = self._next_number.setdefault(project, 1)
        self._next_number[project] = number + 1
        return f"{project}-{number}"

    def _summary(self) -> str:
        return f"{self._rng.choice(_VERBS)} {self._rng.choice(_NOUNS)}"

    def _change(self, issue: ModelIssue, kind: str, at: int) -> ModelHistory:
        rng = self._rng
        before = issue.state
        after = dict(before, updated_ms=at)
        items: list[dict[str, Any]] = []
        if kind in ("summary", "description"):
            while after[kind] == before[kind]:
                after[kind] = self._summary() + ("" if kind == "summary" else f" (rev {rng.randint(2, 99)})")
            items.append(_item(kind, None, before[kind], None, after[kind]))
        elif kind == "status":
            after["status"] = rng.choice([s for s in STATUSES if s != before["status"]])
            old, new = before["status"], after["status"]
            items.append(_item("status", old, STATUSES[old][0], new, STATUSES[new][0]))
        elif kind == "assignee":
            after["assignee"] = rng.choice([u for u in (None, *(u[0] for u in USERS)) if u != before["assignee"]])
            item = _item("assignee", before["assignee"], _name(before["assignee"]), after["assignee"], None)
            item["toString"] = _name(after["assignee"])
            item["tmpFromAccountId"], item["tmpToAccountId"] = before["assignee"], after["assignee"]
            items.append(item)
        elif kind == "priority":
            after["priority"] = rng.choice([p for p in PRIORITIES if p != before["priority"]])
            old, new = before["priority"], after["priority"]
            items.append(_item("priority", old, PRIORITIES[old], new, PRIORITIES[new]))
        elif kind == "labels":
            labels = set(before["labels"])
            if labels and (len(labels) >= 3 or rng.random() < 0.4):
                labels.discard(rng.choice(sorted(labels)))
            else:
                labels.add(rng.choice([label for label in _LABELS if label not in labels]))
            after["labels"] = sorted(labels)
            items.append(_item("labels", None, " ".join(before["labels"]), None, " ".join(after["labels"])))
        elif kind == "move":
            target = rng.choice([p for p in self.projects if p != before["project"]])
            after["project"], after["key"] = target, self._allocate_key(target)
            old_id, new_id = self._project_id(before["project"]), self._project_id(target)
            items.append(_item("project", old_id, self._project_name(before["project"]), new_id, None))
            items[-1]["toString"] = self._project_name(target)
            # Jira's Key item carries no ids and no fieldId.
            items.append({"field": "Key", "fieldtype": "jira", "from": None, "fromString": before["key"]})
            items[-1].update({"to": None, "toString": after["key"]})
            issue.old_keys.append(before["key"])
        else:
            raise ValueError(f"unknown change kind {kind!r}; one of {CHANGE_KINDS}")
        history = ModelHistory(str(self._next_history), rng.choice(USERS)[0], at, tuple(items))
        self._next_history += 1
        issue.histories.append(history)
        issue.states.append(after)
        return history

    # --- changing the site after start ---------------------------------------------------------------

    def _next_time(self, at_ms: int | None) -> int:
        at = at_ms if at_ms is not None else self.now_ms + self._rng.randint(60_000, 3_600_000)
        self.now_ms = max(self.now_ms, at)
        return at

    def add_change(
        self, issue_id: str | None = None, kind: str | None = None, at_ms: int | None = None
    ) -> ModelWebhook:
        """One more change (random issue and kind unless given); returns the webhook Jira sends for it."""
        with self.lock:
            issue = (
                self.issues[issue_id]
                if issue_id
                else self._rng.choice([i for i in self.issues.values() if i.deleted_ms is None])
            )
            if issue.deleted_ms is not None:
                raise ValueError(f"issue {issue.id} is deleted")
            at = max(self._next_time(at_ms), issue.updated_ms + 1)
            self._change(issue, kind or self._pick_kind(), at)
            return self._webhook(issue, len(issue.histories))

    def add_comment(
        self, issue_id: str, body: str | None = None, author: str | None = None, at_ms: int | None = None
    ) -> dict[str, Any]:
        """A comment on the issue (its `updated` moves, no changelog entry); returns it as REST v2 shows it.

        `at_ms` may lie before the issue's last change (a comment between two entries); by default it is the newest.
        """
        with self.lock:
            issue = self.issues[issue_id]
            if issue.deleted_ms is not None:
                raise ValueError(f"issue {issue.id} is deleted")
            at = self._next_time(at_ms) if at_ms is not None else max(self._next_time(None), issue.updated_ms + 1)
            text = body if body is not None else f"{self._summary()}: done on *staging*."
            comment = ModelComment(str(self._next_comment), author or self._rng.choice(USERS)[0], at, text)
            self._next_comment += 1
            issue.comments.append(comment)
            issue.comments.sort(key=lambda c: (c.created_ms, int(c.id)))
            issue.touched_ms = max(issue.touched_ms, at)
            return self.render_comment(issue, comment, 2)

    def add_issue(self, project: str | None = None, at_ms: int | None = None) -> ModelWebhook:
        """A new issue; returns its `jira:issue_created` webhook."""
        with self.lock:
            issue_id = str(max((int(i) for i in self.issues), default=9999) + 1)
            issue = self._create(project or self._rng.choice(self.projects), self._next_time(at_ms), issue_id)
            return self._webhook(issue, 0)

    def delete(self, issue_id: str, at_ms: int | None = None) -> ModelWebhook:
        """Delete the issue (REST answers 404 from now on); returns its `jira:issue_deleted` webhook."""
        with self.lock:
            issue = self.issues[issue_id]
            issue.deleted_ms = max(self._next_time(at_ms), issue.updated_ms + 1)
            issue.deleted_by = self._rng.choice(USERS)[0]
            return self._deleted_webhook(issue)

    def hide(self, issue_id: str, hidden: bool = True) -> None:
        """Take Browse permission away from our account for this issue (REST answers 403); no webhook says so."""
        with self.lock:
            self.issues[issue_id].hidden = hidden

    # --- reading the model ---------------------------------------------------------------------------

    def find(self, id_or_key: str) -> ModelIssue | None:
        """By id, current key or any key it had before a move (Jira redirects old keys)."""
        with self.lock:
            if id_or_key in self.issues:
                return self.issues[id_or_key]
            wanted = id_or_key.upper()
            for issue in self.issues.values():
                if issue.key == wanted or wanted in issue.old_keys:
                    return issue
            return None

    def visible_issues(self, project: str | None = None) -> list[ModelIssue]:
        with self.lock:
            return [i for i in self.issues.values() if i.visible and (project is None or i.project == project)]

    def issue_json(
        self, issue_id: str, *, api: int = 2, fields: list[str] | None = None, index: int | None = None
    ) -> dict[str, Any]:
        """The issue as REST shows it (times in `rest_zone`), now or right after entry `index` (0 = creation)."""
        with self.lock:
            issue = self.issues[issue_id]
            state = issue.states[-1 if index is None else index]
            return _select(self.render_issue(issue, state, api, current=index is None), fields)

    def changelog(self, issue_id: str, api: int = 3) -> list[dict[str, Any]]:
        """The issue's REST changelog, oldest first."""
        with self.lock:
            return [self.render_history(h, api) for h in self.issues[issue_id].histories]

    def webhooks(self, issue_id: str | None = None) -> list[ModelWebhook]:
        """Every delivery Jira sent, in the order things happened: creation, each changelog entry, deletion."""
        with self.lock:
            chosen = [self.issues[issue_id]] if issue_id else list(self.issues.values())
            found: list[ModelWebhook] = []
            for issue in chosen:
                found += [self._webhook(issue, index) for index in range(len(issue.states))]
                if issue.deleted_ms is not None:
                    found.append(self._deleted_webhook(issue))
            return sorted(found, key=lambda w: (w.timestamp_ms, int(w.history_id or 0), int(w.issue_id)))

    # --- rendering -----------------------------------------------------------------------------------

    def _identifier(self, issue: ModelIssue, entry: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.site}/fake-jira/{self.seed}/{issue.id}/{entry}"))

    def _webhook(self, issue: ModelIssue, index: int) -> ModelWebhook:
        state = issue.states[index]
        payload: dict[str, Any] = {"timestamp": state["updated_ms"]}
        if index == 0:
            payload.update(webhookEvent="jira:issue_created", issue_event_type_name="issue_created")
            author, history_id, entry = issue.creator, None, "created"
        else:
            history = issue.histories[index - 1]
            fields = {item["field"] for item in history.items}
            type_name = (
                "issue_moved" if "Key" in fields else "issue_assigned" if fields == {"assignee"} else "issue_generic"
            )
            payload.update(webhookEvent="jira:issue_updated", issue_event_type_name=type_name)
            author, history_id, entry = history.author, history.id, history.id
        payload["user"] = self._user(author, 2)
        payload["issue"] = self.render_issue(issue, state, 2, webhook=True)
        if history_id is not None:
            payload["changelog"] = {"id": history_id, "items": copy.deepcopy(list(issue.histories[index - 1].items))}
        return ModelWebhook(
            issue.id, self._identifier(issue, entry), payload["webhookEvent"], payload["timestamp"], history_id, payload
        )

    def _deleted_webhook(self, issue: ModelIssue) -> ModelWebhook:
        assert issue.deleted_ms is not None and issue.deleted_by is not None
        payload = {
            "timestamp": issue.deleted_ms,
            "webhookEvent": "jira:issue_deleted",
            "user": self._user(issue.deleted_by, 2),
            # The issue as it was before deletion.
            "issue": self.render_issue(issue, issue.state, 2, webhook=True, current=True),
        }
        identifier = self._identifier(issue, "deleted")
        return ModelWebhook(issue.id, identifier, "jira:issue_deleted", issue.deleted_ms, None, payload)

    def _project_id(self, key: str) -> str:
        return str(10000 + self.projects.index(key))

    def _project_name(self, key: str) -> str:
        return PROJECT_NAMES.get(key, key.title())

    def _user(self, account_id: str | None, api: int) -> dict[str, Any] | None:
        return None if account_id is None else self.render_user(account_id, api)

    # One helper per embedded object, shared by render_issue and the fake's GET /<kind>/<id>, so what a lookup
    # returns is exactly what issues embed (plus the keys only the full resource has).

    def render_user(self, account_id: str, api: int) -> dict[str, Any]:
        _, name, zone = next(u for u in USERS if u[0] == account_id)
        avatar = _AVATAR.format(hashlib.md5(account_id.encode()).hexdigest())
        return {
            "self": f"{self.site}/rest/api/{api}/user?accountId={account_id}",
            "accountId": account_id,
            "avatarUrls": {size: avatar for size in ("48x48", "24x24", "16x16", "32x32")},
            "displayName": name,
            "active": True,
            "timeZone": zone,
            "accountType": "atlassian",
        }

    def render_status(self, status_id: str, api: int) -> dict[str, Any]:
        site = self.site
        name, category_id, category_key, colour, category_name = STATUSES[status_id]
        return {
            "self": f"{site}/rest/api/{api}/status/{status_id}",
            "description": "",
            "iconUrl": f"{site}/images/icons/statuses/generic.png",
            "name": name,
            "id": status_id,
            "statusCategory": {
                "self": f"{site}/rest/api/{api}/statuscategory/{category_id}",
                "id": category_id,
                "key": category_key,
                "colorName": colour,
                "name": category_name,
            },
        }

    def render_priority(self, priority_id: str, api: int) -> dict[str, Any]:
        return {
            "self": f"{self.site}/rest/api/{api}/priority/{priority_id}",
            "iconUrl": f"{self.site}/images/icons/priorities/{PRIORITIES[priority_id].lower()}.svg",
            "name": PRIORITIES[priority_id],
            "id": priority_id,
        }

    def render_project(self, key: str, api: int) -> dict[str, Any]:
        project_id = self._project_id(key)
        # Jira's avatar links say /rest/api/2/ whichever version was asked.
        avatar = f"{self.site}/rest/api/2/universal_avatar/view/type/project/avatar/{10411 + self.projects.index(key)}"
        return {
            "self": f"{self.site}/rest/api/{api}/project/{project_id}",
            "id": project_id,
            "key": key,
            "name": self._project_name(key),
            "projectTypeKey": "software",
            "simplified": False,
            "avatarUrls": {
                "48x48": avatar,
                "24x24": avatar + "?size=small",
                "16x16": avatar + "?size=xsmall",
                "32x32": avatar + "?size=medium",
            },
        }

    def render_issuetype(self, type_id: str, api: int) -> dict[str, Any]:
        name, description, avatar_id = ISSUE_TYPES[type_id]
        return {
            "self": f"{self.site}/rest/api/{api}/issuetype/{type_id}",
            "id": type_id,
            "description": description,
            "iconUrl": f"{self.site}/rest/api/2/universal_avatar/view/type/issuetype/avatar/{avatar_id}?size=medium",
            "name": name,
            "subtask": False,
            "avatarId": avatar_id,
            "hierarchyLevel": 0,
        }

    def render_resolution(self, resolution_id: str, api: int) -> dict[str, Any]:
        name, description = RESOLUTIONS[resolution_id]
        return {
            "self": f"{self.site}/rest/api/{api}/resolution/{resolution_id}",
            "id": resolution_id,
            "description": description,
            "name": name,
        }

    def resource(self, kind: str, ident: str, api: int) -> dict[str, Any] | None:
        """GET /rest/api/<api>/<kind>/<id> (user: by accountId) as Jira answers it: the embedded object plus the
        keys only the full resource carries; None when there is no such thing."""
        with self.lock:
            if kind == "user":
                if not any(u[0] == ident for u in USERS):
                    return None
                user = self.render_user(ident, api)
                return {
                    **user,
                    "locale": "en_US" if str(user["timeZone"]).startswith("America/") else "en_GB",
                    "groups": {"size": 2, "items": []},
                    "applicationRoles": {"size": 1, "items": []},
                    "expand": "groups,applicationRoles",
                }
            if kind == "status" and ident in STATUSES:
                return {**self.render_status(ident, api), "untranslatedName": STATUSES[ident][0]}
            if kind == "priority" and ident in PRIORITIES:
                return {**self.render_priority(ident, api), "statusColor": "#2684ff", "description": ""}
            if kind == "issuetype" and ident in ISSUE_TYPES:
                return {**self.render_issuetype(ident, api), "untranslatedName": ISSUE_TYPES[ident][0]}
            if kind == "resolution" and ident in RESOLUTIONS:
                return self.render_resolution(ident, api)
            if kind == "project":
                # By id or key, as Jira allows.
                key = next((p for p in self.projects if ident in (p, self._project_id(p))), None)
                if key is None:
                    return None
                lead = self.render_user(USERS[self.projects.index(key) % len(USERS)][0], api)
                return {
                    "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
                    **self.render_project(key, api),
                    "description": f"Work of the {self._project_name(key)} team.",
                    "lead": lead,
                    "components": [],
                    "issueTypes": [self.render_issuetype(t, api) for t in ISSUE_TYPES],
                    "assigneeType": "UNASSIGNED",
                    "versions": [],
                    "roles": {},
                    "style": "classic",
                    "isPrivate": False,
                    "properties": {},
                }
            return None

    def render_history(self, history: ModelHistory, api: int) -> dict[str, Any]:
        return {
            "id": history.id,
            "author": self._user(history.author, api),
            "created": iso(history.created_ms, self.rest_zone),  # only REST shows a changelog entry's time
            "items": copy.deepcopy(list(history.items)),
        }

    def render_comment(self, issue: ModelIssue, comment: ModelComment, api: int, zone: tzinfo = UTC) -> dict[str, Any]:
        body: Any = comment.body
        if api >= 3:
            body = {
                "type": "doc",
                "version": 1,
                "content": [{"type": "paragraph", "content": [{"type": "text", "text": body}]}],
            }
        author = self.render_user(comment.author, api)
        return {
            "self": f"{self.site}/rest/api/{api}/issue/{issue.id}/comment/{comment.id}",
            "id": comment.id,
            "author": author,
            "body": body,
            "updateAuthor": author,
            "created": iso(comment.created_ms, zone),
            "updated": iso(comment.created_ms, zone),
            "jsdPublic": True,
        }

    def render_issue(
        self, issue: ModelIssue, state: dict[str, Any], api: int, webhook: bool = False, current: bool = False
    ) -> dict[str, Any]:
        """The issue in `state`; `current`: as it is now, with edits no changelog entry records (comments)."""
        site, key = self.site, state["key"]
        zone = UTC if webhook else self.rest_zone
        updated_ms = issue.updated_ms if current else int(state["updated_ms"])
        description = state["description"]
        if api >= 3 and description is not None:
            description = {
                "type": "doc",
                "version": 1,
                "content": [{"type": "paragraph", "content": [{"type": "text", "text": description}]}],
            }
        fields: dict[str, Any] = {
            "issuetype": self.render_issuetype("10001", api),
            "project": self.render_project(state["project"], api),
            "summary": state["summary"],
            "description": description,
            "status": self.render_status(state["status"], api),
            "priority": self.render_priority(state["priority"], api),
            "labels": list(state["labels"]),
            "assignee": self._user(state["assignee"], api),
            "reporter": self._user(issue.creator, api),
            "creator": self._user(issue.creator, api),
            "created": iso(issue.created_ms, zone),
            "updated": iso(updated_ms, zone),
            "resolution": None,
            "resolutiondate": None,
            "duedate": None,
            "environment": None,
            "security": None,
            "timespent": None,
            "timeestimate": None,
            "timetracking": {},
            "workratio": -1,
            "fixVersions": [],
            "versions": [],
            "components": [],
            "issuelinks": [],
            "subtasks": [],
            "attachment": copy.deepcopy(issue.attachments),
            "lastViewed": None,
            "watches": {"self": f"{site}/rest/api/{api}/issue/{key}/watchers", "watchCount": 1, "isWatching": False},
            "votes": {"self": f"{site}/rest/api/{api}/issue/{key}/votes", "votes": 0, "hasVoted": False},
            "progress": {"progress": 0, "total": 0},
            "aggregateprogress": {"progress": 0, "total": 0},
        }
        if issue.comments:  # only then, so issues without comments render as they always did
            shown = [self.render_comment(issue, c, api, zone) for c in issue.comments if c.created_ms <= updated_ms]
            fields["comment"] = {
                "comments": shown,
                "self": f"{site}/rest/api/{api}/issue/{issue.id}/comment",
                "maxResults": len(shown),
                "total": len(shown),
                "startAt": 0,
            }
        document = {"id": issue.id, "self": f"{site}/rest/api/{api}/issue/{issue.id}", "key": key, "fields": fields}
        return document if webhook else {"expand": _EXPAND, **document}


def _item(
    field_id: str, from_: str | None, from_string: str | None, to: str | None, to_string: str | None
) -> dict[str, Any]:
    return {
        "field": field_id,
        "fieldtype": "jira",
        "fieldId": field_id,
        "from": from_,
        "fromString": from_string,
        "to": to,
        "toString": to_string,
    }


def _name(account_id: str | None) -> str | None:
    return next((u[1] for u in USERS if u[0] == account_id), None)


def _select(issue: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """What Jira returns for a `fields` list: `*all`/`*navigable`, names, `-name` to drop; `id` alone means none."""
    if fields is None:
        return issue
    wanted = {f.strip() for f in fields if f.strip()}
    named = {f for f in wanted if not f.startswith(("-", "*")) and f not in ("id", "key")}
    if not named and not wanted & {"*all", "*navigable"}:
        return {"id": issue["id"], "key": issue["key"]} if "key" in wanted else {"id": issue["id"]}
    chosen = dict(issue["fields"]) if wanted & {"*all", "*navigable"} else {}
    chosen.update({name: issue["fields"][name] for name in named if name in issue["fields"]})
    for name in wanted:
        if name.startswith("-"):
            chosen.pop(name[1:], None)
    return {**{k: v for k, v in issue.items() if k != "fields"}, "fields": chosen}


# --- JQL, the small part the fake understands -----------------------------------------------------


class JqlError(ValueError):
    """A query the fake (or Jira) refuses with 400."""


@dataclass(frozen=True)
class Query:
    projects: tuple[str, ...]
    updated: tuple[tuple[str, int], ...]
    order: tuple[tuple[str, bool], ...]  # (field, descending)

    def matches(self, issue: ModelIssue) -> bool:
        if any(issue.project != p for p in self.projects):
            return False
        compare = {">=": int.__ge__, ">": int.__gt__, "<=": int.__le__, "<": int.__lt__, "=": int.__eq__}
        return all(compare[op](issue.updated_ms, bound) for op, bound in self.updated)

    def sort(self, issues: list[ModelIssue]) -> list[ModelIssue]:
        keys = {
            "id": lambda i: int(i.id),
            "updated": lambda i: i.updated_ms,
            "created": lambda i: i.created_ms,
            "key": lambda i: (i.project, int(i.key.rsplit("-", 1)[1])),
        }
        ordered = sorted(issues, key=keys["id"])
        for name, descending in reversed(self.order):  # stable sorts, last key first
            ordered.sort(key=keys[name], reverse=descending)
        return ordered


_CLAUSE_PROJECT = re.compile(r'project\s*=\s*"?([A-Za-z][A-Za-z0-9_]*)"?', re.IGNORECASE)
_CLAUSE_UPDATED = re.compile(r"updated\s*(>=|<=|>|<|=)\s*(-?\d+)", re.IGNORECASE)
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def parse_jql(jql: str) -> Query:
    """`project = KEY [AND updated >= <epoch ms>] [ORDER BY updated|id|key|created [ASC|DESC], ...]`."""
    found = _ORDER_BY.search(jql)
    where, order_text = (jql[: found.start()], jql[found.end() :]) if found else (jql, "")
    where = where.strip()
    if not where:
        raise JqlError(_UNBOUNDED)
    projects: list[str] = []
    updated: list[tuple[str, int]] = []
    for clause in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE):
        clause = clause.strip()
        if match := _CLAUSE_PROJECT.fullmatch(clause):
            projects.append(match.group(1).upper())
        elif match := _CLAUSE_UPDATED.fullmatch(clause):
            updated.append((match.group(1), int(match.group(2))))
        elif clause.lower().startswith("updated"):
            # A quoted date is read in the caller's zone at minute precision; the fake insists on epoch ms.
            raise JqlError(f"Error in the JQL Query: the fake reads 'updated' only as epoch ms, not {clause!r}.")
        else:
            raise JqlError(f"Error in the JQL Query: the fake does not understand {clause!r}.")
    order: list[tuple[str, bool]] = []
    for part in filter(None, (p.strip() for p in order_text.split(","))):
        match = re.fullmatch(r"(updated|id|key|created)(?:\s+(asc|desc))?", part, re.IGNORECASE)
        if not match:
            raise JqlError(f"Error in the JQL Query: the fake cannot order by {part!r}.")
        order.append((match.group(1).lower(), (match.group(2) or "asc").lower() == "desc"))
    return Query(tuple(projects), tuple(updated), tuple(order))


# --- the server -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedRequest:
    """One request the fake answered. Credentials are never kept: only whether they were right."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    authorized: bool


@dataclass
class Fault:
    status: int
    retry_after: str | None
    path: str | None


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _errors(*messages: str) -> dict[str, Any]:
    return {"errorMessages": list(messages), "errors": {}}


class FakeJira:
    """Serves a JiraModel as Jira Cloud's REST API on 127.0.0.1 (random port), in a thread, as a context manager."""

    def __init__(self, model: JiraModel, *, email: str = EMAIL, token: str = TOKEN) -> None:
        self.model = model
        self.field_names: dict[str, str] = {}  # a test renames a field here, as an admin would in Jira
        # Attachment contents by id, served by GET /rest/api/3/attachment/content/{id} (binary, not JSON).
        self.attachments: dict[str, bytes] = {}
        self._expected = "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()
        self.requests: list[LoggedRequest] = []
        # Jira may always return fewer items than asked; tests lower these to force paging.
        self.page_limits = {
            "search_ids": 5000,
            "search_fields": 100,
            "changelog": 100,
            "bulk_changelog": 1000,
            "expand_changelog": 20,
        }
        # Comments a search result lists at most (the rest only counted in `total`); None lists them all.
        self.search_comment_limit: int | None = None
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> FakeJira:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean; `requests` is the log

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def base_url(self) -> str:
        assert self._server, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- test controls --------------------------------------------------------------------------------

    def inject(
        self, status: int = 429, times: int = 1, retry_after: float | str | None = 1, path: str | None = None
    ) -> None:
        """Answer the next `times` requests (under `path`, if given) with `status`, and Retry-After unless None."""
        with self._lock:
            for _ in range(times):
                self._faults.append(Fault(status, None if retry_after is None else f"{retry_after}", path))

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    def counts(self, since: int = 0) -> Counter[str]:
        """Requests from the `since`-th on, by endpoint: `GET /rest/api/2/issue/{id}`, `POST /rest/api/2/search/jql`."""
        return Counter(endpoint(r.method, r.path) for r in self.requests[since:])

    # --- serving --------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        path = url.path
        query = parse_qs(url.query, keep_blank_values=True)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        given = handler.headers.get("Authorization") or ""
        authorized = hmac.compare_digest(given.encode(), self._expected.encode())
        body: Any = None
        try:
            body = json.loads(raw) if raw else None
            reply = self._answer(method, path, query, body, authorized)
        except ValueError:
            reply = _Reply(400, _errors("The request body is not valid JSON."))
        with self._lock:
            self.requests.append(LoggedRequest(method, path, query, body, reply.status, authorized))
        binary = isinstance(reply.body, bytes)
        payload = reply.body if binary else json.dumps(reply.body).encode()
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/octet-stream" if binary else "application/json;charset=UTF-8")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(self, method: str, path: str, query: dict[str, list[str]], body: Any, authorized: bool) -> _Reply:
        try:
            if not authorized:
                return _Reply(401, _errors("Client must be authenticated to access this resource."))
            self._fault(path)
            return _Reply(200, self._route(method, path, query, body))
        except _Reply as reply:
            return reply
        except Exception as exc:  # a bug in the fake shows up as a 500 the test can read, not a hung socket
            return _Reply(500, _errors(f"fake Jira failed: {exc!r}"))

    def _fault(self, path: str) -> None:
        with self._lock:
            fault = next((f for f in self._faults if f.path is None or path.startswith(f.path)), None)
            if fault is None:
                return
            self._faults.remove(fault)
        headers = {"RateLimit-Reason": "jira-burst-based"} if fault.status == 429 else {}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        raise _Reply(fault.status, _errors("Rate limit exceeded." if fault.status == 429 else "Try again."), headers)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        if match := re.fullmatch(r"/rest/api/([23])/search/jql", path):
            return self._search(method, int(match.group(1)), query, body)
        if method == "POST" and re.fullmatch(r"/rest/api/([23])/search/approximate-count", path):
            return self._count(body)
        if re.fullmatch(r"/rest/api/([23])/search", path):
            raise _Reply(410, _errors(_GONE))
        if method == "GET" and (match := re.fullmatch(r"/rest/api/([23])/issue/([^/]+)/changelog", path)):
            return self._changelog(self._visible(unquote(match.group(2))), int(match.group(1)), query)
        if method == "GET" and (match := re.fullmatch(r"/rest/api/([23])/issue/([^/]+)", path)):
            return self._issue(self._visible(unquote(match.group(2))), int(match.group(1)), query)
        if method == "POST" and path == "/rest/api/3/changelog/bulkfetch":
            return self._bulk_changelog(body)
        if method == "GET" and (match := re.fullmatch(r"/rest/api/([23])/user", path)):
            return self._resource("user", query.get("accountId", [""])[-1], int(match.group(1)))
        if method == "GET" and (match := re.fullmatch(_RESOURCE_PATH, path)):
            return self._resource(match.group(2), unquote(match.group(3)), int(match.group(1)))
        if method == "GET" and re.fullmatch(r"/rest/api/([23])/field", path):
            return self.field_catalogue()
        if method == "GET" and (match := re.fullmatch(r"/rest/api/3/attachment/content/([0-9]+)", path)):
            if query.get("redirect") != ["false"]:
                raise _Reply(400, _errors("The fake only streams attachments itself (redirect=false)."))
            if match.group(1) not in self.attachments:
                raise _Reply(404, _errors("The attachment does not exist."))
            return self.attachments[match.group(1)]
        raise _Reply(404, _errors(f"The fake Jira does not serve {method} {path}."))

    def field_catalogue(self) -> list[dict[str, Any]]:
        """GET /rest/api/3/field as Jira answers it (a JSON array; renames in `field_names` apply)."""
        return [
            {
                "id": ident,
                "key": ident,
                "name": self.field_names.get(ident, name),
                "custom": ident.startswith("customfield_"),
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": [ident],
                "schema": schema,
            }
            for ident, name, schema in _FIELD_DEFINITIONS
        ]

    def _visible(self, id_or_key: str) -> ModelIssue:
        issue = self.model.find(id_or_key)
        if issue is None or issue.deleted_ms is not None:
            raise _Reply(404, _errors(_NOT_FOUND))
        if issue.hidden:
            # Real Jira often answers 404 here too; JSync's contract distinguishes them, so the fake does.
            raise _Reply(403, _errors(_FORBIDDEN))
        return issue

    def _search(self, method: str, api: int, query: dict[str, list[str]], body: Any) -> dict[str, Any]:
        if method == "POST":
            params = body if isinstance(body, dict) else {}
            fields = params.get("fields")
        else:
            params = {k: v[-1] for k, v in query.items()}
            fields = [f for value in query.get("fields", []) for f in value.split(",")] or None
        jql = str(params.get("jql") or "")
        try:
            parsed = parse_jql(jql)
        except JqlError as exc:
            raise _Reply(400, _errors(str(exc))) from None
        fields = list(fields) if fields else ["id"]  # search/jql's default: ids only
        ids_only = set(fields) <= {"id", "key"}
        limit = self.page_limits["search_ids" if ids_only else "search_fields"]
        size = max(1, min(_number(params.get("maxResults"), 50), limit))
        start = self._token_offset(params.get("nextPageToken"), jql)
        with self.model.lock:
            matching = parsed.sort([i for i in self.model.issues.values() if i.visible and parsed.matches(i)])
            page = matching[start : start + size]
            issues = [self._cut(_select(self.model.render_issue(i, i.state, api, current=True), fields)) for i in page]
        result: dict[str, Any] = {"issues": issues, "isLast": start + size >= len(matching)}
        if not result["isLast"]:
            result["nextPageToken"] = _token(jql, start + size)
        return result

    def _cut(self, issue: dict[str, Any]) -> dict[str, Any]:
        """A search result's comments cut to `search_comment_limit`, the rest counted in `total` only."""
        holder = issue.get("fields", {}).get("comment")
        limit = self.search_comment_limit
        if limit is not None and isinstance(holder, dict) and len(holder["comments"]) > limit:
            issue["fields"]["comment"] = {**holder, "comments": holder["comments"][:limit], "maxResults": limit}
        return issue

    def _count(self, body: Any) -> dict[str, Any]:
        jql = str((body if isinstance(body, dict) else {}).get("jql") or "")
        try:
            parsed = parse_jql(jql)
        except JqlError as exc:
            raise _Reply(400, _errors(str(exc))) from None
        with self.model.lock:
            return {"count": sum(1 for i in self.model.issues.values() if i.visible and parsed.matches(i))}

    def _resource(self, kind: str, ident: str, api: int) -> dict[str, Any]:
        if kind == "user" and not ident:
            raise _Reply(400, _errors("The query parameter 'accountId' is required."))
        found = self.model.resource(kind, ident, api)
        if found is None:
            what = "user" if kind == "user" else f"{kind} with id '{ident}'"
            raise _Reply(404, _errors(f"The {what} does not exist or you do not have permission to see it."))
        return found

    def _token_offset(self, token: Any, scope: str) -> int:
        if not token:
            return 0
        try:
            decoded = json.loads(base64.urlsafe_b64decode(str(token).encode()))
            if decoded["q"] != _scope(scope):
                raise ValueError("token from another query")
            return int(decoded["o"])
        except (ValueError, KeyError, TypeError):
            raise _Reply(400, _errors("The nextPageToken is invalid or expired.")) from None

    def _issue(self, issue: ModelIssue, api: int, query: dict[str, list[str]]) -> dict[str, Any]:
        fields = [f for value in query.get("fields", []) for f in value.split(",")] or None
        with self.model.lock:
            document = _select(self.model.render_issue(issue, issue.state, api, current=True), fields)
            if "changelog" in ",".join(query.get("expand", [])).split(","):
                # What `expand=changelog` really does: the newest entries only, the oldest silently dropped.
                kept = issue.histories[-self.page_limits["expand_changelog"] :]
                document["changelog"] = {
                    "startAt": 0,
                    "maxResults": len(kept),
                    "total": len(issue.histories),
                    "histories": [self.model.render_history(h, api) for h in kept],
                }
        return document

    def _changelog(self, issue: ModelIssue, api: int, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            start = max(0, int(query.get("startAt", ["0"])[-1]))
            size = max(1, min(int(query.get("maxResults", ["100"])[-1]), self.page_limits["changelog"]))
        except ValueError:
            raise _Reply(400, _errors("startAt and maxResults must be numbers.")) from None
        with self.model.lock:
            total = len(issue.histories)
            values = [self.model.render_history(h, api) for h in issue.histories[start : start + size]]
        return {
            "self": f"{self.model.site}/rest/api/{api}/issue/{issue.id}/changelog?maxResults={size}&startAt={start}",
            "maxResults": size,
            "startAt": start,
            "total": total,
            "isLast": start + size >= total,
            "values": values,
        }

    def _bulk_changelog(self, body: Any) -> dict[str, Any]:
        params = body if isinstance(body, dict) else {}
        wanted = params.get("issueIdsOrKeys")
        if not isinstance(wanted, list) or not 1 <= len(wanted) <= 1000:
            raise _Reply(400, _errors("issueIdsOrKeys must list between 1 and 1000 issues."))
        field_ids = params.get("fieldIds") or []
        if len(field_ids) > 10:
            raise _Reply(400, _errors("fieldIds can list at most 10 fields."))
        size = max(1, min(_number(params.get("maxResults"), 1000), self.page_limits["bulk_changelog"]))
        scope = json.dumps([wanted, field_ids])
        start = self._token_offset(params.get("nextPageToken"), scope)
        with self.model.lock:
            # Unknown, deleted and hidden issues are left out rather than failing the call [unconfirmed on a live site].
            found = {i.id: i for i in (self.model.find(str(w)) for w in wanted) if i is not None and i.visible}
            entries: list[tuple[str, dict[str, Any]]] = []
            for issue_id in sorted(found, key=int):
                for history in found[issue_id].histories:
                    rendered = self.model.render_history(history, 3)
                    if field_ids:
                        rendered["items"] = [i for i in rendered["items"] if i.get("fieldId", i["field"]) in field_ids]
                        if not rendered["items"]:
                            continue
                    entries.append((issue_id, rendered))
        logs: list[dict[str, Any]] = []
        for issue_id, entry in entries[start : start + size]:
            if not logs or logs[-1]["issueId"] != issue_id:
                logs.append({"issueId": issue_id, "changeHistories": []})
            logs[-1]["changeHistories"].append(entry)
        result: dict[str, Any] = {"issueChangeLogs": logs}
        if start + size < len(entries):
            result["nextPageToken"] = _token(scope, start + size)
        return result


def endpoint(method: str, path: str) -> str:
    """`GET /rest/api/2/issue/{id}`: the request's method and path, ids and keys in it replaced by `{id}`."""
    path = re.sub(r"/issue/[^/]+", "/issue/{id}", path)
    path = re.sub(r"/(status|priority|project|issuetype|resolution)/[^/]+", r"/\1/{id}", path)
    return f"{method} {path}"


def _number(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise _Reply(400, _errors(f"maxResults must be a number, not {value!r}.")) from None


def _scope(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def _token(query: str, offset: int) -> str:
    """An opaque page token tied to its query, as Jira's are."""
    return base64.urlsafe_b64encode(json.dumps({"q": _scope(query), "o": offset}).encode()).decode()
