"""The read API's response and request models: what /docs shows, with examples."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    error: str = Field(description="A short code a script can switch on.", examples=["issue_not_found"])
    detail: str = Field(
        description="One sentence a person can act on.", examples=["No issue OPS-99 has been captured."]
    )


class CheckResult(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    checks: dict[str, CheckResult]


class Unhealthy(Health):
    error: str = Field(examples=["unhealthy"])
    detail: str = Field(examples=["Failing checks: git."])


class IssueDocument(BaseModel):
    """The issue as Jira sent it, less viewer-relative fields: the same JSON git holds."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": "10042",
                    "key": "OPS-17",
                    "self": "https://example.atlassian.net/rest/api/2/issue/10042",
                    "fields": {"summary": "Rotate certificates", "status": {"name": "In Progress"}},
                }
            ]
        },
    )

    id: str | int | None = None
    key: str | None = None
    fields: dict[str, Any] | None = None


class ProjectSummary(BaseModel):
    key: str = Field(examples=["OPS"])
    name: str | None = Field(default=None, examples=["Operations"])
    issue_count: int = Field(examples=[42])


class ProjectList(BaseModel):
    items: list[ProjectSummary]


class IssueListItem(BaseModel):
    key: str | None = Field(examples=["OPS-17"])
    id: str = Field(examples=["10042"])
    summary: str | None = Field(examples=["Rotate certificates"])
    status: str | None = Field(examples=["In Progress"])
    updated: str | None = Field(examples=["2026-11-24T13:20:00.118+0000"])


class IssueList(BaseModel):
    items: list[IssueListItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class FieldChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    field: str = Field(examples=["status"])
    from_: str | None = Field(alias="from", serialization_alias="from", examples=["To Do"])
    to: str | None = Field(examples=["In Progress"])


class Actor(BaseModel):
    model_config = ConfigDict(extra="allow")

    accountId: str | None = None
    displayName: str | None = None


class HistoryItem(BaseModel):
    version: str = Field(examples=["1764000100456-b0e1c2d3"])
    event: str = Field(examples=["jira:issue_updated"])
    event_time: int = Field(description="Epoch milliseconds, from the webhook's timestamp.", examples=[1764000100456])
    actor: Actor | None
    changes: list[FieldChange]


class History(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None


class Capture(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_id: str
    event_type: str
    event_time: int
    captured_at: int
    actor: Actor | None
    source: str


class Snapshot(BaseModel):
    issue: IssueDocument | None
    capture: Capture


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: str | None = Field(
        default=None,
        description="Reconcile one project (its key); null for every project Jira shows and JSync holds.",
        examples=["OPS"],
        max_length=255,
    )
    since: str | None = Field(
        default=None,
        description="ISO-8601 with a time zone: reconcile issues updated since then. Null: since the last "
        "successful run (minus a lookback), or everything on the first run.",
        examples=["2026-11-01T00:00:00Z"],
        max_length=64,
    )


class SyncAccepted(BaseModel):
    job_id: str = Field(examples=["sync-20261125T101500Z-1a2b3c4d"])
    state: str = Field(examples=["queued"])


class SyncIssue(BaseModel):
    id: str
    key: str | None


class SyncIssueError(BaseModel):
    issue_id: str | None
    status: int = Field(description="Jira's HTTP status (0: not reached).")
    message: str


class SyncJob(BaseModel):
    """A reconcile job's state and progress; counts grow while it runs."""

    job_id: str
    state: str = Field(description="queued, running, succeeded, finished_with_errors or failed.")
    trigger: str = Field(description="api or schedule.")
    project: str | None
    since: str | None
    phase: str = Field(description="queued, pending, search, census or done.")
    requested_at: str
    updated_at: str = Field(
        description="When the job last saved progress: a running job that stops updating is stuck (see the runbook)."
    )
    started_at: str | None
    finished_at: str | None
    elapsed_seconds: float | None
    pages_scanned: int
    issues_scanned: int
    issues_estimated: int | None = Field(description="Jira's approximate count of issues to scan, when known.")
    issues_changed: int = Field(description="Issues for which changes were fed.")
    changes_fed: int = Field(description="Changes put on the events queue, each captured like a webhook.")
    deletes_found: int
    deleted: list[SyncIssue] = Field(description="Issues Jira answers 404 for: recorded as deleted.")
    not_visible: list[SyncIssue] = Field(description="Issues Jira answers 403 for: left untouched.")
    errors: list[SyncIssueError]
    message: str | None = Field(description="Why the job failed, or what it waits for.")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer, all in the one error shape."""
    meaning = {
        304: "Not modified: the `If-None-Match` tag matches; the `ETag` is repeated.",
        400: "The request is malformed (path, query or cursor); `detail` says what.",
        401: "`X-API-Key` is missing or wrong.",
        404: "Nothing captured under that name.",
        410: "The issue was deleted in Jira; `detail` says when and by whom.",
        503: "A dependency is unavailable.",
    }
    return {
        s: ({"description": meaning[s]} if s == 304 else {"model": ErrorBody, "description": meaning[s]})
        for s in statuses
    }
