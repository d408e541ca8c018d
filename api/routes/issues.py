"""Issues by key or id: the latest document, its history, any past version and what changed between two."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from api.models import Attachments, History, IssueDiff, IssueDocument, Snapshot, errors
from pipeline import reader, services
from pipeline.errors import JSyncError
from pipeline.ids import ISSUE_REF
from pipeline.settings import get_settings

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


@router.get(
    "/{key_or_id}/diff",
    response_model=IssueDiff,
    responses=errors(400, 401, 404),
    summary="The fields that differ between two versions of an issue",
    description="Compares the issue documents at two `version`s from its history: each field of `fields` (and the "
    "issue's `key`, which a move changes) whose value differs, sorted by field id, with both values as JSON exactly "
    "as stored (objects stay objects, not strings) and the field's name from Jira's field catalogue. A field absent "
    "at one version reads as null there. `from` newer than `to` is answered too (the same changes, reversed); the "
    "same version twice gives no changes. A version that is not the issue's is a 404; the deletion's version holds "
    "the issue as it was when deleted. Both parameters are required.",
)
async def get_diff(
    key_or_id: IssueRef,
    from_: Annotated[
        str,
        Query(
            alias="from",
            pattern=reader.VERSION.pattern,
            description="The version to compare from.",
            examples=["1764000000123-a1b2c3d4"],
        ),
    ],
    to: Annotated[
        str,
        Query(
            pattern=reader.VERSION.pattern,
            description="The version to compare to.",
            examples=["1764000100456-b0e1c2d3"],
        ),
    ],
) -> Any:
    return await run_in_threadpool(reader.diff, services.store(), key_or_id, from_, to)


@router.get(
    "/{key_or_id}/attachments",
    response_model=Attachments,
    responses=errors(400, 401, 404),
    summary="An issue's attachments and what JSync kept of each",
    description="Every attachment the issue lists (and any it listed before: a copy outlives its deletion in Jira), "
    "with Jira's metadata and the state of JSync's copy. With Jira credentials, JSync copies each new attachment's "
    "content once, up to `JSYNC_ATTACHMENT_MAX_BYTES` (100 MB by default); without them it keeps metadata only.",
)
async def get_attachments(key_or_id: IssueRef) -> Any:
    copying = get_settings().jira_configured
    views = await run_in_threadpool(reader.issue_attachments, services.store(), key_or_id, copying)
    return {"items": [asdict(v) for v in views]}


@router.get(
    "/{key_or_id}/attachments/{attachment_id}",
    response_class=Response,
    responses={
        200: {"description": "The content (local backend).", "content": {"application/octet-stream": {}}},
        307: {"description": "Deployed: a redirect to a presigned S3 URL, valid for 5 minutes."},
        **errors(400, 401, 404),
    },
    summary="One attachment's content",
    description="The bytes JSync copied from Jira, as a download (`Content-Disposition: attachment`). Deployed, a "
    "`307` to a presigned S3 URL valid for 5 minutes (a Lambda cannot answer more than 6 MB). A `404` says why "
    "there is no content: `attachment_not_found`, `attachment_pending` (being copied), `attachment_skipped` (over "
    "the size limit), `attachment_gone` (deleted in Jira first) or `attachment_metadata_only` (no Jira credentials).",
)
async def get_attachment(
    key_or_id: IssueRef,
    attachment_id: Annotated[
        str,
        Path(
            description="The attachment's id, from its issue's `attachments`.",
            pattern=reader.ATTACHMENT_ID.pattern,
            examples=["10231"],
        ),
    ],
) -> Response:
    copying = get_settings().jira_configured
    found = await run_in_threadpool(reader.stored_attachment, services.store(), key_or_id, attachment_id, copying)
    view, objects = found.view, services.objects()
    url = await run_in_threadpool(objects.presign, found.key, view.filename, view.mime_type, PRESIGNED_SECONDS)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "private, no-store"})
    stored = await run_in_threadpool(objects.get, found.key)
    if stored is None:
        raise JSyncError(404, "attachment_not_found", f"Attachment {attachment_id}'s content is missing from storage.")
    return Response(stored.body, media_type=view.mime_type, headers=download_headers(view.filename, view.sha256))


PRESIGNED_SECONDS = 300


def download_headers(filename: str, sha256: str | None) -> dict[str, str]:
    """Never rendered by the browser on JSync's own origin: an uploaded HTML file must not run next to the API."""
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}" if filename else "attachment",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, max-age=3600, immutable",
    }
    if sha256:
        headers["ETag"] = f'"{sha256[:32]}"'
    return headers
