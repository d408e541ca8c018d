"""GET /api/v1/health: can JSync take and keep changes right now?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.models import Health, Unhealthy
from pipeline import services
from pipeline.health import run_checks
from pipeline.settings import get_settings

router = APIRouter(tags=["health"])


def _git_tip() -> Any:
    from pipeline.gitstore import remote_tip

    s = get_settings()
    return remote_tip(s.git_remote, s.git_branch, s.git_token)


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Unhealthy, "description": "A check failed; `detail` names it."}},
    summary="Health of storage, queues, dead letters and the git remote",
)
async def health() -> Any:
    checks = await run_in_threadpool(run_checks, get_settings(), services.aws("s3"), services.aws("sqs"), _git_tip)
    body: dict[str, Any] = {"status": "ok", "checks": {k: v.as_dict() for k, v in checks.items()}}
    failing = [name for name, c in checks.items() if not c.ok]
    if failing:
        body.update(status="failing", error="unhealthy", detail=f"Failing checks: {', '.join(failing)}.")
        return JSONResponse(body, status_code=503)
    return body
