"""Reconcile jobs as records in S3: created by the API or the schedule, advanced by the reconcile function, read back
by `GET /api/v1/sync/{job_id}`.

`JobRecord` is the job's one definition: what is stored, and (as `JobView`, its public part) what the API serves.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar, overload

from pipeline.jiratime import iso_ms
from pipeline.store import Store, job_key

TERMINAL = frozenset({"succeeded", "finished_with_errors", "failed"})
MAX_REPORTED = 200  # errors, deletions and hidden issues listed by name in a job; `*_omitted` counts the rest

_Item = TypeVar("_Item")


@overload
def iso(ms: int) -> str: ...
@overload
def iso(ms: None) -> None: ...
@overload
def iso(ms: int | None) -> str | None: ...
def iso(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)


def new_job_id(now_ms: int, prefix: str = "sync") -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ms / 1000))
    return f"{prefix}-{stamp}-{secrets.token_hex(4)}"


# Stdlib dataclasses, not pydantic models: the reconcile Lambda loads this module and ships no pydantic. The API
# serves `JobView` as its response model; pydantic reads the attribute docstrings below as field descriptions.
_DOCUMENTED = {"use_attribute_docstrings": True}


@dataclass
class SyncIssue:
    __pydantic_config__ = _DOCUMENTED

    id: str
    key: str | None


@dataclass
class SyncIssueError:
    __pydantic_config__ = _DOCUMENTED

    issue_id: str | None
    status: int
    """Jira's HTTP status (0: not reached)."""
    message: str


@dataclass
class JobView:
    """A reconcile job's state and progress; counts grow while it runs."""

    __pydantic_config__ = _DOCUMENTED

    job_id: str
    state: str
    """queued, running, succeeded, finished_with_errors or failed."""
    trigger: str
    """api or schedule."""
    project: str | None
    since: str | None
    phase: str
    """queued, pending, search, census or done."""
    requested_at: str
    updated_at: str
    """When the job last saved progress: a running job that stops updating is stuck (see the runbook)."""
    started_at: str | None = None
    finished_at: str | None = None
    elapsed_seconds: float | None = None
    pages_scanned: int = 0
    issues_scanned: int = 0
    issues_estimated: int | None = None
    """Jira's approximate count of issues to scan, when known."""
    issues_changed: int = 0
    """Issues for which changes were fed."""
    changes_fed: int = 0
    """Changes put on the events queue, each captured like a webhook."""
    deletes_found: int = 0
    deleted: list[SyncIssue] = field(default_factory=list)
    """Issues Jira answers 404 for: recorded as deleted (the first 200)."""
    deleted_omitted: int = 0
    """Deleted issues found beyond those listed."""
    not_visible: list[SyncIssue] = field(default_factory=list)
    """Issues Jira answers 403 for: left untouched (the first 200)."""
    not_visible_omitted: int = 0
    """Issues not visible beyond those listed."""
    errors: list[SyncIssueError] = field(default_factory=list)
    """Issues that could not be read (the first 200)."""
    errors_omitted: int = 0
    """Errors beyond those listed."""
    message: str | None = None
    """Why the job failed, or what it waits for."""


@dataclass
class Resume:
    """How far a job got, for the step that carries it on: stored as the record's `resume`."""

    started_ms: int | None = None
    """When the job started: the cursor a success leaves, and the date of a deletion it finds."""
    bound_ms: int = 0
    """The search's lower bound (epoch ms), fixed when the job starts."""
    jql: str = ""
    """The search, fixed when the job starts."""
    token: str | None = None
    """The next search page's token (valid for days); None for the first page, and after the last."""
    pending_after: str | None = None
    """The last pending note read."""
    pending_done: list[str] = field(default_factory=list)
    """Pending issues already reconciled: the search skips them, their changes may not be captured yet."""
    projects: list[str] | None = None
    """The projects the census covers, fixed when it begins."""
    project_index: int = 0
    """Which of `projects` the census is at."""
    vanished: list[str] | None = None
    """Issues the census of the current project lacks, still to read; None until that census is taken."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resume:
        """A stored resume, whatever keys it holds: a job saves a key once it gets that far, so older ones lack some."""
        return cls(**{name: data[name] for name in _RESUME_KEYS if data.get(name) is not None})

    def to_json(self) -> dict[str, Any]:
        # A key the job has not reached is left out, as jobs saved it before this class: a record means the same to
        # the code before it. `token` is always there: None is the first page, or the search is over.
        return {name: value for name, value in asdict(self).items() if value is not None or name == "token"}


_RESUME_KEYS = tuple(f.name for f in fields(Resume))


@dataclass
class JobRecord(JobView):
    """The stored job: what readers see, and how far the work got, for the function that resumes it."""

    since_ms: int | None = None
    step: int = 0
    resume: Resume = field(default_factory=Resume)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        """A stored job; a field it was saved without (it did not exist then) takes its default."""
        known: dict[str, Any] = {name: data[name] for name in _RECORD_KEYS if name in data}
        known["deleted"] = [SyncIssue(**item) for item in known.get("deleted") or []]
        known["not_visible"] = [SyncIssue(**item) for item in known.get("not_visible") or []]
        known["errors"] = [SyncIssueError(**item) for item in known.get("errors") or []]
        known["resume"] = Resume.from_json(known.get("resume") or {})
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "resume": self.resume.to_json()}

    def report_deleted(self, issue: SyncIssue) -> None:
        """Count a deletion once: one job can find it twice (pending, then census) before the writer captures it."""
        if any(item.id == issue.id for item in self.deleted):
            return
        self.deletes_found += 1
        self.deleted_omitted += _listed(self.deleted, issue)

    def report_not_visible(self, issue: SyncIssue) -> None:
        if not any(item.id == issue.id for item in self.not_visible):
            self.not_visible_omitted += _listed(self.not_visible, issue)

    def report_error(self, error: SyncIssueError) -> None:
        self.errors_omitted += _listed(self.errors, error)


_RECORD_KEYS = tuple(f.name for f in fields(JobRecord))
_PUBLIC = tuple(f.name for f in fields(JobView))


def _listed(items: list[_Item], item: _Item) -> int:
    """List the item while there is room (0); past MAX_REPORTED count it instead (1), so a record stays small."""
    if len(items) < MAX_REPORTED:
        items.append(item)
        return 0
    return 1


def new_job(job_id: str, trigger: str, project: str | None, since_ms: int | None, now_ms: int) -> JobRecord:
    now = iso(now_ms)
    return JobRecord(job_id, "queued", trigger, project, iso(since_ms), "queued", now, now, since_ms=since_ms)


def create(store: Store, job: JobRecord) -> JobRecord:
    """Record a new job; an existing record of the same id (a redelivered schedule message) is kept as it is."""
    return JobRecord.from_json(store.claim(job_key(job.job_id), job.to_json()))


def load(store: Store, job_id: str) -> JobRecord | None:
    found = store.read_json(job_key(job_id))
    return JobRecord.from_json(found.data) if found else None


def save(store: Store, job: JobRecord) -> None:
    # A `running` job whose updated_at stops moving is stuck (its step dead-lettered): readers can tell.
    job.updated_at = iso(int(time.time() * 1000))
    store.put_json(job_key(job.job_id), job.to_json())


def public(job: JobRecord) -> JobView:
    """What readers see: the record without its resume bookkeeping."""
    return JobView(**{name: getattr(job, name) for name in _PUBLIC})
