"""Projects captured, with issue counts, and each project's issues page by page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool

from api.models import IssueList, ProjectList, errors
from pipeline import reader, services
from pipeline.ids import PROJECT_KEY

router = APIRouter(prefix="/projects", tags=["projects"])


@router.get("", response_model=ProjectList, responses=errors(401), summary="Projects captured, with issue counts")
async def list_projects() -> Any:
    return {"items": await run_in_threadpool(reader.projects, services.store())}


@router.get(
    "/{project}/issues",
    response_model=IssueList,
    responses=errors(400, 401),
    summary="A project's issues, in id order, page by page",
)
async def list_issues(
    project: Annotated[str, Path(description="A project key like `OPS`.", pattern=PROJECT_KEY.pattern)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Any:
    page = await run_in_threadpool(reader.project_issues, services.store(), project, limit, cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}
