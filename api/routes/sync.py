"""Reconcile with Jira's REST API: in the schema now, built in issue #7."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.models import SyncAccepted, SyncJob, SyncRequest, errors
from pipeline.errors import JSyncError

router = APIRouter(prefix="/sync", tags=["sync"])
_NOT_YET = "Reconcile with Jira's REST API is not built yet; webhooks are captured as they arrive."


@router.post(
    "", status_code=202, response_model=SyncAccepted, responses=errors(400, 401, 501), summary="Start a reconcile"
)
async def start_sync(request: SyncRequest | None = None) -> Any:
    raise JSyncError(501, "not_implemented", _NOT_YET)


@router.get(
    "/{job_id}", response_model=SyncJob, responses=errors(400, 401, 404, 501), summary="A reconcile job's progress"
)
async def get_sync(job_id: Annotated[str, Path(max_length=100)]) -> Any:
    raise JSyncError(501, "not_implemented", _NOT_YET)
