"""A job's three phases, one unit of work per call: pending notes, the search, the census of each project's ids."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.reconcile.failures import fatal_or_retry, guarded
from pipeline.reconcile.feed import Feed
from pipeline.reconcile.issues import Issues
from pipeline.reconcile.jira import JiraClient, JiraError
from pipeline.reconcile.jobs import JobRecord
from pipeline.store import PENDING_PREFIX, Store, project_prefix

SEARCH_PAGE = 50  # a page (reads, rebuilds, sends) is one unit of work: it must fit well inside a step's margin
PENDING_BATCH = 25
# Every field, rendered by REST v2: each issue is what GET /rest/api/2/issue/{id} (no expand) gives, as webhooks carry.
_SEARCH_FIELDS = ["*all"]
_SEARCH_API = 2


class Phases:
    """Runs the unit of work the job's phase is at, and moves the job to the next phase when one is over."""

    def __init__(self, store: Store, jira: JiraClient, issues: Issues, feed: Feed) -> None:
        self.store = store
        self.jira = jira
        self.issues = issues
        self.feed = feed

    def step(self, job: JobRecord, out_of_time: Callable[[], bool]) -> None:
        if job.phase == "pending":
            self._pending(job, out_of_time)
        elif job.phase == "search":
            self._search(job)
        elif job.phase == "census":
            self._census(job, out_of_time)
        else:
            raise ValueError(f"a job in phase {job.phase!r} has no work to step through")

    def _pending(self, job: JobRecord, out_of_time: Callable[[], bool]) -> None:
        """Issues noted by a webhook too large to take, or by a read that failed in an earlier run."""
        resume = job.resume
        keys, _ = self.store.list_keys(PENDING_PREFIX, resume.pending_after, PENDING_BATCH)
        if not keys:
            job.phase = "search"
            return
        answered: list[str] = []
        for key in keys:
            issue_id = key[len(PENDING_PREFIX) :].removesuffix(".json")
            if self.issues.reconcile(job, issue_id):
                answered.append(key)
            resume.pending_after = key
            # The search would feed (and count) it again while the writer has yet to capture what we fed.
            resume.pending_done.append(issue_id)
            if out_of_time():
                break
        # A note goes only once what its issue fed is on the queue; if this step dies first, the next job reads it.
        self.feed.flush()
        for key in answered:
            self.store.delete(key)

    def _search(self, job: JobRecord) -> None:
        """One page of every issue updated since the job's bound."""
        resume = job.resume
        jql = resume.jql
        if job.issues_estimated is None and not resume.token:
            job.issues_estimated = guarded(lambda: self.jira.approximate_count(jql))
        issues, token = guarded(
            lambda: self.jira.search_page(jql, _SEARCH_FIELDS, SEARCH_PAGE, resume.token, api=_SEARCH_API)
        )
        job.pages_scanned += 1
        job.issues_scanned += len(issues)
        self.issues.page(job, issues)
        resume.token = token
        if token is None:
            job.phase = "census"

    def _census(self, job: JobRecord, out_of_time: Callable[[], bool]) -> None:
        """Each project's ids, to find the issues JSync lists that Jira no longer returns."""
        resume = job.resume
        if resume.projects is None:
            resume.projects = [job.project] if job.project else self.store.project_keys()
            resume.project_index = 0
        if resume.project_index >= len(resume.projects):
            job.phase = "done"
            return
        project = resume.projects[resume.project_index]
        vanished = resume.vanished
        if vanished is None:
            resume.vanished = vanished = self._vanished(project)
            if vanished:
                # The census is one unit and each read of what it lacks another: a deleted project lacks
                # thousands, more than one Lambda can read, and a unit that never ends never saves.
                return
        while vanished:
            self.issues.check_vanished(job, vanished.pop(0))
            if vanished and out_of_time():
                return
        resume.vanished = None
        resume.project_index += 1

    def _vanished(self, project: str) -> list[str]:
        """The issues JSync lists in the project that Jira's census of it lacks."""
        try:
            present = self.jira.census(project)
        except JiraError as exc:
            if exc.status != 400:
                raise fatal_or_retry(exc) from None
            # Jira refuses JQL naming a project that no longer exists: every issue we hold there is checked.
            present = set()
        prefix = project_prefix(project) + "issues/"
        held = {int(k[len(prefix) :].removesuffix(".json")) for k in self.store.all_keys(prefix)}
        return [str(i) for i in sorted(held) if str(i) not in present]
