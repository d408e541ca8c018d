"""Reconcile: read Jira's REST API and feed every change JSync lacks through the events queue, as a webhook would.

A job runs in steps (a Lambda lives 15 minutes): issues noted as pending (a refused webhook, an earlier failure),
then every issue updated since the cursor, then a census of each project's ids to find deletions. Progress is saved
after each unit of work, so a step cut short resumes from its last page; feeding a change twice is harmless, because
the writer keeps one capture per changelog entry whichever source brought it.

Jira requests: a search page brings its issues' documents whole (REST v2, every field: what a webhook carries), and
one `changelog/bulkfetch` their changelogs, so a page of 50 issues costs about two requests. An issue is read alone
(`GET issue`) only when the page cut one of its lists (comments, worklogs) shorter than GET issue gives it, or when
it is pending, or when the census misses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.ids import Order, canonical_json
from pipeline.jiratime import epoch_ms
from pipeline.messages import QueuedEvent
from pipeline.reconcile import jobs
from pipeline.reconcile.jira import (
    IssueGone,
    IssueHidden,
    JiraClient,
    JiraError,
    JiraRateLimited,
    cut_collections,
    lookback_bound,
    project_clause,
    updated_since_clause,
)
from pipeline.reconcile.rebuild import Lookup, RebuiltEvent, rebuild
from pipeline.snapshot import issue_document
from pipeline.store import PENDING_PREFIX, SYNC_CURSOR, Store, pending_key, project_prefix, raw_key

SEARCH_PAGE = 50  # a page (reads, rebuilds, sends) is one unit of work: it must fit well inside a step's margin
PENDING_BATCH = 25
OUTBOX_LIMIT = 100  # events held before sending: a page of issues with long histories stays small in memory
# Every field, rendered by REST v2: each issue is what GET /rest/api/2/issue/{id} (no expand) gives, as webhooks carry.
_SEARCH_FIELDS = ["*all"]
_SEARCH_API = 2

Outgoing = list[tuple[QueuedEvent, str]]  # (event, message group), in the order they must be queued


class JobFailed(Exception):
    """The job cannot go on (bad credentials, a refused search); the message says what to fix."""


@dataclass
class Reconciler:
    """Compares Jira with what JSync holds and feeds what is missing; one per step of a job."""

    store: Store
    jira: JiraClient
    send: Callable[[Outgoing], None]  # onto the events queue, in order, as few calls as the queue allows
    now_ms: Callable[[], int]
    lookback_minutes: int = 30
    lookup: Lookup = field(init=False)
    # Issues Jira refused in this step: they stay pending however full the job's error list is.
    _refused: set[str] = field(init=False, default_factory=set)
    # Events fed and not yet sent: sent together before progress is saved, so a step that dies re-feeds, never loses.
    _outbox: Outgoing = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.lookup = Lookup(self.jira.lookup)
        self._out_of_time: Callable[[], bool] = lambda: False

    # --- the job ----------------------------------------------------------------------------------

    def run(self, job: dict[str, Any], out_of_time: Callable[[], bool]) -> bool:
        """Advance the job until it ends (True) or time runs out (False: carry on in another step)."""
        if job["state"] in jobs.TERMINAL:
            return True
        self._out_of_time = out_of_time
        if job["state"] == "queued":
            self._start(job)
        else:
            job["message"] = None  # what stopped the last step (a rate limit, an outage) is over: we are running
        steps = {"pending": self._pending_step, "search": self._search_step, "census": self._census_step}
        try:
            while job["phase"] != "done":
                steps[job["phase"]](job)
                self._save(job)
                # Checked after a unit of work, so even a step started late makes progress.
                if job["phase"] != "done" and out_of_time():
                    return False
        except JobFailed as failed:
            self._finish(job, failed=str(failed))
            return True
        except JiraError as retry:  # only retryable ones get here: _fatal_or_retry turned the rest into JobFailed
            if isinstance(retry, JiraRateLimited):
                job["message"] = f"Jira is rate limiting; the job resumes where it stopped. {retry.message}"
            else:
                job["message"] = f"Jira did not answer; the step is retried from where it stopped. {retry.message}"
            self._save(job)
            raise
        self._finish(job)
        return True

    def _start(self, job: dict[str, Any]) -> None:
        now = self.now_ms()
        bound = job.get("since_ms")
        if bound is None:
            cursor = self._cursor()
            known = [cursor.get("*"), cursor.get(job["project"]) if job["project"] else None]
            last = max((c for c in known if isinstance(c, int)), default=None)
            bound = None if last is None else lookback_bound(last, self.lookback_minutes)
        clauses = [project_clause(job["project"])] if job["project"] else []
        clauses.append(updated_since_clause(bound or 0))
        job.update(state="running", phase="pending", started_at=jobs.iso(now), message=None)
        job["resume"] = {
            "started_ms": now,
            "bound_ms": bound or 0,
            "jql": " AND ".join(clauses) + " ORDER BY id ASC",
            "token": None,
        }
        jobs.save(self.store, job)

    def _finish(self, job: dict[str, Any], failed: str | None = None) -> None:
        now = self.now_ms()
        started = job["resume"].get("started_ms", now)
        job.update(phase="done", finished_at=jobs.iso(now), elapsed_seconds=round((now - started) / 1000, 3))
        if failed:
            job.update(state="failed", message=failed)
        else:
            job["state"] = "finished_with_errors" if job["errors"] else "succeeded"
            if job.get("since_ms") is None:
                # Issues that failed are pending now, so moving the cursor past them loses nothing.
                cursor = self._cursor()
                cursor[job["project"] or "*"] = started
                self.store.put_json(SYNC_CURSOR, {"scopes": cursor})
        self._save(job)

    def _save(self, job: dict[str, Any]) -> None:
        """Record the job's progress, once what it fed up to there is on the queue."""
        self._flush()
        jobs.save(self.store, job)

    def _cursor(self) -> dict[str, Any]:
        return _read_cursor(self.store)

    # --- the three phases -------------------------------------------------------------------------

    def _pending_step(self, job: dict[str, Any]) -> None:
        resume = job["resume"]
        keys, _ = self.store.list_keys(PENDING_PREFIX, resume.get("pending_after"), PENDING_BATCH)
        if not keys:
            job["phase"] = "search"
            return
        answered: list[str] = []
        for key in keys:
            issue_id = key[len(PENDING_PREFIX) :].removesuffix(".json")
            if self._reconcile_issue(job, issue_id):
                answered.append(key)
            resume["pending_after"] = key
            # The search would feed (and count) it again while the writer has yet to capture what we fed.
            resume.setdefault("pending_done", []).append(issue_id)
            if self._out_of_time():
                break
        # A note goes only once what its issue fed is on the queue; if this step dies first, the next job reads it.
        self._flush()
        for key in answered:
            self.store.delete(key)

    def _search_step(self, job: dict[str, Any]) -> None:
        resume = job["resume"]
        jql = resume["jql"]
        if job["issues_estimated"] is None and not resume.get("token"):
            job["issues_estimated"] = self._guarded(lambda: self.jira.approximate_count(jql))
        issues, token = self._guarded(
            lambda: self.jira.search_page(jql, _SEARCH_FIELDS, SEARCH_PAGE, resume["token"], api=_SEARCH_API)
        )
        job["pages_scanned"] += 1
        job["issues_scanned"] += len(issues)
        self._reconcile_page(job, issues)
        resume["token"] = token
        if token is None:
            job["phase"] = "census"

    def _census_step(self, job: dict[str, Any]) -> None:
        resume = job["resume"]
        if "projects" not in resume:
            resume["projects"] = [job["project"]] if job["project"] else self.store.project_keys()
            resume["project_index"] = 0
        if resume["project_index"] >= len(resume["projects"]):
            job["phase"] = "done"
            return
        project = resume["projects"][resume["project_index"]]
        vanished: list[str] | None = resume.get("vanished")
        if vanished is None:
            resume["vanished"] = vanished = self._vanished(project)
            if vanished:
                # The census is one unit and each read of what it lacks another: a deleted project lacks
                # thousands, more than one Lambda can read, and a unit that never ends never saves.
                return
        while vanished:
            self._check_vanished(job, vanished.pop(0))
            if vanished and self._out_of_time():
                return
        del resume["vanished"]
        resume["project_index"] += 1

    def _vanished(self, project: str) -> list[str]:
        """The issues JSync lists in the project that Jira's census of it lacks."""
        try:
            present = self.jira.census(project)
        except JiraError as exc:
            if exc.status != 400:
                raise self._fatal_or_retry(exc) from None
            # Jira refuses JQL naming a project that no longer exists: every issue we hold there is checked.
            present = set()
        prefix = project_prefix(project) + "issues/"
        held = {int(k[len(prefix) :].removesuffix(".json")) for k in self.store.all_keys(prefix)}
        return [str(i) for i in sorted(held) if str(i) not in present]

    # --- one page, one issue ----------------------------------------------------------------------

    def _reconcile_page(self, job: dict[str, Any], issues: list[dict[str, Any]]) -> None:
        """Feed what JSync lacks of a search page's issues, from the page's documents and one bulk changelog read."""
        done = set(job["resume"].get("pending_done") or [])
        issues = [issue for issue in issues if str(issue["id"]) not in done]
        ids = [str(issue["id"]) for issue in issues]
        if not ids:
            return
        # The search read every document before this reads their changelogs: an edit in between shows as an entry
        # newer than its document, which the rebuild leaves for the next run, never as a document ahead of its entries.
        changelogs = self._guarded(lambda: self.jira.bulk_changelogs(ids))
        wanted = [
            issue
            for issue in issues
            if self._needs_work(
                str(issue["id"]),
                epoch_ms((issue.get("fields") or {}).get("updated")),
                changelogs.get(str(issue["id"]), []),
            )
        ]
        cut = [str(issue["id"]) for issue in wanted if cut_collections(issue)]
        documents = {str(issue["id"]): issue for issue in wanted if str(issue["id"]) not in cut}
        documents.update(self._read_whole(job, cut, changelogs))
        for issue in wanted:
            issue_id = str(issue["id"])
            if issue_id in documents:
                self._feed_missing(job, issue_id, documents[issue_id], changelogs.get(issue_id, []))

    def _read_whole(
        self, job: dict[str, Any], issue_ids: list[str], changelogs: dict[str, list[dict[str, Any]]]
    ) -> dict[str, dict[str, Any]]:
        """GET issue for issues whose list (comments...) the page cut; their changelogs in `changelogs` read anew."""
        documents: dict[str, dict[str, Any]] = {}
        for issue_id in issue_ids:
            found = self._read_issue(job, issue_id)
            if found is not None:
                documents[issue_id] = found
        if documents:
            # Read after the documents, for the reason _reconcile_page gives: the earlier read came before them.
            fresh = self._guarded(lambda: self.jira.bulk_changelogs(list(documents)))
            changelogs.update({issue_id: fresh.get(issue_id, []) for issue_id in documents})
        return documents

    def _needs_work(self, issue_id: str, jira_updated: int | None, histories: list[dict[str, Any]]) -> bool:
        """JSync lacks the issue, a changelog entry of it, or a later edit (one without a changelog entry)."""
        latest = self.store.latest(issue_id)
        if latest is None:
            return True
        state = latest.data
        if state.get("deleted"):
            return False  # a deletion is final, as for webhooks
        if state.get("partial"):
            return True
        recorded = self.store.recorded_entries(issue_id)
        if "created" not in recorded or any(str(h.get("id")) not in recorded for h in histories):
            return True
        ours = epoch_ms(((state.get("issue") or {}).get("fields") or {}).get("updated"))
        return jira_updated is None or ours is None or jira_updated > ours

    def _reconcile_issue(self, job: dict[str, Any], issue_id: str) -> bool:
        """Feed every change of one issue that JSync lacks. False if Jira refused (the issue stays pending)."""
        current = self._read_issue(job, issue_id)
        if current is None:
            return issue_id not in self._refused  # deleted or hidden is an answer; a refusal is not
        try:
            histories = self.jira.changelog(issue_id)  # after the document, for the reason _reconcile_page gives
        except (IssueGone, IssueHidden):
            return True  # gone between the two reads: the next run sees it as such
        except JiraError as exc:
            return self._issue_error(job, issue_id, exc)
        self._feed_missing(job, issue_id, current, histories)
        return True

    def _read_issue(self, job: dict[str, Any], issue_id: str) -> dict[str, Any] | None:
        """The issue as a webhook shows it (REST v2), or None after recording it as deleted, hidden or failed."""
        try:
            return self.jira.issue(issue_id, api=2)
        except IssueGone:
            self._gone(job, issue_id)
        except IssueHidden:
            self._hidden(job, issue_id)
        except JiraError as exc:
            self._issue_error(job, issue_id, exc)
        return None

    def _feed_missing(
        self, job: dict[str, Any], issue_id: str, current: dict[str, Any], histories: list[dict[str, Any]]
    ) -> None:
        self.lookup.seed(current)
        events = rebuild(current, histories, self.lookup)
        latest = self.store.latest(issue_id)
        state = latest.data if latest else None
        if state and state.get("deleted"):
            return
        recorded = self.store.recorded_entries(issue_id)
        fed = [event for event in events if event.key not in recorded]
        for event in fed:
            self._feed(issue_id, f"rc-{issue_id}-{event.key}", event.payload)
        behind = _behind(current, state, histories, recorded)
        fed_count = len(fed) + (0 if behind else self._refresh(issue_id, current, events, fed, state))
        if fed_count:
            job["changes_fed"] += fed_count
            job["issues_changed"] += 1

    def _refresh(
        self,
        issue_id: str,
        current: dict[str, Any],
        events: list[RebuiltEvent],
        fed: list[RebuiltEvent],
        state: dict[str, Any] | None,
    ) -> int:
        """An edit Jira keeps no changelog for (a comment, a field outside the changelog) still reaches latest/."""
        newest: tuple[Order, dict[str, Any] | None] | None = None
        if state is not None:
            held = state.get("issue")
            # Through issue_document too: a document stored before times were kept in UTC compares as its instants.
            held_doc = issue_document(held) if isinstance(held, dict) else None
            newest = (Order.of_state(state), held_doc)
        if fed and fed[-1] is events[-1]:
            last = events[-1]
            order = Order(last.timestamp_ms, int(last.key) if last.key.isdigit() else 0, "")
            if newest is None or order > newest[0]:
                newest = (order, issue_document(last.payload["issue"]))
        document = issue_document(current)
        if newest is not None and newest[1] == document:
            return 0
        updated = epoch_ms((current.get("fields") or {}).get("updated"))
        at = updated or self.now_ms()
        if newest is not None and at <= newest[0].time_ms:
            at = newest[0].time_ms + 1  # an edit after the newest we hold, whatever its clock says
        payload = {
            "timestamp": at,
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_generic",
            "issue": current,
        }
        # Two edits without a changelog entry can share an `updated`; the document tells them apart.
        digest = hashlib.sha256(canonical_json(document)).hexdigest()[:12]
        self._feed(issue_id, f"rc-{issue_id}-u{updated or at}-{digest}", payload)
        return 1

    def _check_vanished(self, job: dict[str, Any], issue_id: str) -> None:
        """An issue we list that the census lacks: deleted (404), hidden from us (403), or moved on (200)."""
        try:
            found = self.jira.issue(issue_id, fields=["key", "updated", "project"], api=2)
        except IssueGone:
            self._gone(job, issue_id)
            return
        except IssueHidden:
            self._hidden(job, issue_id)
            return
        except JiraError as exc:
            self._issue_error(job, issue_id, exc)
            return
        updated = epoch_ms((found.get("fields") or {}).get("updated"))
        if not job["project"] and updated is not None and updated >= int(job["resume"].get("bound_ms") or 0):
            # Moved to another project after the bound: this job's search (of every project) read it already,
            # and what it fed may not be captured yet, so reading it again would only feed it twice.
            return
        self._reconcile_issue(job, issue_id)

    def _gone(self, job: dict[str, Any], issue_id: str) -> None:
        latest = self.store.latest(issue_id)
        if latest is None or latest.data.get("deleted"):
            return
        doc = latest.data.get("issue") or {"id": issue_id}
        # Jira says only that the issue is gone, not when or by whom: the deletion is dated when this job started
        # looking (just after the last change we hold, if that is later). Never the clock at this call: a retried
        # step feeds it again, and another time would be another snapshot of the same deletion.
        held = Order.of_state(latest.data).time_ms
        at = max(int(job["resume"].get("started_ms") or self.now_ms()), held + 1)
        payload = {"timestamp": at, "webhookEvent": "jira:issue_deleted", "issue": doc}
        self._feed(issue_id, f"rc-{issue_id}-deleted", payload)
        if any(item["id"] == issue_id for item in job["deleted"]):
            return  # found again in the same job (pending, then census) before the writer captured it
        job["deletes_found"] += 1
        _report(job, "deleted", {"id": issue_id, "key": doc.get("key")})

    def _hidden(self, job: dict[str, Any], issue_id: str) -> None:
        latest = self.store.latest(issue_id)
        key = ((latest.data if latest else {}).get("issue") or {}).get("key")
        if not any(item["id"] == issue_id for item in job["not_visible"]):
            _report(job, "not_visible", {"id": issue_id, "key": key})

    def _issue_error(self, job: dict[str, Any], issue_id: str, exc: JiraError) -> bool:
        if _retryable(exc) or exc.status == 401:  # not about this issue: the step or the job ends
            raise self._fatal_or_retry(exc)
        _report(job, "errors", {"issue_id": issue_id, "status": exc.status, "message": exc.message})
        self.store.put_json(pending_key(issue_id), {"issue_id": issue_id, "reason": f"jira_{exc.status}"})
        self._refused.add(issue_id)
        return False

    def _guarded(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except JiraError as exc:
            raise self._fatal_or_retry(exc) from None

    @staticmethod
    def _fatal_or_retry(exc: JiraError) -> Exception:
        """Rate limits, network trouble and 5xx end the step for a retry; other refusals end the job."""
        if _retryable(exc):
            return exc
        if exc.status == 401:
            return JobFailed(f"Jira refused the credentials (401): check the site URL, email and API token. {exc}")
        return JobFailed(str(exc))

    def _feed(self, issue_id: str, event_id: str, payload: dict[str, Any]) -> None:
        """Queue one rebuilt delivery: held with the unit of work's others, sent with them (or once enough wait)."""
        now = self.now_ms()
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        queued = QueuedEvent(event_id, now, "application/json", raw_key(event_id, now, "json"), body, "reconcile")
        self._outbox.append((queued, issue_id))
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._flush()

    def _flush(self) -> None:
        """Send what was fed, in the order it was fed (so each issue's events keep theirs)."""
        if self._outbox:
            outgoing, self._outbox = self._outbox, []
            self.send(outgoing)


def _retryable(exc: JiraError) -> bool:
    """Rate limited, unreachable or failing on Jira's side: the same request may well work later."""
    return isinstance(exc, JiraRateLimited) or exc.status == 0 or exc.status >= 500


def _behind(
    current: dict[str, Any], state: dict[str, Any] | None, histories: list[dict[str, Any]], recorded: set[str]
) -> bool:
    """Whether JSync holds, or is capturing, a later change than `current`, the issue as we read it.

    A refresh from `current` would then move latest/ (and git) back: the held document is later (an edit captured
    after our read), or a changelog entry already claimed is later than the held document (its capture is in
    flight, and brings its own document, so the refresh would only add a commit of its own).
    """
    held = epoch_ms((((state or {}).get("issue") or {}).get("fields") or {}).get("updated"))
    if held is None:
        return False
    read = epoch_ms((current.get("fields") or {}).get("updated"))
    if read is not None and read < held:
        return True
    return any((epoch_ms(h.get("created")) or 0) > held for h in histories if str(h.get("id")) in recorded)


def scheduled_run_due(store: Store, every_hours: float, now_ms: int) -> bool:
    """Whether a scheduled run is due: `every_hours` since the last complete run of every project began.

    Never before a first complete run: a backfill of years is for someone to start on purpose (`make sync`).
    """
    if every_hours <= 0:
        return False
    last = _read_cursor(store).get("*")
    return isinstance(last, int) and now_ms - last >= every_hours * 3_600_000


def _read_cursor(store: Store) -> dict[str, Any]:
    """Where each scope's last complete run began: `*` for every project, else a project key."""
    found = store.read_json(SYNC_CURSOR)
    return dict(found.data.get("scopes") or {}) if found else {}


def _report(job: dict[str, Any], listing: str, item: dict[str, Any]) -> None:
    if len(job[listing]) < jobs.MAX_REPORTED:
        job[listing].append(item)
    else:
        job[f"{listing}_omitted"] = int(job.get(f"{listing}_omitted") or 0) + 1
