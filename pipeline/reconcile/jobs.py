"""Reconcile jobs as records in S3: created by the API or the schedule, advanced by the reconcile function, read back
by `GET /api/v1/sync/{job_id}`.

`JobRecord` is the job's one definition: what is stored, and (as `JobView`, its public part) what the API serves.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from pipeline.store import Store, job_key

TERMINAL = frozenset({"succeeded", "finished_with_errors", "failed"})
MAX_REPORTED = 200  # errors, deletions and hidden issues listed by name in a job; `*_omitted` counts the rest


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
class JobRecord(JobView):
    """The stored job: what readers see, and how far the work got, for the function that resumes it."""

    since_ms: int | None = None
    step: int = 0
    resume: dict[str, Any] = field(default_factory=dict)


_PUBLIC = tuple(f.name for f in fields(JobView))


def new_job(job_id: str, trigger: str, project: str | None, since_ms: int | None, now_ms: int) -> dict[str, Any]:
    now = iso(now_ms) or ""
    record = JobRecord(job_id, "queued", trigger, project, iso(since_ms), "queued", now, now, since_ms=since_ms)
    return asdict(record)


def create(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    """Record a new job; an existing record of the same id (a redelivered schedule message) is kept as it is."""
    return store.claim(job_key(job["job_id"]), job)


def load(store: Store, job_id: str) -> dict[str, Any] | None:
    found = store.read_json(job_key(job_id))
    return found.data if found else None


def save(store: Store, job: dict[str, Any]) -> None:
    # A `running` job whose updated_at stops moving is stuck (its step dead-lettered): readers can tell.
    job["updated_at"] = iso(int(time.time() * 1000))
    store.put_json(job_key(job["job_id"]), job)


def public(job: dict[str, Any]) -> dict[str, Any]:
    """What readers see: the record without its resume bookkeeping (a record saved before a field existed lacks it:
    the API's model gives its default)."""
    return {name: job[name] for name in _PUBLIC if name in job}
