"""GET /issues/{key_or_id}/timeline: an issue's history as an HTML page; POST signs a browser in with an API key."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import static
from api.auth import authorized, keys_configured, session_cookie, valid_key
from pipeline import reader, services, timeline
from pipeline.errors import JSyncError

router = APIRouter(include_in_schema=False)
_MAX_FORM = 4096  # bytes: a form holding one API key
_TITLES = {400: "Bad request", 401: "API key needed", 404: "Not found", 410: "Deleted", 503: "Unavailable"}


@router.get("/issues/{key_or_id}/timeline")
async def get_timeline(
    request: Request,
    key_or_id: str,
    limit: Annotated[str, Query(max_length=4)] = "50",
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    tz: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    nonce = secrets.token_urlsafe(16)
    if keys_configured() and not authorized(request):
        return _html(timeline.render_sign_in(key_or_id[:40], False, _favicon(), nonce), 401, nonce)
    try:
        view = await run_in_threadpool(_view, key_or_id, limit, cursor, tz, nonce)
    except JSyncError as exc:
        return _message(exc.status, exc.detail, nonce)
    return _html(timeline.render(view), 410 if view.gone else 200, nonce)


@router.post("/issues/{key_or_id}/timeline")
async def sign_in(request: Request, key_or_id: str) -> Response:
    nonce = secrets.token_urlsafe(16)
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return _message(403, "Sign in from JSync's own page.", nonce)
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not keys_configured():
        return RedirectResponse(back, 303, headers={"Cache-Control": "no-store"})  # nothing to sign in to
    body = await request.body()
    given = parse_qs(body[:_MAX_FORM].decode("utf-8", "replace")).get("api_key", [""])[0]
    if len(body) > _MAX_FORM or not valid_key(given):
        return _html(timeline.render_sign_in(key_or_id[:40], True, _favicon(), nonce), 401, nonce)
    # Back to the same page (and query) as a GET; the key stays in the cookie's digest, never in a URL.
    response = RedirectResponse(back, 303)
    response.headers["Set-Cookie"] = session_cookie(given, secure=request.url.scheme == "https")
    response.headers["Cache-Control"] = "no-store"
    return response


def _view(ref: str, limit: str, cursor: str | None, tz: str | None, nonce: str) -> timeline.Timeline:
    reader.check_issue_ref(ref)
    if not limit.isdigit() or not 1 <= int(limit) <= 200:
        raise JSyncError(400, "invalid_limit", "limit is a whole number from 1 to 200.")
    shown_in = timeline.zone(tz)
    page = reader.history(services.store(), ref, int(limit), cursor)
    key, summary, gone = None, None, None
    if page.latest is not None and page.latest.get("deleted"):
        gone = reader.deleted_detail(ref, page.latest)  # its history stays readable, its deletion the newest entry
    elif page.latest is not None and isinstance(page.latest.get("issue"), dict):
        document = page.latest["issue"] or {}
        key, summary = document.get("key"), (document.get("fields") or {}).get("summary")
    return timeline.Timeline(
        ref=ref,
        key=key if isinstance(key, str) else None,
        summary=summary if isinstance(summary, str) else None,
        items=page.items,
        older_href=timeline.older_href(page.next_cursor, int(limit), tz),
        zone=shown_in,
        gone=gone,
        favicon=_favicon(),
        nonce=nonce,
    )


def _favicon() -> str:
    return static.url("favicon.svg")


def _message(status: int, detail: str, nonce: str) -> HTMLResponse:
    return _html(timeline.render_message(_TITLES.get(status, "Error"), detail, _favicon(), nonce), status, nonce)


def _html(page: str, status: int, nonce: str) -> HTMLResponse:
    # Never cached: the page is per key, and CloudFront's cache key holds the key's header and cookie only.
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": timeline.content_security_policy(nonce),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    return HTMLResponse(page, status_code=status, headers=headers)
