"""Projects captured, with issue counts, each project's issues page by page (filtered if asked), and its export."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.models import IssueList, ProjectList, errors, json_errors
from pipeline import reader, services
from pipeline.ids import PROJECT_KEY

router = APIRouter(prefix="/projects", tags=["projects"])
Project = Annotated[str, Path(description="A project key like `OPS`.", pattern=PROJECT_KEY.pattern)]
NDJSON = "application/x-ndjson"


class NDJSONResponse(StreamingResponse):
    media_type = NDJSON


@router.get("", response_model=ProjectList, responses=errors(401), summary="Projects captured, with issue counts")
async def list_projects() -> Any:
    return {"items": await run_in_threadpool(reader.projects, services.store())}


@router.get(
    "/{project}/issues",
    response_model=IssueList,
    responses=errors(400, 401),
    summary="A project's issues, in id order, page by page, optionally filtered",
    description="Filters combine (an issue must match each one given) and page like the plain listing. A filtered "
    f"request reads at most {reader.FILTER_SCAN} of the project's issues, matching or not: a page can hold fewer "
    "than `limit` items, even none, and still carry a `next_cursor`; follow it until it is null. Pass the same "
    "filters with the cursor.",
)
async def list_issues(
    project: Project,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    status: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="The status name, in any case.", examples=["In Progress"]),
    ] = None,
    assignee: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="The assignee's accountId (exactly), or display name in any case.",
            examples=["Grace Example"],
        ),
    ] = None,
    updated_since: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="ISO-8601 with a time zone: issues whose `updated` is at or after it.",
            examples=["2026-11-01T00:00:00Z"],
        ),
    ] = None,
) -> Any:
    where = reader.issue_filter(status, assignee, updated_since)
    page = await run_in_threadpool(reader.project_issues, services.store(), project, limit, cursor, where)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get(
    "/{project}/export",
    response_class=NDJSONResponse,
    responses={
        200: {
            "description": "One line per live issue of the project, in id order: its latest document as JSON with "
            "sorted keys (deleted issues and issues moved away are left out).",
            "content": {
                NDJSON: {
                    "schema": {"type": "string"},
                    "example": '{"fields":{"summary":"Rotate certificates"},"id":"10042","key":"OPS-17"}\n'
                    '{"fields":{"summary":"Audit service accounts"},"id":"10050","key":"OPS-18"}\n',
                }
            },
        },
        **json_errors(400, 401, 404),
    },
    summary="Every issue of a project, its latest document, as NDJSON",
    description="Streamed as it is read, a hundred issues at a time. A project none of whose issues was ever "
    "captured is a 404; one whose issues all left or were deleted answers an empty body.",
)
async def export_issues(project: Project) -> NDJSONResponse:
    store = services.store()
    await run_in_threadpool(reader.check_project_known, store, project)
    return NDJSONResponse(reader.export(store, project), media_type=NDJSON)
