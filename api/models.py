"""The read API's response and request models: what /docs shows, with examples."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.reconcile.jobs import JobView
from pipeline.records import CaptureRecord


class ErrorBody(BaseModel):
    error: str = Field(description="A short code a script can switch on.", examples=["issue_not_found"])
    detail: str = Field(
        description="One sentence a person can act on.", examples=["No issue OPS-99 has been captured."]
    )


class CheckResult(BaseModel):
    ok: bool
    detail: str


class Push(BaseModel):
    at: str = Field(description="When the committer last pushed (UTC).", examples=["2026-11-25T09:07:02Z"])
    tip: str | None = Field(description="The branch tip it pushed.", examples=["3f9a0c1e5b7d..."])


class PushError(BaseModel):
    at: str = Field(description="The last failed push attempt (UTC).", examples=["2026-11-25T09:12:40Z"])
    since: str = Field(description="The first failure of this run of failures.", examples=["2026-11-25T09:10:03Z"])
    error: str = Field(
        description="What failed, without credentials.", examples=["RemoteUnavailable: HTTPUnauthorized: ..."]
    )


class GitCheck(CheckResult):
    """Judged from the committer's record of its pushes, plus a read-only look at the remote where one is possible."""

    last_push: Push | None = None
    last_error: PushError | None = Field(default=None, description="The last failed push, even if pushes work again.")
    remote_tip: str | None = Field(default=None, description="The branch tip the read-only probe saw, if it could.")


class WebhookCheck(CheckResult):
    """Refused webhook deliveries; failing when every delivery of the last 15 minutes was refused."""

    refused_last_hour: dict[str, int] = Field(
        default_factory=dict,
        description="Refused deliveries by reason: `signature` (401), `size` (413), `shape` (400, 415).",
        examples=[{"signature": 12, "size": 0, "shape": 0}],
    )
    last_accepted_at: str | None = Field(
        default=None, description="About when the newest accepted delivery arrived (UTC, to the minute)."
    )


class SetAsideCheck(CheckResult):
    """Accepted events the writer could not interpret: raw copies kept in `raw/`, records in `index/unreadable/`;
    failing while any wait, like a dead-letter queue. `make redrive` queues them again."""

    count: int = Field(0, description="Events set aside (counted up to 1,000).")


class HealthChecks(BaseModel):
    model_config = ConfigDict(extra="allow")  # a check added later is reported before it is documented here

    storage: CheckResult
    queues: CheckResult
    dead_letters: CheckResult
    git: GitCheck
    webhook: WebhookCheck
    set_aside: SetAsideCheck


class Health(BaseModel):
    status: str = Field(description="`ok`, or `failing` (with 503) when any check fails.", examples=["ok"])
    checks: HealthChecks


class Unhealthy(Health):
    error: str = Field(examples=["unhealthy"])
    detail: str = Field(examples=["Failing checks: webhook."])


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
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same filters) for the next page; null when the listing is done. "
        "A filtered page may hold fewer than `limit` items, even none, and still carry one."
    )


class FieldChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    field: str = Field(examples=["status"])
    name: str = Field(
        description="The field's name in Jira's field catalogue; the `field` itself when the catalogue does not "
        "know it (or JSync has no catalogue, without Jira credentials).",
        examples=["Status"],
    )
    from_: str | None = Field(alias="from", serialization_alias="from", examples=["To Do"])
    to: str | None = Field(examples=["In Progress"])


class Actor(BaseModel):
    model_config = ConfigDict(extra="allow")

    accountId: str | None = None
    displayName: str | None = None


AttachmentState = Literal["stored", "skipped", "gone", "pending", "metadata_only"]
_STATES = (
    "`stored`: the content is in JSync (fetch it below); `skipped`: over the size limit, metadata only; `gone`: "
    "deleted in Jira before JSync copied it; `pending`: being copied; `metadata_only`: JSync has no Jira credentials."
)


class AttachmentNote(BaseModel):
    """What became of an attachment this version added."""

    id: str = Field(examples=["10231"])
    filename: str = Field(examples=["trace.log"])
    size: int | None = Field(description="Bytes.", examples=[48213])
    state: AttachmentState = Field(description=_STATES, examples=["stored"])
    reason: str | None = Field(description="Why it was not stored, if it was not.", examples=[None])


