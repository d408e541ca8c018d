"""A job's state machine: started (its search bounded by the cursor), stepped phase by phase until done or out of
time, then finished (moving the cursor) or failed; progress saved after each unit of work.

A job runs in steps (a Lambda lives 15 minutes): issues noted as pending (a refused webhook, an earlier failure),
then every issue updated since the cursor, then a census of each project's ids to find deletions. A step cut short
resumes from its last page; feeding a change twice is harmless, because the writer keeps one capture per changelog
entry whichever source brought it.

Jira requests: a search page brings its issues' documents whole (REST v2, every field: what a webhook carries), and
one `changelog/bulkfetch` their changelogs, so a page of 50 issues costs about two requests. An issue is read alone
(`GET issue`) only when the page cut one of its lists (comments, worklogs) shorter than GET issue gives it, or when
it is pending, or when the census misses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipeline import fields
from pipeline.attachments import AskCopies
from pipeline.reconcile import jobs
from pipeline.reconcile.failures import JobFailed
from pipeline.reconcile.feed import Feed, Outgoing
from pipeline.reconcile.issues import Issues
from pipeline.reconcile.jira import (
    JiraClient,
    JiraError,
    JiraRateLimited,
    lookback_bound,
    project_clause,
    updated_since_clause,
)
from pipeline.reconcile.jobs import JobRecord, Resume
from pipeline.reconcile.phases import Phases
from pipeline.store import SYNC_CURSOR, Store

log = logging.getLogger(__name__)


class Reconciler:
    """Compares Jira with what JSync holds and feeds what is missing; one per step of a job."""

    def __init__(
        self,
        store: Store,
        jira: JiraClient,
        send: Callable[[Outgoing], None],
        now_ms: Callable[[], int],
        lookback_minutes: int = 30,
        ask_copies: AskCopies | None = None,
    ) -> None:
        self.store = store
        self.jira = jira
        self.fields_changed = False  # this step saved a new field catalogue
        self.now_ms = now_ms
        self.lookback_minutes = lookback_minutes
        self.feed = Feed(send, now_ms)
        self.phases = Phases(store, jira, Issues(store, jira, self.feed, now_ms, ask_copies), self.feed)

    def run(self, job: JobRecord, out_of_time: Callable[[], bool]) -> bool:
        """Advance the job until it ends (True) or time runs out (False: carry on in another step)."""
        if job.state in jobs.TERMINAL:
            return True
        if job.state == "queued":
            self._start(job)
        else:
            job.message = None  # what stopped the last step (a rate limit, an outage) is over: we are running
        try:
            while job.phase != "done":
                self.phases.step(job, out_of_time)
                self._save(job)
                # Checked after a unit of work, so even a step started late makes progress.
                if job.phase != "done" and out_of_time():
                    return False
        except JobFailed as failed:
            self._finish(job, failed=str(failed))
            return True
        except JiraError as retry:  # only retryable ones get here: fatal_or_retry turned the rest into JobFailed
            if isinstance(retry, JiraRateLimited):
                job.message = f"Jira is rate limiting; the job resumes where it stopped. {retry.message}"
            else:
                job.message = f"Jira did not answer; the step is retried from where it stopped. {retry.message}"
            self._save(job)
            raise
        self._finish(job)
        return True

    def _start(self, job: JobRecord) -> None:
        """Fix the job's search: issues updated since `since`, or since the cursor less the lookback margin."""
        now = self.now_ms()
        bound = job.since_ms
        if bound is None:
            cursor = read_cursor(self.store)
            known = [cursor.get("*"), cursor.get(job.project) if job.project else None]
            last = max((c for c in known if isinstance(c, int)), default=None)
            bound = None if last is None else lookback_bound(last, self.lookback_minutes)
        clauses = [project_clause(job.project)] if job.project else []
        clauses.append(updated_since_clause(bound or 0))
        job.state, job.phase, job.started_at, job.message = "running", "pending", jobs.iso(now), None
        job.resume = Resume(started_ms=now, bound_ms=bound or 0, jql=" AND ".join(clauses) + " ORDER BY id ASC")
        self._refresh_fields()
        jobs.save(self.store, job)

    def _refresh_fields(self) -> None:
        """Keep Jira's field catalogue current, once a job. Names are for people: a failure here keeps the catalogue
        as it was and never stops the job."""
        try:
            catalogue = fields.catalogue_of(self.jira.fields())
        except JiraError as exc:
            log.warning("field catalogue not refreshed: %s", exc.message)
            return
        if catalogue and fields.save(self.store, catalogue):
            log.info("field catalogue changed: %d fields", len(catalogue))
            self.fields_changed = True

    def _finish(self, job: JobRecord, failed: str | None = None) -> None:
        now = self.now_ms()
        started = now if job.resume.started_ms is None else job.resume.started_ms
        job.phase, job.finished_at, job.elapsed_seconds = "done", jobs.iso(now), round((now - started) / 1000, 3)
        if failed:
            job.state, job.message = "failed", failed
        else:
            job.state = "finished_with_errors" if job.errors else "succeeded"
            if job.since_ms is None:
                # Issues that failed are pending now, so moving the cursor past them loses nothing.
                cursor = read_cursor(self.store)
                cursor[job.project or "*"] = started
                self.store.put_json(SYNC_CURSOR, {"scopes": cursor})
        self._save(job)

    def _save(self, job: JobRecord) -> None:
        """Record the job's progress, once what it fed up to there is on the queue."""
        self.feed.flush()
        jobs.save(self.store, job)


def scheduled_run_due(store: Store, every_hours: float, now_ms: int) -> bool:
    """Whether a scheduled run is due: `every_hours` since the last complete run of every project began.

    Never before a first complete run: a backfill of years is for someone to start on purpose (`make sync`).
    """
    if every_hours <= 0:
        return False
    last = read_cursor(store).get("*")
    return isinstance(last, int) and now_ms - last >= every_hours * 3_600_000


def read_cursor(store: Store) -> dict[str, Any]:
    """Where each scope's last complete run began: `*` for every project, else a project key."""
    found = store.read_json(SYNC_CURSOR)
    return dict(found.data.get("scopes") or {}) if found else {}
