"""A small Jira Cloud REST client for reconcile: search, issues, full changelogs and an id census, rate limits honoured.

Standard library only (urllib), so it adds no dependency to the functions that ship it.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO

from pipeline.ids import is_project_key
from pipeline.jiratime import epoch_ms

log = logging.getLogger(__name__)

SEARCH_PATH = "/rest/api/{}/search/jql"  # the old /rest/api/{3,2}/search answers 410 since 2025
COUNT_PATH = "/rest/api/3/search/approximate-count"
ISSUE_PATH = "/rest/api/{}/issue/{}"
CHANGELOG_PATH = "/rest/api/3/issue/{}/changelog"
BULK_CHANGELOG_PATH = "/rest/api/3/changelog/bulkfetch"
FIELDS_PATH = "/rest/api/3/field"
ATTACHMENT_PATH = "/rest/api/3/attachment/content/{}"

RETRYABLE = frozenset({429, 503})
LOOKUP_KINDS = frozenset({"status", "priority", "project", "issuetype", "resolution", "user"})
CENSUS_PAGE = 5000  # search/jql's largest page, allowed only when asking for ids alone
CHANGELOG_PAGE = 100  # the per-issue changelog's largest page
BULK_IDS_PER_CALL = 1000  # changelog/bulkfetch refuses more issues than this in one call
BULK_PAGE = 1000
_ERROR_TEXT_LIMIT = 500
# Lists an issue embeds as {startAt, maxResults, total, <list>}: field -> (list, how many GET issue lists at most).
# Worklogs: 20, in GET issue as in search results [2nd: pycontribs/jira #164, atlassian-mcp-server #180], so 20 of
# them on a search page are what GET issue, and a webhook, would hold. Comments: GET issue lists them all
# [unconfirmed], and whether search results cut them is not documented, so fewer than their total means cut.
EMBEDDED_LISTS: dict[str, tuple[str, int | None]] = {"comment": ("comments", None), "worklog": ("worklogs", 20)}


class JiraError(Exception):
    """Jira refused or failed a request. The message quotes Jira's reasons and never the credentials."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class JiraRateLimited(JiraError):
    """Jira kept answering 429/503 after every retry we allow; `retry_after` is its last advice in seconds."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(status, message)
        self.retry_after = retry_after


class IssueGone(JiraError):
    """404: the issue does not exist (deleted), as far as these credentials can tell."""


class IssueHidden(JiraError):
    """403: the issue exists but these credentials may no longer see it; never treat it as deleted."""


def lookback_bound(epoch_ms: int, lookback_minutes: int) -> int:
    """Where a search from a cursor starts: `lookback_minutes` before it. Search is eventually consistent and
    webhooks arrive up to 30 minutes late, so a margin is read again and a change indexed late is still found."""
    return max(0, int(epoch_ms) - max(0, lookback_minutes) * 60_000)


def updated_since_clause(bound_ms: int) -> str:
    """The JQL bound `updated >= <epoch ms>`.

    JQL reads a quoted date ("yyyy-MM-dd HH:mm") in the caller's profile time zone at minute precision, so a UTC
    cursor skips changes west of UTC; an unquoted number is read as epoch milliseconds, exact and zone-free.
    """
    return f"updated >= {max(0, int(bound_ms))}"


def project_clause(project_key: str) -> str:
    """`project = "KEY"`, refusing anything that is not a project key so no caller can inject JQL."""
    if not is_project_key(project_key):
        raise ValueError(f"{project_key!r} is not a Jira project key (uppercase letters, digits, _).")
    return f'project = "{project_key}"'


class JiraClient:
    """Calls one Jira Cloud site with `email:api_token` Basic auth."""

    def __init__(
        self,
        base_url: str,
        email: str,
        token: str,
        *,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 20,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        max_wait: float = 120.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.email = email
        self._token = token
        self._authorization = "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode("ascii")
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        # A Retry-After longer than this is not slept through: the caller (a resumable job) stops and comes back.
        self.max_wait = max_wait
        self._sleep = sleep
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"JiraClient({self.base_url!r}, {self.email!r})"

    # --- reading Jira -----------------------------------------------------------------------------

    def search_updated_since(
        self, jql: str, fields: list[str], page_size: int = 100, api: int = 3
    ) -> Iterator[dict[str, Any]]:
        """Every issue the (bounded) JQL matches, page by page with `nextPageToken`, as Jira returns them."""
        token: str | None = None
        while True:
            issues, token = self.search_page(jql, fields, page_size, token, api)
            yield from issues
            if not token:
                return

    def search_page(
        self, jql: str, fields: list[str], page_size: int = 100, token: str | None = None, api: int = 3
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a (bounded) JQL search and the token of the next, None after the last.

        A job that may be cut short keeps the token (valid for days) and carries on from it. `api=2` renders the
        issues as REST v2 and webhooks do (wiki markup, `/rest/api/2/` links); with `fields=["*all"]` each is what
        `GET /rest/api/2/issue/{id}` gives, save lists Jira cuts in search results (see `cut_collections`).
        """
        body: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": page_size}
        if token:
            body["nextPageToken"] = token
        page = self._json("POST", SEARCH_PATH.format(api), body=body)
        following = page.get("nextPageToken")
        done = page.get("isLast") or not following
        return list(page.get("issues") or []), None if done else str(following)

    def approximate_count(self, jql: str) -> int | None:
        """Roughly how many issues match, for a progress bar; None when Jira will not say."""
        try:
            count = self._json("POST", COUNT_PATH, body={"jql": jql}).get("count")
        except JiraRateLimited:
            raise
        except JiraError:
            return None
        return count if isinstance(count, int) else None

    def issue(self, id_or_key: str, fields: list[str] | None = None, api: int = 3) -> dict[str, Any]:
        """One issue; raises IssueGone on 404 and IssueHidden on 403. An old key resolves to the moved issue.

        `api=2` gives the shape webhooks carry (rich text as wiki markup, `/rest/api/2/` links); 3 gives ADF.
        """
        query = {"fields": ",".join(fields)} if fields is not None else None
        return self._json("GET", ISSUE_PATH.format(api, _segment(id_or_key)), query=query, issue=True)

    def lookup(self, kind: str, ident: str) -> dict[str, Any] | None:
        """A status, priority, project, issue type, resolution or user (by accountId) as REST v2 shows it.

        None when Jira has no such thing or will not show it: a rebuilt old state then keeps what the changelog says.
        """
        if kind not in LOOKUP_KINDS:
            raise ValueError(f"cannot look up {kind!r}; one of {sorted(LOOKUP_KINDS)}")
        if kind == "user":
            path, query = "/rest/api/2/user", {"accountId": str(ident)}
        else:
            path, query = f"/rest/api/2/{kind}/{_segment(ident)}", None
        try:
            return self._json("GET", path, query=query)
        except JiraRateLimited:
            raise
        except JiraError as exc:
            if exc.status in (400, 403, 404):
                return None
            raise

    def fields(self) -> Any:
        """Jira's field catalogue: every system and custom field the user can see, as a JSON array of
        `{"id", "name", "schema", ...}` (one request, whatever the site's size)."""
        return self._call("GET", FIELDS_PATH)

    def changelog(self, issue_id: str) -> list[dict[str, Any]]:
        """The issue's whole changelog, oldest first, from the paged endpoint (`expand=changelog` drops old entries)."""
        path = CHANGELOG_PATH.format(_segment(issue_id))
        histories: list[dict[str, Any]] = []
        while True:
            query = {"startAt": str(len(histories)), "maxResults": str(CHANGELOG_PAGE)}
            page = self._json("GET", path, query=query, issue=True)
            values = page.get("values") or []
            histories.extend(values)
            total = page.get("total")
            if not values or page.get("isLast") or (isinstance(total, int) and len(histories) >= total):
                return histories

    def bulk_changelogs(self, issue_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Whole changelogs of many issues, oldest first per issue, by `changelog/bulkfetch`.

        Issues without history, and those Jira does not return (deleted, hidden), are absent from the result.
        """
        unique = list(dict.fromkeys(str(i) for i in issue_ids))
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(unique), BULK_IDS_PER_CALL):
            chunk = unique[start : start + BULK_IDS_PER_CALL]
            token: str | None = None
            while True:
                body: dict[str, Any] = {"issueIdsOrKeys": chunk, "maxResults": BULK_PAGE}
                if token:
                    body["nextPageToken"] = token
                page = self._json("POST", BULK_CHANGELOG_PATH, body=body)
                for entry in page.get("issueChangeLogs") or []:
                    # One issue's histories can straddle two pages: append, never replace.
                    found.setdefault(str(entry.get("issueId")), []).extend(entry.get("changeHistories") or [])
                token = page.get("nextPageToken")
                if not token:
                    break
        return {issue_id: sorted(histories, key=history_order) for issue_id, histories in found.items()}

    def census(self, project_key: str) -> set[str]:
        """The ids of every issue in the project these credentials can see (ids only, so 5000 per page)."""
        jql = f"{project_clause(project_key)} ORDER BY id ASC"
        return {str(issue["id"]) for issue in self.search_updated_since(jql, ["id"], page_size=CENSUS_PAGE)}

    # --- transport --------------------------------------------------------------------------------

    def _json(self, method: str, path: str, **how: Any) -> dict[str, Any]:
        """`_call` for the endpoints that answer a JSON object (all but the field catalogue)."""
        decoded = self._call(method, path, **how)
        if not isinstance(decoded, dict):
            raise JiraError(200, f"Jira answered {method} {path} with JSON that is not an object.")
        return decoded

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        issue: bool = False,
    ) -> Any:
        response = self._open(method, path, query=query, body=body, issue=issue)
        try:
            with response:
                raw = response.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise self._unreachable(method, path, exc) from None
        return self._decode(raw, method, path)

    def download(self, attachment_id: str) -> BinaryIO:
        """An attachment's content as a stream (the caller closes it); 404 raises IssueGone.

        The URL is built from the site and the id, never taken from a payload's `content` link, so the credentials
        only ever go to the configured site. `redirect=false`: Jira streams the bytes itself instead of sending us
        on to its media host.
        """
        path = ATTACHMENT_PATH.format(_segment(attachment_id))
        response: BinaryIO = self._open("GET", path, query={"redirect": "false"}, accept="*/*", issue=True)
        return response

    def _open(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        issue: bool = False,
        accept: str = "application/json",
    ) -> Any:
        """The response to a request, once Jira answers 2xx; 429 and 503 are retried as Jira advises."""
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(url, data=data, method=method)
            request.add_header("Accept", accept)
            if data is not None:
                request.add_header("Content-Type", "application/json")
            # Unredirected: urllib copies ordinary headers onto a redirect, which could hand the token to another host.
            request.add_unredirected_header("Authorization", self._authorization)
            try:
                return urllib.request.urlopen(request, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                status, raw, headers = exc.code, exc.read(), exc.headers
                exc.close()
                if status not in RETRYABLE:
                    raise self._error(status, method, path, raw, issue=issue) from None
                advised = _retry_after(headers.get("Retry-After"))
                if advised is not None and advised > self.max_wait:
                    raise JiraRateLimited(
                        status,
                        self._message(status, method, path, raw) + f" Jira asks to wait {advised:g} s; resume later.",
                        advised,
                    ) from None
                if attempt == self.max_retries:
                    raise JiraRateLimited(
                        status,
                        self._message(status, method, path, raw) + f" Still refused after {attempt} retries.",
                        advised,
                    ) from None
                wait = advised if advised is not None else self._backoff(attempt)
                log.warning(
                    "Jira answered %s to %s %s; retry %d of %d in %.2f s",
                    status,
                    method,
                    path,
                    attempt + 1,
                    self.max_retries,
                    wait,
                )
                self._sleep(wait)
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                raise self._unreachable(method, path, exc) from None
        raise AssertionError("unreachable: the loop returns or raises")

    def _unreachable(self, method: str, path: str, exc: Exception) -> JiraError:
        reason = getattr(exc, "reason", exc)
        return JiraError(0, self._scrub(f"Could not reach Jira for {method} {path}: {reason}."))

    def _backoff(self, attempt: int) -> float:
        # Full jitter: clients throttled together spread out instead of retrying in lockstep.
        return self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))

    def _decode(self, raw: bytes, method: str, path: str) -> Any:
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise JiraError(200, f"Jira answered {method} {path} with a body that is not JSON.") from None

    def _error(self, status: int, method: str, path: str, raw: bytes, *, issue: bool) -> JiraError:
        message = self._message(status, method, path, raw)
        if issue and status == 404:
            return IssueGone(status, message)
        if issue and status == 403:
            return IssueHidden(status, message)
        return JiraError(status, message)

    def _message(self, status: int, method: str, path: str, raw: bytes) -> str:
        return self._scrub(f"Jira answered {status} to {method} {path}: {_reasons(raw)}")

    def _scrub(self, text: str) -> str:
        # Jira never echoes credentials, but a proxy in between might: the message must be safe to log anyway.
        for secret in (self._token, self._authorization, self._authorization.removeprefix("Basic ")):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text


def _reasons(raw: bytes) -> str:
    """Jira's `errorMessages` and field `errors`, or the start of a body that is not Jira's JSON."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        reasons = [str(m) for m in body.get("errorMessages") or []]
        errors = body.get("errors")
        if isinstance(errors, dict):
            reasons += [f"{field}: {reason}" for field, reason in errors.items()]
        if reasons:
            return " ".join(r if r.endswith(".") else r + "." for r in reasons)
    return (text[:_ERROR_TEXT_LIMIT] + ("…" if len(text) > _ERROR_TEXT_LIMIT else "")) or "no reason given."


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: Jira sends a number; HTTP also allows a date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def cut_collections(issue: dict[str, Any]) -> list[str]:
    """The embedded lists (comments, worklogs) this search result holds fewer items of than GET issue would."""
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        return []
    cut = []
    for name, (listing, cap) in EMBEDDED_LISTS.items():
        holder = fields.get(name)
        if not isinstance(holder, dict) or not isinstance(holder.get(listing), list):
            continue
        total = holder.get("total")
        if not isinstance(total, int):
            continue
        whole = total if cap is None else min(total, cap)
        if len(holder[listing]) < whole:
            cut.append(name)
    return cut


def history_order(history: dict[str, Any]) -> tuple[int, int]:
    """Oldest first: by creation time, then by id (ids grow with time, so they break ties within a millisecond)."""
    try:
        number = int(str(history.get("id")))
    except ValueError:
        number = 0
    return epoch_ms(history.get("created")) or 0, number


def _segment(id_or_key: str) -> str:
    return urllib.parse.quote(str(id_or_key), safe="")
