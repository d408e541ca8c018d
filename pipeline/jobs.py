"""Reconcile jobs as records in S3: created by the API or the schedule, advanced by the reconcile function, read back
by `GET /api/v1/sync/{job_id}`."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from pipeline.store import Store, job_key

TERMINAL = frozenset({"succeeded", "finished_with_errors", "failed"})
_INTERNAL = ("resume", "step")  # how far the work got: for the function that resumes it, not for readers


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job_id(now_ms: int, prefix: str = "sync") -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ms / 1000))
    return f"{prefix}-{stamp}-{secrets.token_hex(4)}"


def new_job(job_id: str, trigger: str, project: str | None, since_ms: int | None, now_ms: int) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "state": "queued",
        "trigger": trigger,
        "project": project,
        "since": iso(since_ms),
        "since_ms": since_ms,
        "phase": "queued",
        "requested_at": iso(now_ms),
        "updated_at": iso(now_ms),
        "started_at": None,
        "finished_at": None,
        "elapsed_seconds": None,
        "pages_scanned": 0,
        "issues_scanned": 0,
        "issues_estimated": None,
        "issues_changed": 0,
        "changes_fed": 0,
        "deletes_found": 0,
        "not_visible": [],
        "deleted": [],
        "errors": [],
        "message": None,
        "step": 0,
        "resume": {},
    }


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
    """What readers see: the record without its resume bookkeeping."""
    return {k: v for k, v in job.items() if k not in _INTERNAL and k != "since_ms"}
