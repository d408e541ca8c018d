"""Issues by key or id: the latest document, its history and any past version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.models import History, IssueDocument, Snapshot, errors
from pipeline import reader, services
from pipeline.ids import ISSUE_REF

router = APIRouter(prefix="/issues", tags=["issues"])
IssueRef = Annotated[
    str,
    Path(
        description="An issue key (current or old) like `OPS-17`, or the numeric id.",
        pattern=ISSUE_REF.pattern,
        examples=["OPS-17"],
    ),
]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page.")]
Cursor = Annotated[str | None, Query(description="`next_cursor` from the previous page.", max_length=2000)]
CACHE_CONTROL = "private, no-cache"  # always revalidate; a 304 costs two small S3 reads


@router.get(
    "/{key_or_id}",
    response_model=IssueDocument,
    responses={**errors(304, 400, 401, 404, 410)},
    summary="The latest state of an issue",
)
async def get_issue(key_or_id: IssueRef, if_none_match: Annotated[str | None, Header()] = None) -> Any:
    state = await run_in_threadpool(reader.latest_issue, services.store(), key_or_id)
    headers = {"ETag": state.etag, "Cache-Control": CACHE_CONTROL}
    if reader.etag_matches(if_none_match, state.etag):
        return Response(status_code=304, headers=headers)
    return JSONResponse(state.document, headers=headers)


@router.get(
    "/{key_or_id}/history",
    response_model=History,
    responses=errors(400, 401, 404),
    summary="Every captured event of an issue, newest first",
)
async def get_history(key_or_id: IssueRef, limit: Limit = 50, cursor: Cursor = None) -> Any:
    page = await run_in_threadpool(reader.history, services.store(), key_or_id, limit, cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get(
    "/{key_or_id}/history/{version}",
    response_model=Snapshot,
    responses=errors(400, 401, 404),
    summary="The issue as it was at one version (a snapshot)",
)
async def get_version(
    key_or_id: IssueRef,
    version: Annotated[str, Path(description="A `version` from the history.", pattern=reader.VERSION.pattern)],
) -> Any:
    return await run_in_threadpool(reader.version, services.store(), key_or_id, version)
