"""GET /api/v1/health: can JSync take and keep changes right now?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.models import Health, Unhealthy
from pipeline import services
from pipeline.health import GitProbe, run_checks
from pipeline.settings import get_settings

router = APIRouter(tags=["health"])


def _git_probe() -> GitProbe:
    # Read-only and without the git token: the API holds no credential that could push.
    from pipeline.git.store import is_local_remote, probe_tip

    s = get_settings()
    return GitProbe(lambda: probe_tip(s.git_remote, s.git_branch), decisive=is_local_remote(s.git_remote))


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Unhealthy, "description": "A check failed; `detail` names it."}},
    summary="Health of storage, queues, dead letters, git and webhook deliveries",
)
async def health() -> Any:
    checks = await run_in_threadpool(run_checks, get_settings(), services.queue_bus(), services.store(), _git_probe())
    body: dict[str, Any] = {"status": "ok", "checks": {k: v.as_dict() for k, v in checks.items()}}
    failing = [name for name, c in checks.items() if not c.ok]
    if failing:
        body.update(status="failing", error="unhealthy", detail=f"Failing checks: {', '.join(failing)}.")
        return JSONResponse(body, status_code=503)
    return body
