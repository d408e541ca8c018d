"""The FastAPI application: routes under /api/v1, the docs and timeline pages, one error shape for every failure."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import static
from api.auth import require_api_key
from api.routes import health, issues, metrics, projects, sync, timeline
from pipeline.errors import JSyncError
from pipeline.settings import SecretUnavailable

log = logging.getLogger(__name__)


def create_app() -> FastAPI:
    app = FastAPI(
        title="JSync",
        version="1",
        description="Every change to your Jira issues, as JSON snapshots in S3 and commits in git.",
        # Behind CloudFront the Host is the Function URL's: a slash redirect would send clients past CloudFront.
        redirect_slashes=False,
        # Served below from JSync's own assets: the CDN FastAPI would load them from is not always reachable.
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(health.router, prefix="/api/v1")
    for private in (issues.router, projects.router, sync.router, metrics.router):
        app.include_router(private, prefix="/api/v1", dependencies=[Depends(require_api_key)])
    app.include_router(static.router)
    app.include_router(timeline.router)  # checks the key itself: it answers a browser with a sign-in form

    @app.get("/docs", include_in_schema=False)
    async def _swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=static.url("swagger-ui/swagger-ui-bundle.js"),
            swagger_css_url=static.url("swagger-ui/swagger-ui.css"),
            swagger_favicon_url=static.url("favicon.svg"),
            swagger_ui_parameters={"validatorUrl": None},  # else it sends the schema to validator.swagger.io
        )
        return _docs_page(page, "")

    @app.get("/redoc", include_in_schema=False)
    async def _redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=static.url("redoc/redoc.standalone.js"),
            redoc_favicon_url=static.url("favicon.svg"),
            with_google_fonts=False,
        )
        return _docs_page(page, " worker-src 'self' blob:;")

    @app.exception_handler(JSyncError)
    async def _jsync_error(_: Request, exc: JSyncError) -> JSONResponse:
        return _error(exc.body(), exc.status)

    @app.exception_handler(SecretUnavailable)
    async def _secret_missing(_: Request, exc: SecretUnavailable) -> JSONResponse:
        return _error({"error": "misconfigured", "detail": str(exc)}, 503)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        detail = "Something went wrong on our side; it is logged. Retry, and tell the operators if it persists."
        return _error({"error": "internal_error", "detail": detail}, 500)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such endpoint; see /docs for what JSync serves."
        if exc.status_code == 405 and exc.headers and "Allow" in exc.headers:
            detail = f"This endpoint answers {exc.headers['Allow']} only."
        return _error({"error": code, "detail": detail}, exc.status_code, exc.headers)

    @app.exception_handler(BotoCoreError)
    @app.exception_handler(ClientError)
    @app.exception_handler(sqlite3.Error)
    async def _storage_down(_: Request, exc: Exception) -> JSONResponse:
        body = {"error": "storage_unavailable", "detail": "Storage is unavailable right now; retry shortly."}
        return _error(body, 503, {"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error({"error": "invalid_request", "detail": f"{where}: {first.get('msg', 'invalid')}"}, 400)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _error(body: dict[str, str], status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    # Errors are never cached (CloudFront would otherwise keep a 404 or 503 for its default TTL).
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "Cache-Control": "no-store"})


def _docs_page(page: HTMLResponse, extra: str) -> HTMLResponse:
    # Nothing but JSync itself: ReDoc's footer logo from its CDN is refused before it leaves the browser.
    policy = (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none';{extra}"
    )
    page.headers["Content-Security-Policy"] = policy.rstrip(";")
    page.headers["Cache-Control"] = "no-cache"  # asset digests change with a deploy
    return page


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents 422 for validation errors; JSync answers 400 in its own error shape, so say that."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema


app = create_app()