class HistoryItem(BaseModel):
    version: str = Field(examples=["1764000100456-b0e1c2d3"])
    event: str = Field(examples=["jira:issue_updated"])
    event_time: int = Field(description="Epoch milliseconds, from the webhook's timestamp.", examples=[1764000100456])
    actor: Actor | None
    changes: list[FieldChange]
    attachments: list[AttachmentNote] = Field(
        default_factory=list,
        description="Attachments this version added whose copy JSync has settled (stored, skipped or gone).",
    )


class Attachment(BaseModel):
    """One attachment of an issue: Jira's metadata and what JSync kept of it."""

    id: str = Field(examples=["10231"])
    filename: str = Field(examples=["trace.log"])
    size: int | None = Field(description="Bytes.", examples=[48213])
    mime_type: str = Field(examples=["text/plain"])
    state: AttachmentState = Field(description=_STATES, examples=["stored"])
    sha256: str | None = Field(
        description="Of the stored content.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    reason: str | None = Field(description="Why it was not stored, if it was not.", examples=[None])
    version: str | None = Field(
        description="The history version that first listed it.", examples=["1764000100456-b0e1c2d3"]
    )


class Attachments(BaseModel):
    items: list[Attachment]


class History(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None


class DiffChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    field: str = Field(
        description="The field's id in the issue document's `fields` (`key` for the issue's key, which a move "
        "changes).",
        examples=["status"],
    )
    name: str = Field(
        description="The field's name in Jira's field catalogue; the id when the catalogue does not know it.",
        examples=["Status"],
    )
    from_: Any = Field(
        alias="from",
        serialization_alias="from",
        description="The value at the `from` version, as JSON exactly as stored (not a string); null when absent.",
        examples=[{"name": "To Do", "id": "10000"}],
    )
    to: Any = Field(
        description="The value at the `to` version, as JSON exactly as stored; null when absent.",
        examples=[{"name": "In Progress", "id": "3"}],
    )


class IssueDiff(BaseModel):
    """The issue's fields that differ between two of its versions, by field id."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", serialization_alias="from", examples=["1764000000123-a1b2c3d4"])
    to: str = Field(examples=["1764000100456-b0e1c2d3"])
    changes: list[DiffChange] = Field(description="Sorted by field id; empty when the versions hold the same issue.")


class Snapshot(BaseModel):
    issue: IssueDocument | None
    capture: CaptureRecord = Field(description="How and when JSync took the event: the record as stored.")


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


# The job's one definition lives with the records it describes; the API serves its public part as it is.
SyncJob = JobView


class Timing(BaseModel):
    samples: int = Field(description="How many were recorded.", examples=[4])
    max: float = Field(description="The largest.", examples=[2140.0])
    last: float = Field(description="The latest.", examples=[310.0])


class MetricsReport(BaseModel):
    """What the functions counted in this process since it started: the local stack runs them all in the API's
    process. A metric with a dimension beyond the service is named `Name{dimension=value}`."""

    since: str = Field(
        description="When counting began: the local stack's start (UTC).", examples=["2026-11-25T09:00:00Z"]
    )
    counters: dict[str, dict[str, float]] = Field(
        description="Per function (its service name), each count's total.",
        examples=[
            {
                "jsync-ingest": {"EventsAccepted": 3, "EventsRefused{reason=signature}": 1},
                "jsync-writer": {"EventsCaptured": 3},
                "jsync-committer": {"ChangesCommitted": 3, "EventsPublished": 3},
            }
        ],
    )
    timings: dict[str, dict[str, Timing]] = Field(
        description="Per function, each duration in milliseconds (`CommitLagMs`: from a change's event time to its "
        "push, the slowest of each push).",
        examples=[{"jsync-committer": {"CommitLagMs": {"samples": 2, "max": 2140.0, "last": 310.0}}}],
    )


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


def json_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`errors` for a route whose own answer is not JSON: FastAPI would document its errors in the route's media
    type, so name the JSON error shape explicitly (ErrorBody is in the schema's components through the others)."""
    shape = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {s: {"description": entry["description"], "content": shape} for s, entry in errors(*statuses).items()}
