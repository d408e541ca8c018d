"""`make sync` (local/sync.py) against a fake API on loopback: starting, following, summarising, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local import sync
from local.stack import free_port
from pipeline.reconcile import jobs

ROOT = Path(__file__).resolve().parents[2]
JOB = "sync-20261125T101500Z-1a2b3c4d"


def job(**fields: Any) -> dict[str, Any]:
    """A job as GET /api/v1/sync/{id} shows it: the record the API really serves, then the fields given."""
    base = asdict(jobs.public(jobs.new_job(JOB, "api", "OPS", None, 1_764_065_700_000)))
    base.update(state="running", phase="search", started_at="2026-11-25T10:15:01.000Z")
    return {**base, **fields}


class FakeApi:
    """POST /api/v1/sync answers `start`; each GET of the job answers the next of `states` (the last one sticks).

    A state with status 0 stands for the stack stopping: a 503, then nothing listens any more.
    """

    def __init__(self, start: tuple[int, dict[str, Any]], states: list[tuple[int, dict[str, Any]]], key: str = ""):
        self.start, self.states, self.key = start, states, key
        self.posts: list[dict[str, Any]] = []
        self.keys_seen: list[str | None] = []
        self.gets = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest's output clean
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _authorised(self) -> bool:
                api.keys_seen.append(self.headers.get("X-API-Key"))
                if api.key and self.headers.get("X-API-Key") != api.key:
                    self._answer(
                        401, {"error": "unauthorized", "detail": "Send a valid API key in the X-API-Key header."}
                    )
                    return False
                return True

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                api.posts.append(json.loads(self.rfile.read(length) or b"null"))
                if self.path == "/api/v1/sync" and self._authorised():
                    self._answer(*api.start)

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorised():
                    return
                if self.path != f"/api/v1/sync/{JOB}":
                    self._answer(404, {"error": "job_not_found", "detail": f"No reconcile job at {self.path}."})
                    return
                status, body = api.states[min(api.gets, len(api.states) - 1)]
                api.gets += 1
                if status == 0:
                    threading.Thread(target=api.close).start()
                    status = 503
                self._answer(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sync, "POLL_SECONDS", 0.01)
    for name in ("JSYNC_API_KEYS", "JSYNC_API_KEYS_SECRET_NAME"):
        monkeypatch.delenv(name, raising=False)
    yield


ACCEPTED = (202, {"job_id": JOB, "state": "queued"})
PROGRESS = [
    (200, job(state="queued", phase="queued", started_at=None)),
    (200, job(phase="search", issues_estimated=10, issues_scanned=4, pages_scanned=1, changes_fed=2)),
    (500, {"error": "internal", "detail": "S3 hiccup."}),  # a passing failure: following goes on
]


def run(api: FakeApi, monkeypatch: pytest.MonkeyPatch, *argv: str, out: io.StringIO | None = None) -> tuple[int, str]:
    monkeypatch.setenv("JSYNC_PORT", str(api.port))
    out = out or io.StringIO()
    code = sync.main(list(argv), out=out)
    return code, out.getvalue()


def test_a_job_that_succeeds_exits_0_with_its_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    done = job(
        state="succeeded",
        phase="done",
        elapsed_seconds=12.34,
        issues_estimated=10,
        issues_scanned=10,
        issues_changed=3,
        changes_fed=5,
        pages_scanned=2,
        deletes_found=1,
        since="2026-11-01T00:00:00.000Z",
        not_visible=[{"id": "10007", "key": "OPS-7"}],
        deleted=[{"id": "10009", "key": "OPS-9"}],
    )
    with FakeApi(ACCEPTED, [*PROGRESS, (200, done)]) as api:
        code, out = run(api, monkeypatch, "--project", "OPS", "--since", "2026-11-01T00:00:00Z")
    assert code == 0, out
    assert api.posts == [{"project": "OPS", "since": "2026-11-01T00:00:00Z"}]
    assert api.keys_seen == [None] * len(api.keys_seen)  # no keys configured, none sent
    lines = out.splitlines()
    assert lines[0] == f"sync: job {JOB} started"
    # Not a terminal: plain lines, one per phase change here (they come faster than every 5 s)
    assert lines[1].startswith("queued  0 issues | pages 0 | fed 0 | deletes 0 | errors 0 | ")
    assert lines[2].startswith("search  4/10 issues 40% | pages 1 | fed 2 | deletes 0 | errors 0 | ")
    assert lines[3].startswith("done    10/10 issues 100% | pages 2 | fed 5 | deletes 1 | errors 0 | ")
    assert "\r" not in out and "[" not in out
    assert lines[4:] == [
        f"sync {JOB}: succeeded in 12.3s (project OPS, changed since 2026-11-01T00:00:00.000Z)",
        "  issues scanned 10 of ~10, changed 3, changes fed 5, pages 2, deletes found 1",
        "  not visible to the Jira account (1): OPS-7 (10007)",
        "  deleted in Jira (1): OPS-9 (10009)",
    ]


def test_a_job_with_errors_exits_1_and_prints_each_error(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = [
        {"issue_id": "10003", "status": 500, "message": "Jira answered 500 for the changelog"},
        {"issue_id": None, "status": 0, "message": "search page 3 timed out"},
    ]
    done = job(state="finished_with_errors", phase="done", elapsed_seconds=2.0, issues_scanned=7, errors=errors)
    with FakeApi(ACCEPTED, [(200, done)]) as api:
        code, out = run(api, monkeypatch)
    assert code == 1
    assert api.posts == [{"project": None, "since": None}]
    assert out.splitlines()[-5:] == [
        f"sync {JOB}: finished_with_errors in 2.0s (project OPS)",
        "  issues scanned 7, changed 0, changes fed 0, pages 0, deletes found 0",
        "  errors (2):",
        "    issue 10003: HTTP 500 Jira answered 500 for the changelog",
        "    search page 3 timed out",
    ]


def test_a_failed_job_exits_1_with_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    message = "Jira answered 401: check JSYNC_JIRA_EMAIL and JSYNC_JIRA_TOKEN."
    done = job(state="failed", phase="done", project=None, elapsed_seconds=0.5, message=message)
    with FakeApi(ACCEPTED, [(200, done)]) as api:
        code, out = run(api, monkeypatch)
    assert code == 1
    assert out.splitlines()[-3:] == [
        f"sync {JOB}: failed in 0.5s (all projects)",
        "  issues scanned 0, changed 0, changes fed 0, pages 0, deletes found 0",
        f"  {message}",
    ]


def test_the_first_api_key_is_sent_when_keys_are_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSYNC_API_KEYS", "key-one, key-two")
    with FakeApi(ACCEPTED, [(200, job(state="succeeded", phase="done"))], key="key-one") as api:
        code, _ = run(api, monkeypatch)
    assert code == 0
    assert api.keys_seen and set(api.keys_seen) == {"key-one"}


def test_a_wrong_api_key_exits_2_with_the_detail(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("JSYNC_API_KEYS", "stale")
    with FakeApi(ACCEPTED, [], key="fresh") as api:
        code, out = run(api, monkeypatch)
    assert code == 2 and out == ""
    assert capsys.readouterr().err == "sync: Send a valid API key in the X-API-Key header. (unauthorized, HTTP 401)\n"


def test_on_a_terminal_one_line_is_redrawn_with_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("COLUMNS", "200")
    done = job(state="succeeded", phase="done", issues_estimated=10, issues_scanned=10, elapsed_seconds=1.0)
    with FakeApi(ACCEPTED, [*PROGRESS, (200, done)]) as api:
        code, out = run(api, monkeypatch, out=Terminal())
    assert code == 0
    drawn = out.split("\n")[1]  # after "started": every redraw is on this one line
    frames = [f.rstrip() for f in drawn.split("\r")[1:]]
    assert frames[0].startswith("queued  0 issues | pages 0")
    assert frames[1].startswith("search  [########------------] 4/10 issues 40% | pages 1 | fed 2 | deletes 0")
    assert frames[-1].startswith("done    [####################] 10/10 issues 100%")
    assert out.split("\n")[2] == f"sync {JOB}: succeeded in 1.0s (project OPS)"


def test_an_unknown_job_to_follow_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    with FakeApi(ACCEPTED, []) as api:
        code, _ = run(api, monkeypatch, "--job", "sync-gone")
    assert code == 2
    assert capsys.readouterr().err == "sync: No reconcile job at /api/v1/sync/sync-gone. (job_not_found, HTTP 404)\n"


def test_a_stack_that_stops_mid_job_exits_2_saying_how_to_follow_the_job_again(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    stopping = (0, {"error": "shutting_down", "detail": "The stack is stopping."})
    with FakeApi(ACCEPTED, [PROGRESS[1], stopping]) as api:
        code, out = run(api, monkeypatch)
        port = api.port
    assert code == 2
    assert out.splitlines()[1].startswith("search  4/10 issues 40%")
    err = capsys.readouterr().err
    assert err.startswith(f"sync: lost the stack at http://127.0.0.1:{port} (")
    assert err.endswith(
        f"job {JOB} resumes from its saved progress when `make run` starts again; "
        f"follow it with `python -m local.sync --job {JOB}`.\n"
    )


def cli(port: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSYNC_")}
    env["JSYNC_PORT"] = str(port)
    return subprocess.run(
        [sys.executable, "-m", "local.sync"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_without_jira_credentials_prints_the_detail_and_exits_2() -> None:
    detail = "Reconcile has no Jira credentials: set JSYNC_JIRA_URL, JSYNC_JIRA_EMAIL and JSYNC_JIRA_TOKEN locally."
    with FakeApi((503, {"error": "jira_not_configured", "detail": detail}), []) as api:
        done = cli(api.port)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"sync: {detail} (jira_not_configured, HTTP 503)\n"


def test_cli_without_a_running_stack_says_to_start_it_and_exits_2() -> None:
    port = free_port()  # nothing listens there
    done = cli(port)
    assert done.returncode == 2
    assert done.stderr == f"sync: nothing answers at http://127.0.0.1:{port} (start the stack with `make run` first).\n"
