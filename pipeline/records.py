"""The shapes of what the writer stores per event and per issue: a snapshot (`snapshots/`) and an issue's latest
state (`latest/`), one definition each, read by the writer, the read API, the indexes and reconcile.

TypedDicts, not classes: these are the JSON objects as stored (and as data-lake readers see them), passed along
without copying; older records lack the keys marked NotRequired. The read API's response models use them as they
are, so what it serves and what is stored cannot drift.
"""

from __future__ import annotations

from typing import Any, NotRequired, cast

# pydantic validates a TypedDict only from typing_extensions before Python 3.12 (it ships with pydantic; ingest,
# which has no pydantic, never imports this module).
from typing_extensions import TypedDict


class CaptureRecord(TypedDict):
    """How and when JSync took one event (a snapshot's `capture`, served by the API as it is)."""

    event_id: str
    event_type: str  # Jira's webhookEvent, e.g. jira:issue_updated
    event_time: int  # the payload's timestamp, epoch ms
    captured_at: int  # when the writer stored it, epoch ms
    received_at: int  # when ingest accepted it, epoch ms
    actor: dict[str, Any] | None  # who made the change, as Jira names them
    changelog: dict[str, Any] | None  # the payload's changelog, as sent
    changes: list[dict[str, Any]]  # {"field", "from", "to"} per changed field
    order: list[Any]  # ids.Order.as_list(): where the event stands among its issue's events
    source: str  # webhook or reconcile
    deleted: bool


class SnapshotRecord(TypedDict):
    """One captured version of an issue: `snapshots/<issue id>/<event time>-<event id>.json`."""

    issue: dict[str, Any] | None  # the issue document after the event (for a deletion: as it was)
    capture: CaptureRecord


class LatestState(TypedDict):
    """An issue's newest state: `latest/<issue id>.json`, replaced only by a compare-and-swap on its ETag."""

    issue: dict[str, Any] | None
    capture: CaptureRecord  # the capture of the snapshot it names
    # Where latest/ stands; above the capture's own order when a late deletion or a fill-in moved it.
    order: NotRequired[list[Any]]
    partial: NotRequired[bool]  # built from a comment's cut-down issue: the first full issue event fills it in
    snapshot_key: str
    deleted: bool
    previous_key: NotRequired[str | None]  # the key before this event (a move names the old key)
    previous_project: NotRequired[str | None]
    entries: NotRequired[dict[str, str]]  # changelog entries captured: entry id or `created` -> short event id
    not_in_history: NotRequired[list[str]]  # short ids of snapshots that are not versions in the history
    deleted_at: NotRequired[int]
    deleted_by: NotRequired[dict[str, Any] | None]


def as_latest(data: dict[str, Any]) -> LatestState:
    """A latest/ object as read from the store (written by this or an earlier version of the writer)."""
    return cast(LatestState, data)


def as_snapshot(data: dict[str, Any]) -> SnapshotRecord:
    return cast(SnapshotRecord, data)
