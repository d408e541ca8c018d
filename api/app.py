"""The FastAPI application: routes under /api/v1 and one error shape for every failure."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.routes import health
from pipeline.errors import JSyncError


def create_app() -> FastAPI:
    app = FastAPI(
        title="JSync",
        version="1",
        description="Every change to your Jira issues, as JSON snapshots in S3 and commits in git.",
    )
    app.include_router(health.router, prefix="/api/v1")

    @app.exception_handler(JSyncError)
    async def _jsync_error(_: Request, exc: JSyncError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such endpoint; see /docs for what JSync serves."
        return JSONResponse({"error": code, "detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"error": "invalid_request", "detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=400
        )

    return app


app = create_app()
