"""`make sync`: start a reconcile on the running local stack, draw its progress, print what it found.

`python -m local.sync [--project KEY] [--since ISO]` posts to `/api/v1/sync`, polls the job every half second
until it ends, then prints a summary. Exit 0 when the job succeeded, 1 when it finished with errors or failed,
2 when no job could be started or followed (an error answer, or no stack running).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from pipeline.ids import JOB_ID
from pipeline.settings import load_settings

POLL_SECONDS = 0.5
PLAIN_EVERY = 5.0  # seconds between progress lines when the output is not a terminal
BAR_WIDTH = 20
LIST_AT_MOST = 50  # not-visible and deleted issues shown in the summary; errors are always all shown
TRANSIENT_POLLS = 10  # consecutive failed polls (5xx, timeouts) tolerated before giving up on following
EXIT_CODES = {"succeeded": 0, "finished_with_errors": 1, "failed": 1}


class ApiError(Exception):
    """The API answered with an error; `detail` is the sentence it gave."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{detail} ({error}, HTTP {status})")
        self.status, self.error, self.detail = status, error, detail


class Unreachable(Exception):
    """Nothing answered; `refused` when nothing listens on the port at all."""

    def __init__(self, reason: str, refused: bool) -> None:
        super().__init__(reason)
        self.refused = refused


@dataclass
class Client:
    """JSON over HTTP to the local API, with the API key when keys are configured."""

    base: str
    api_key: str | None
    timeout: float = 10.0
    answered: bool = False  # whether the stack ever answered: "not started" and "went away" read differently

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                self.answered = True
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            self.answered = True
            raise _api_error(exc.code, exc.read()) from None
        except urllib.error.URLError as exc:
            raise Unreachable(str(exc.reason), isinstance(exc.reason, ConnectionRefusedError)) from None
        except (OSError, http.client.HTTPException) as exc:  # reset, timed out, closed mid-answer
            raise Unreachable(str(exc) or type(exc).__name__, isinstance(exc, ConnectionRefusedError)) from None
        if not isinstance(answer, dict):
            raise ApiError(200, "bad_answer", f"{method} {path} answered {type(answer).__name__}, not an object.")
        return answer


