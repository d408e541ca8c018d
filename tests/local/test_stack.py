"""The local stack over real HTTP: uvicorn front door, embedded backend, pollers, a bare git remote, restarts."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from local.stack import LocalStack
from pipeline import services
from pipeline.signature import sign
from tests.builders import fixture_bytes
from tests.environments import stack_env
from tests.harness import remote_commits, remote_file

ROOT = Path(__file__).resolve().parents[2]


def post(stack: LocalStack, name: str, identifier: str, **headers: str) -> httpx.Response:
    return httpx.post(
        stack.urls.webhook,
        content=fixture_bytes(name),
        headers={"content-type": "application/json", "x-atlassian-webhook-identifier": identifier, **headers},
        timeout=10,
    )


def test_webhooks_over_http_end_in_s3_and_git(stack: LocalStack) -> None:
    # Given the running stack, when Jira posts a created and an updated event
    started = time.monotonic()
    assert post(stack, "issue_created.json", "h-1").status_code == 202
    r = post(stack, "issue_updated.json", "h-2")
    assert r.status_code == 202 and r.json() == {"status": "queued", "issue_key": "OPS-17", "event_id": "h-2"}
    stack.wait_idle()
    elapsed = time.monotonic() - started
    # Then both are snapshots in S3 and commits on the bare remote
    assert len(services.store().all_keys("snapshots/")) == 2
    commits = remote_commits(stack.settings.git_remote, "main")
    assert [c.trailers["Jira-Event-Id"] for c in commits] == ["h-2", "h-1"]
    doc = json.loads(remote_file(stack.settings.git_remote, "main", "issues/OPS/OPS-17.json") or b"{}")
    assert doc["fields"]["status"]["name"] == "In Progress"
    print(f"two webhooks captured and committed in {elapsed:.2f}s")


def test_health_names_git_when_the_remote_is_gone(stack: LocalStack) -> None:
    ok = httpx.get(stack.urls.health, timeout=10)
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
    assert set(ok.json()["checks"]) == {"storage", "queues", "dead_letters", "git", "webhook", "set_aside"}
    remote = Path(stack.settings.git_remote)
    remote.rename(remote.with_name("gone.git"))
    try:
        bad = httpx.get(stack.urls.health, timeout=10)
        assert bad.status_code == 503
        body = bad.json()
        assert body["error"] == "unhealthy" and "git" in body["detail"]
        assert body["checks"]["git"]["ok"] is False and body["checks"]["storage"]["ok"] is True
        # and ingest keeps accepting meanwhile
        assert post(stack, "issue_created.json", "while-down").status_code == 202
    finally:
        remote.with_name("gone.git").rename(remote)
    stack.wait_idle()
    assert [c.trailers["Jira-Event-Id"] for c in remote_commits(str(remote), "main")] == ["while-down"]


def test_signed_webhooks_when_a_secret_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in stack_env(tmp_path / "home").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("JSYNC_GIT_REMOTE")
    monkeypatch.setenv("JSYNC_WEBHOOK_SECRET", "It's a Secret to Everybody")
    s = LocalStack()
    s.start()
    try:
        body = fixture_bytes("issue_created.json")
        unsigned = post(s, "issue_created.json", "sig-1")
        assert unsigned.status_code == 401 and unsigned.json()["error"] == "signature_missing"
        assert "Secret" not in unsigned.text
        signed = post(s, "issue_created.json", "sig-1", **{"x-hub-signature": sign("It's a Secret to Everybody", body)})
        assert signed.status_code == 202
        wrong = httpx.get(s.urls.webhook, timeout=5)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    finally:
        s.stop()
        services.reset()


def test_state_survives_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in stack_env(tmp_path / "home").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("JSYNC_GIT_REMOTE")
    first = LocalStack()
    first.start()
    post(first, "issue_created.json", "p-1")
    first.wait_idle()
    # A webhook accepted just before the stop stays queued across it
    for poller in first.pollers:
        if poller.name.startswith("writer"):
            poller.stop()
    assert post(first, "issue_updated.json", "p-2").status_code == 202
    # And a reconcile step that is still running is abandoned at the stop, its message back on its queue
    (reconcile,) = [p for p in first.pollers if p.name == "reconcile"]
    entered, release = threading.Event(), threading.Event()

    def stuck(event: dict[str, object], context: object) -> dict[str, object]:
        entered.set()
        release.wait(60)
        return {}

    reconcile.handler = stuck
    step = {"job_id": "sync-restart", "step": 2}
    services.queues().send_sync(step)
    assert entered.wait(10)
    stopping = time.monotonic()
    first.stop()
    took = time.monotonic() - stopping
    release.set()
    print(f"stop with a reconcile step running took {took:.2f}s")
    assert took < 10
    bus = services.queue_bus()
    assert bus.depth(first.settings.sync_queue).waiting == 1
    assert bus.depth(first.settings.events_queue).waiting == 1
    services.reset()

    second = LocalStack()
    started = time.monotonic()
    second.start()
    print(f"restart took {time.monotonic() - started:.2f}s")
    try:
        second.wait_idle()
        latest = services.store().latest("10042")
        assert latest is not None and latest.data["capture"]["event_id"] == "p-2"
        commits = remote_commits(second.settings.git_remote, "main")
        assert [c.trailers["Jira-Event-Id"] for c in commits] == ["p-2", "p-1"]
        # A replay after the restart is still recognised: no new commit
        post(second, "issue_created.json", "p-1")
        second.wait_idle()
        assert len(remote_commits(second.settings.git_remote, "main")) == 2
    finally:
        second.stop()
        services.reset()


def test_a_second_stack_on_the_same_home_is_refused(stack: LocalStack) -> None:
    from local.stack import AlreadyRunning

    with pytest.raises(AlreadyRunning, match="another `make run`"):
        LocalStack().start()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_make_run_stops_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JSYNC_", "AWS_"))}
    env.update(stack_env(tmp_path / "home"))
    env.pop("JSYNC_GIT_REMOTE")
    token = "jira-token-never-printed"
    if sig == signal.SIGTERM:  # one run with Jira credentials, one without
        env.update(JSYNC_JIRA_URL="https://x.atlassian.net/", JSYNC_JIRA_EMAIL="a@b", JSYNC_JIRA_TOKEN=token)
    proc = subprocess.Popen(
        [sys.executable, "-m", "local"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    banner_seen = threading.Event()

    def read_output() -> None:  # keep the pipe drained, so the child never blocks writing its logs
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "git remote:" in line:
                banner_seen.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        assert banner_seen.wait(30), "".join(lines)
        banner = "".join(lines)
        assert "webhook:" in banner and "/webhook" in banner and "API docs:" in banner
        if sig == signal.SIGTERM:
            assert "  reconcile:  https://x.atlassian.net as a@b, every 24 h after a first full `make sync`\n" in banner
        else:
            assert "  reconcile:  off (set JSYNC_JIRA_URL, JSYNC_JIRA_EMAIL, JSYNC_JIRA_TOKEN)\n" in banner
        url = f"http://127.0.0.1:{env['JSYNC_PORT']}/webhook"
        body = fixture_bytes("issue_created.json")
        r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10)
        assert r.status_code == 202
        proc.send_signal(sig)
        stopped = time.monotonic()
        assert proc.wait(timeout=30) == 0, "".join(lines)
        print(f"stopped in {time.monotonic() - stopped:.2f}s")
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(5)
    assert token not in "".join(lines)
    # The event accepted before the signal is stored: committed, or still on its queue in the SQLite file.
    home = tmp_path / "home"
    with sqlite3.connect(home / "jsync.db") as db:
        (queued,) = db.execute("SELECT COUNT(*) FROM messages").fetchone()
    assert remote_commits(str(home / "remote.git"), "main") or queued


def test_the_stack_keeps_its_own_remote_packed(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every push adds a pack to the remote; past the threshold the stack repacks its own remote between batches
    import local.stack

    monkeypatch.setattr(local.stack, "_PACKS_BEFORE_REPACK", 2)
    base = json.loads(fixture_bytes("issue_updated.json"))
    for n in range(6):
        base["timestamp"] += 1000
        base["issue"]["fields"]["summary"] = f"edit {n}"
        base["changelog"] = {"id": str(88000 + n), "items": []}
        r = httpx.post(
            stack.urls.webhook,
            content=json.dumps(base).encode(),
            headers={"content-type": "application/json", "x-atlassian-webhook-identifier": f"pk-{n}"},
            timeout=10,
        )
        assert r.status_code == 202
        stack.wait_idle()
    remote = Path(stack.settings.git_remote)
    assert len(list((remote / "objects" / "pack").glob("*.pack"))) <= 3
    assert len(remote_commits(str(remote), "main")) == 6
    check = subprocess.run(["git", "--git-dir", str(remote), "fsck", "--no-progress"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_an_attachment_reaches_the_api_through_the_running_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` with Jira credentials: the webhook over HTTP, the copy by the stack's attachments poller, the bytes
    from uvicorn with an API key."""
    from tests.environments import keyed_stack
    from tests.fakejira import EMAIL, TOKEN, FakeJira, JiraModel

    with FakeJira(JiraModel(seed=5, issues=1)) as jira:
        jira.attachments["10231"] = b"log line\n" * 500
        for name, value in (
            ("JSYNC_JIRA_URL", jira.base_url),
            ("JSYNC_JIRA_EMAIL", EMAIL),
            ("JSYNC_JIRA_TOKEN", TOKEN),
        ):
            monkeypatch.setenv(name, value)
        with keyed_stack(tmp_path / "home", monkeypatch, "stack-key-1") as stack:
            assert post(stack, "attachment_added.json", "att-http-1").status_code == 202
            stack.wait_idle(30)
            api = stack.urls.health.removesuffix("/health")
            answer = httpx.get(
                f"{api}/issues/OPS-17/attachments/10231", headers={"X-API-Key": "stack-key-1"}, timeout=10
            )
            assert answer.status_code == 200 and answer.content == b"log line\n" * 500
            assert answer.headers["content-type"] == "text/plain; charset=utf-8"
            assert answer.headers["x-content-type-options"] == "nosniff"
            unkeyed = httpx.get(f"{api}/issues/OPS-17/attachments/10231", timeout=10)
            assert unkeyed.status_code == 401
