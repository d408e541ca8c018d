"""API keys: every call but health and docs carries `X-API-Key` when keys are configured."""

from __future__ import annotations

import hmac

from fastapi import Security
from fastapi.security import APIKeyHeader

from pipeline.errors import JSyncError
from pipeline.settings import get_settings

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of the keys in JSYNC_API_KEYS.")


def require_api_key(given: str | None = Security(_header)) -> None:
    keys = get_settings().api_keys
    if not keys:
        return
    # Compare with every key, always, so timing says nothing about which key or how much matched.
    supplied = (given or "").encode()
    matches = [hmac.compare_digest(supplied, key.encode()) for key in keys]
    if not given or not any(matches):
        raise JSyncError(401, "unauthorized", "Send a valid API key in the X-API-Key header.")
