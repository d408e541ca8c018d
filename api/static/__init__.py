"""Self-hosted assets (Swagger UI, ReDoc, the favicon): served from the package, cacheable for a year by content."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from pipeline.errors import JSyncError

_HERE = Path(__file__).resolve().parent
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# Only these are served: a name is looked up, never joined onto a path.
ASSETS = ("swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css", "redoc/redoc.standalone.js", "favicon.svg")
# The URL carries the content's digest, so a copy can be kept for a year: a new file is a new URL.
IMMUTABLE = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    digest: str


@cache
def asset(name: str) -> Asset:
    body = (_HERE / name).read_bytes()
    return Asset(body, _TYPES[Path(name).suffix], hashlib.sha256(body).hexdigest()[:16])


def url(name: str) -> str:
    """Where a page links an asset: `/assets/<digest>/<name>`."""
    return f"/assets/{asset(name).digest}/{name}"


@router.get("/assets/{digest}/{name:path}")
def get_asset(digest: str, name: str) -> Response:
    if name not in ASSETS:
        raise JSyncError(404, "not_found", "No such asset.")
    found = asset(name)
    # A page from an older deploy may ask for an older digest: answer with today's file, but not for a year.
    cache_control = IMMUTABLE if digest == found.digest else "no-cache"
    headers = {"Cache-Control": cache_control, "ETag": f'"{found.digest}"', "X-Content-Type-Options": "nosniff"}
    return Response(found.body, media_type=found.media_type, headers=headers)
