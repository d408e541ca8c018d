"""One ASGI app on one port: POST /webhook as a Function URL v2 event to functions.ingest, the rest to the API."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from functions import ingest


async def function_url_event(request: Request) -> dict[str, Any]:
    """The event Lambda builds for a Function URL request (payload format 2.0)."""
    body = await request.body()
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.url.path,
        "rawQueryString": request.url.query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": request.method,
                "path": request.url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.client.host if request.client else "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


class FrontDoor:
    """Routes /webhook to the ingest handler exactly as a Function URL would, everything else to `api`."""

    def __init__(self, api: ASGIApp) -> None:
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != "/webhook":
            await self.api(scope, receive, send)
            return
        event = await function_url_event(Request(scope, receive))
        result = await run_in_threadpool(ingest.lambda_handler, event, None)
        body = result.get("body", "")
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
        response = Response(raw, status_code=result["statusCode"], headers=result.get("headers"))
        await response(scope, receive, send)