def _api_error(status: int, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("detail"):
        return ApiError(status, str(body.get("error") or "error"), str(body["detail"]))
    text = raw.decode("utf-8", "replace").strip()[:200]
    return ApiError(status, "error", text or f"HTTP {status} without a body.")


# --- drawing -----------------------------------------------------------------------------------------------------
def _count(job: dict[str, Any], name: str) -> int:
    value = job.get(name)
    return value if isinstance(value, int) else 0


def progress_line(job: dict[str, Any], elapsed: float, bar: bool = True) -> str:
    """One line: phase, a bar of scanned/estimated issues when the estimate is known, counters, elapsed time."""
    phase = str(job.get("phase") or job.get("state") or "?")
    scanned, estimated = _count(job, "issues_scanned"), job.get("issues_estimated")
    if isinstance(estimated, int) and estimated > 0:
        share = min(scanned / estimated, 1.0)
        drawn = f"[{'#' * round(share * BAR_WIDTH):-<{BAR_WIDTH}}] " if bar else ""
        issues = f"{drawn}{scanned}/{estimated} issues {share:.0%}"
    else:
        issues = f"{scanned} issues"
    return (
        f"{phase:<7} {issues} | pages {_count(job, 'pages_scanned')} | fed {_count(job, 'changes_fed')}"
        f" | deletes {_count(job, 'deletes_found')} | errors {len(job.get('errors') or [])} | {elapsed:.0f}s"
    )


class Progress:
    """On a terminal one line redrawn in place; elsewhere a plain line every few seconds or on a phase change."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out, self.tty = out, tty
        self._drawn = 0
        self._printed_at: float | None = None
        self._phase: object = None

    def show(self, job: dict[str, Any], elapsed: float) -> None:
        if self.tty:
            # Kept shorter than the terminal: a wrapped line cannot be redrawn with \r.
            width = max(shutil.get_terminal_size().columns - 1, 20)
            line = progress_line(job, elapsed)[:width]
            self.out.write("\r" + line.ljust(self._drawn))
            self.out.flush()
            self._drawn = len(line)
            return
        now = time.monotonic()
        phase = job.get("phase")
        if self._printed_at is None or now - self._printed_at >= PLAIN_EVERY or phase != self._phase:
            print(progress_line(job, elapsed, bar=False), file=self.out, flush=True)
            self._printed_at, self._phase = now, phase

    def end(self) -> None:
        if self.tty and self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = 0


def _issue(entry: Any) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    key, ident = entry.get("key"), entry.get("id")
    return f"{key} ({ident})" if key and ident else str(key or ident or "?")


def summary(job: dict[str, Any], elapsed: float) -> list[str]:
    """What the job did, every error it met, and the issues Jira no longer shows us or has deleted."""
    took = job.get("elapsed_seconds")
    took = took if isinstance(took, int | float) else elapsed
    scope = f"project {job['project']}" if job.get("project") else "all projects"
    if job.get("since"):
        scope += f", changed since {job['since']}"
    estimated = job.get("issues_estimated")
    lines = [
        f"sync {job.get('job_id')}: {job.get('state')} in {took:.1f}s ({scope})",
        f"  issues scanned {_count(job, 'issues_scanned')}"
        + (f" of ~{estimated}" if isinstance(estimated, int) else "")
        + f", changed {_count(job, 'issues_changed')}, changes fed {_count(job, 'changes_fed')}"
        + f", pages {_count(job, 'pages_scanned')}, deletes found {_count(job, 'deletes_found')}",
    ]
    for title, name in (("not visible to the Jira account", "not_visible"), ("deleted in Jira", "deleted")):
        entries = job.get(name) or []
        if entries:
            shown = ", ".join(_issue(e) for e in entries[:LIST_AT_MOST])
            more = f", and {len(entries) - LIST_AT_MOST} more" if len(entries) > LIST_AT_MOST else ""
            lines.append(f"  {title} ({len(entries)}): {shown}{more}")
    errors = job.get("errors") or []
    if errors:
        lines.append(f"  errors ({len(errors)}):")
        for e in errors:
            e = e if isinstance(e, dict) else {"message": str(e)}
            where = f"issue {e['issue_id']}: " if e.get("issue_id") else ""
            status = f"HTTP {e['status']} " if e.get("status") else ""
            lines.append(f"    {where}{status}{e.get('message') or ''}".rstrip())
    if job.get("message"):
        lines.append(f"  {job['message']}")
    return lines


# --- running -----------------------------------------------------------------------------------------------------
def follow(client: Client, job_id: str, out: TextIO, tty: bool, started: float) -> dict[str, Any]:
    """Poll the job until it ends, drawing progress; returns its final state."""
    progress = Progress(out, tty)
    path = f"/sync/{urllib.parse.quote(job_id, safe='')}"
    failures = 0
    try:
        while True:
            try:
                job = client.call("GET", path)
                failures = 0
            except (ApiError, Unreachable) as exc:
                # The stack stopping, a 404 or a 4xx will not mend; a 5xx or a timeout may.
                lasting = isinstance(exc, Unreachable) and exc.refused
                lasting = lasting or (isinstance(exc, ApiError) and exc.status < 500)
                failures += 1
                if lasting or failures >= TRANSIENT_POLLS:
                    raise
                time.sleep(POLL_SECONDS)
                continue
            progress.show(job, time.monotonic() - started)
            if job.get("state") in EXIT_CODES:
                return job
            time.sleep(POLL_SECONDS)
    finally:
        progress.end()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.sync", description=__doc__.splitlines()[0])
    parser.add_argument("--project", help="one project key (default: every project the Jira account sees)")
    parser.add_argument("--since", help="only issues updated since this ISO-8601 time (default: all)")
    parser.add_argument("--job", help="follow a job already started, instead of starting one")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    settings = load_settings()
    base = f"http://127.0.0.1:{settings.port}"
    keys = settings.api_keys
    client = Client(f"{base}/api/v1", keys[0] if keys else None)
    started = time.monotonic()
    job_id = args.job
    try:
        if job_id is None:
            accepted = client.call("POST", "/sync", {"project": args.project or None, "since": args.since or None})
            job_id = str(accepted.get("job_id") or "")
            print(f"sync: job {job_id} started", file=out, flush=True)
        if not JOB_ID.fullmatch(job_id):
            print(f"sync: {job_id!r} is not a job id", file=sys.stderr)
            return 2
        job = follow(client, job_id, out, out.isatty(), started)
    except ApiError as exc:
        print(f"sync: {exc.detail} ({exc.error}, HTTP {exc.status})", file=sys.stderr)
        return 2
    except Unreachable as exc:
        if not client.answered:
            hint = "start the stack with `make run` first" if exc.refused else str(exc)
            print(f"sync: nothing answers at {base} ({hint}).", file=sys.stderr)
        else:
            print(
                f"sync: lost the stack at {base} ({exc}); job {job_id} resumes from its saved progress when "
                f"`make run` starts again; follow it with `python -m local.sync --job {job_id}`.",
                file=sys.stderr,
            )
        return 2
    except KeyboardInterrupt:
        if job_id:
            print(f"\nsync: stopped following; job {job_id} keeps running (`--job {job_id}` follows it).", file=out)
        return 130
    for line in summary(job, time.monotonic() - started):
        print(line, file=out)
    return EXIT_CODES[str(job["state"])]


if __name__ == "__main__":
    sys.exit(main())
