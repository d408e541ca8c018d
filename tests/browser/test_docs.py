"""/docs and /redoc render in a real browser from JSync's own assets, with no network beyond loopback."""

from __future__ import annotations

import re

import httpx

from local.stack import LocalStack
from tests.browser.conftest import Chromium


def test_swagger_ui_renders_every_operation_offline(stack: LocalStack, chromium: Chromium) -> None:
    base = f"http://127.0.0.1:{stack.settings.port}"
    html = httpx.get(base + "/docs", timeout=10).text
    # Given a page that names no host: everything comes from JSync
    assert not re.findall(r"(?:src|href)=\"https?://", html), html
    # When a browser that can reach nothing but loopback opens it
    dom = chromium.dom(base + "/docs")
    # Then Swagger UI rendered the operations, health among them
    assert 'class="swagger-ui' in dom
    assert dom.count("opblock-summary-path") >= 8, dom[:2000]
    assert "/api/v1/health" in dom and "/api/v1/issues/{key_or_id}/history" in dom
    assert "validator.swagger.io" not in dom


def test_redoc_renders_its_menu_offline(stack: LocalStack, chromium: Chromium) -> None:
    base = f"http://127.0.0.1:{stack.settings.port}"
    dom = chromium.dom(base + "/redoc")
    assert 'role="menu"' in dom or "menu-content" in dom, dom[:2000]
    assert "The latest state of an issue" in dom
    assert "fonts.googleapis.com" not in dom


def test_assets_are_cacheable_and_need_no_key(keyed_stack: LocalStack) -> None:
    stack = keyed_stack
    base = f"http://127.0.0.1:{stack.settings.port}"
    html = httpx.get(base + "/docs", timeout=10).text + httpx.get(base + "/redoc", timeout=10).text
    urls = sorted(set(re.findall(r"(?:src|href)=\"(/assets/[^\"]+)\"", html)))
    assert len(urls) == 4, urls  # Swagger UI's script and style, ReDoc's script, the favicon
    for url in urls:
        r = httpx.get(base + url, timeout=10)
        assert r.status_code == 200, url
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["etag"]
    assert httpx.get(base + "/assets/0/../app.py", timeout=10).status_code == 404
