"""GET /api/v1/metrics: the counts the functions report, as the local stack's process tallied them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.models import ErrorBody, MetricsReport, errors
from pipeline import metrics
from pipeline.errors import JSyncError
from pipeline.settings import get_settings

router = APIRouter(tags=["metrics"])
_ELSEWHERE = (
    "Deployed, each function reports its metrics to CloudWatch (namespace JSync, dimension service); "
    "this endpoint serves the local stack's, which runs every function in one process."
)


@router.get(
    "/metrics",
    response_model=MetricsReport,
    responses={
        **errors(401),
        404: {"model": ErrorBody, "description": "Deployed: the metrics are in CloudWatch, not here."},
    },
    summary="What ingest, writer, committer and reconcile counted since the local stack started",
    description="The same metrics the deployed functions write to CloudWatch (embedded metric format, namespace "
    "`JSync`): `EventsAccepted`, `EventsRefused` (by `reason`), `EventsCaptured`, `ChangesCommitted`, "
    "`CommitLagMs`, `EventsPublished`, `EventsPublishFailed`, `ReconcileIssues`. Kept in memory: a restart "
    "starts them again from zero.",
)
async def get_metrics() -> Any:
    if get_settings().on_lambda:
        raise JSyncError(404, "metrics_in_cloudwatch", _ELSEWHERE)
    return metrics.tally.snapshot()
