"""API keys: every call but health and docs carries `X-API-Key` when keys are configured.

A browser cannot send a header when it follows a link, so the HTML pages (the timeline) take the key once in a
form and set the `jsync_session` cookie: HttpOnly, SameSite=Strict, Secure over https, holding a digest of the key,
never the key. The cookie answers for GETs only (the timeline and the JSON it links to); anything that changes
state still needs the header.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from pipeline.errors import JSyncError
from pipeline.settings import get_settings

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of the keys in JSYNC_API_KEYS.")
SESSION_COOKIE = "jsync_session"
SESSION_SECONDS = 8 * 3600
_SAFE_METHODS = ("GET", "HEAD")


def keys_configured() -> bool:
    return bool(get_settings().api_keys)


def _matches_any(supplied: bytes, candidates: list[bytes]) -> bool:
    # Compare with every candidate, always, so timing says nothing about which one or how much matched.
    matches = [hmac.compare_digest(supplied, candidate) for candidate in candidates]
    return bool(supplied) and any(matches)


def _session_of(key: str) -> str:
    """The cookie's value for a key: a digest, so a cookie lifted from a browser is not the key itself."""
    return hashlib.sha256(b"jsync-session\0" + key.encode()).hexdigest()


def valid_key(given: str | None) -> bool:
    keys = get_settings().api_keys
    return not keys or _matches_any((given or "").encode(), [key.encode() for key in keys])


def valid_session(cookie: str | None) -> bool:
    keys = get_settings().api_keys
    return not keys or _matches_any((cookie or "").encode(), [_session_of(key).encode() for key in keys])


def session_cookie(key: str, secure: bool) -> str:
    """The Set-Cookie value that signs a browser in with `key` (already checked by `valid_key`)."""
    flags = "; Secure" if secure else ""
    return f"{SESSION_COOKIE}={_session_of(key)}; Max-Age={SESSION_SECONDS}; Path=/; HttpOnly; SameSite=Strict{flags}"


def authorized(request: Request) -> bool:
    """The header's key, or on a GET the session cookie."""
    if valid_key(request.headers.get("x-api-key")):
        return True
    return request.method in _SAFE_METHODS and valid_session(request.cookies.get(SESSION_COOKIE))


def require_api_key(request: Request, _: str | None = Security(_header)) -> None:
    """The API's dependency; the header parameter puts the key in the OpenAPI schema."""
    if not authorized(request):
        raise JSyncError(401, "unauthorized", "Send a valid API key in the X-API-Key header.")
