"""The timeline page in a real browser: an issue captured through the real pipeline, moved, commented, deleted."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx

from local.stack import LocalStack
from tests.api.test_http import BEFORE_THE_MOVE, DELETE, MOVE, deliver
from tests.browser.conftest import KEYS, Chromium

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'


def hostile_update(stack: LocalStack) -> None:
    """A description change whose text is markup, as a Jira user could type it."""
    body = json.loads((ROOT / "tests/fixtures/issue_updated.json").read_text())
    body["timestamp"] = 1764000250000
    body["changelog"] = {
        "id": "10791",
        "items": [
            {
                "field": "description",
                "fieldtype": "jira",
                "from": None,
                "fromString": "The export fails for large projects when the queue is full and nobody notices it.",
                "to": None,
                "toString": f"The export fails for huge projects {HOSTILE} when the queue is full and nobody notices.",
            }
        ],
    }
    r = httpx.post(
        stack.urls.webhook,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", "x-atlassian-webhook-identifier": "browser-hostile"},
        timeout=10,
    )
    assert r.status_code == 202, r.text
    stack.wait_idle()


def versions(dom: str) -> list[str]:
    return re.findall(r'<li class="version[^"]*" id="v-([^"]+)"', dom)


def test_timeline_shows_every_version_newest_first(stack: LocalStack, chromium: Chromium, tmp_path: Path) -> None:
    # Given OPS-17 created, updated twice, commented, its description rewritten with markup, moved and deleted
    deliver(stack, *BEFORE_THE_MOVE[:4])
    hostile_update(stack)
    deliver(stack, MOVE, DELETE)
    base = f"http://127.0.0.1:{stack.settings.port}"
    history = httpx.get(base + "/api/v1/issues/10042/history", timeout=10).json()["items"]
    # When a browser opens its timeline by its old key
    dom = chromium.dom(base + "/issues/OPS-17/timeline")
    # Then every version shows, newest first, the deletion on top, each linking to its JSON
    assert versions(dom) == [i["version"] for i in history] and len(history) == 7
    for item in history:
        assert f'href="/api/v1/issues/PLAT-5/history/{item["version"]}"' in dom or (
            f'href="/api/v1/issues/OPS-17/history/{item["version"]}"' in dom
        )
    text = re.sub(r"<[^>]+>", " ", dom)
    order = [text.index(s) for s in ("Deleted", "Moved OPS-17 → PLAT-5", "Comment added", "Updated", "Created")]
    assert order == sorted(order), order
    assert "was deleted in Jira" in dom
    assert "Ada Example" in dom and "Grace Example" in dom
    assert re.search(r"<del>To Do</del>.*?→.*?<ins>In Progress</ins>", dom, re.S)
    assert re.search(r"<del>Ada Example</del>.*?<ins>Grace Example</ins>", dom, re.S)
    # The long text as a word diff, its markup shown as text and never run
    assert "<del>large</del>" in dom and "<ins>huge</ins>" in dom
    assert "&lt;script&gt;" in dom and "<script>document.title" not in dom
    assert "<img src" not in dom and "pwned" not in re.search(r"<title>(.*?)</title>", dom).group(1)
    # Times: UTC in the markup, turned into the browser's zone by the page's script
    assert re.search(r'<time datetime="2025-11-24T16:0\d:\d\d\.\d{3}Z">', dom)
    assert "Times in your time zone" in dom
    if os.environ.get("JSYNC_SCREENSHOTS"):
        chromium.screenshot(base + "/issues/PLAT-5/timeline", ROOT / "docs/timeline.png", size="1100,820")


def test_timeline_pages_zones_and_errors(stack: LocalStack) -> None:
    deliver(stack, *BEFORE_THE_MOVE[:4])
    base = f"http://127.0.0.1:{stack.settings.port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        first = client.get("/issues/OPS-17/timeline", params={"limit": 3, "tz": "Asia/Tokyo"})
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/html")
        assert first.headers["cache-control"] == "no-store"
        assert "script-src 'nonce-" in first.headers["content-security-policy"]
        assert "Times in Asia/Tokyo" in first.text and " JST</time>" in first.text
        assert len(versions(first.text)) == 3
        older = re.search(r'<a rel="next" href="([^"]+)"', first.text)
        assert older, first.text
        second = client.get("/issues/OPS-17/timeline" + older.group(1).replace("&amp;", "&"))
        assert versions(second.text) and not set(versions(second.text)) & set(versions(first.text))
        assert "Times in Asia/Tokyo" in second.text
        for params, status in (({"tz": "Mars/Olympus"}, 400), ({"tz": "../../etc/passwd"}, 400), ({"limit": 0}, 400)):
            r = client.get("/issues/OPS-17/timeline", params=params)
            assert r.status_code == status and "<h1>Bad request</h1>" in r.text, (params, r.text)
        missing = client.get("/issues/NOPE-1/timeline")
        assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.text
        bad = client.get("/issues/%3Cscript%3E/timeline")
        assert bad.status_code == 400 and "<script>" not in bad.text.split("</style>")[1].split("<script nonce")[0]
        deliver(stack, MOVE, DELETE)
        gone = client.get("/issues/PLAT-5/timeline")
        assert gone.status_code == 410 and "was deleted in Jira" in gone.text and len(versions(gone.text)) == 6


def test_timeline_with_keys_signs_a_browser_in_with_a_cookie(keyed_stack: LocalStack, chromium: Chromium) -> None:
    deliver(keyed_stack, BEFORE_THE_MOVE[0])
    base = f"http://127.0.0.1:{keyed_stack.settings.port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        # Without a key: the sign-in form, no history
        r = client.get("/issues/OPS-17/timeline")
        assert r.status_code == 401 and 'name="api_key"' in r.text and "version" not in r.text.split("</style>")[1]
        # A script sends the header
        assert client.get("/issues/OPS-17/timeline", headers={"X-API-Key": KEYS[1]}).status_code == 200
        # A wrong key is refused and sets nothing
        r = client.post("/issues/OPS-17/timeline", data={"api_key": "wrong"})
        assert r.status_code == 401 and "set-cookie" not in r.headers and "not accepted" in r.text
        # A good one sets a session cookie that is not the key and goes back to the page
        r = client.post("/issues/OPS-17/timeline?tz=UTC", data={"api_key": KEYS[0]})
        assert r.status_code == 303 and r.headers["location"] == "/issues/OPS-17/timeline?tz=UTC"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert KEYS[0] not in cookie and KEYS[0] not in r.headers["location"]
        assert client.get("/issues/OPS-17/timeline").status_code == 200
        # The cookie also opens the JSON the page links to, but never a POST
        assert client.get("/api/v1/issues/OPS-17").status_code == 200
        assert client.post("/api/v1/sync", json={}).status_code == 401
        # A cross-site form cannot sign anyone in
        r = client.post("/issues/OPS-17/timeline", data={"api_key": KEYS[0]}, headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        client.cookies.set("jsync_session", "0" * 64)
        assert client.get("/issues/OPS-17/timeline").status_code == 401
    # And a browser, which sends no header, sees the form
    dom = chromium.dom(base + "/issues/OPS-17/timeline")
    assert 'id="sign-in"' in dom and "<ol" not in dom
