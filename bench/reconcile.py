"""Reconcile (issue 7) against a fake Jira: a backfill of a site JSync has never seen, a catch-up after a few changes,
and an idle re-run with nothing new; time and Jira requests for each, on either backend.

Each job runs through the real handlers (functions.reconcile, functions.writer, functions.committer), driven by the
test harness's pollers against the backend `python -m local` would use: `embedded` (SQLite under a temp home, in
this process) or `aws` (a moto server in a process of its own, as `JSYNC_BACKEND=aws` runs against it), and a bare
git remote in a temp dir. The reconcile step is run to the end first (until the job record says done), then the
writer and committer drain the queues it filled: "reconcile alone" is the first part, "end to end" both. Deployed,
the writer starts on the first fed change while reconcile goes on, so end to end is an upper bound.

The fake Jira (tests/fakejira.py) serves from a thread of this process, so its own work shares our GIL; the time it
spends answering is reported so it can be told apart from JSync's. So is the time in object-store and queue calls
(through the backend's ports, whichever backend) and in the Jira client, so what is JSync's own work shows. Only
loopback traffic.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from bench.gitserver import init_bare
from bench.motoserver import AWS_ENV, MotoServer

# Bench reuses the test suite's fake Jira (a seeded model served over loopback HTTP, with a log of every request) and
# its pipeline harness (pollers running the real handlers); `tests` ships with the repository, not with the Lambdas.
from tests.fakejira import EMAIL, TOKEN, FakeJira, JiraModel

# What a request to Jira was for; `census` is search/jql asking for ids only (the deletion check).
KINDS = ("search", "census", "approximate_count", "bulk_changelog", "issue", "changelog", "lookup", "other")
_LOOKUP = re.compile(r"/rest/api/[23]/(status|priority|project|issuetype|resolution|user)(/.*)?")
SERVICES = ("objects", "queues", "jira")
# The ports' methods the handlers call, timed on the shared instances (services.objects(), services.queue_bus()).
_PORT_METHODS = {
    "objects": ("put", "get", "delete", "list_keys", "folders"),
    "queues": ("send", "receive", "delete", "change_visibility"),  # not depth: the bench's own drain polls it
}
_JOB_LIMIT_S = 1800  # a job that has not ended by then is reported as an error, not waited for


class Meter:
    """Counts and times calls by name: each port's calls (`objects.get`, `queues.send`) and the Jira client's
    requests."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    def timed(self, call: Callable[..., Any], name: Callable[..., str]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                key = name(*args, **kwargs)
                self.calls[key] += 1
                self.seconds[key] += time.perf_counter() - started

        return wrapper

    def snapshot(self) -> dict[str, tuple[int, float]]:
        return {key: (self.calls[key], self.seconds[key]) for key in self.calls}

    @staticmethod
    def since(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]) -> dict[str, Any]:
        """Calls between two snapshots, by name, and totals by service: {name: {"calls", "seconds"}}."""
        out: dict[str, Any] = {}
        for key, (calls, seconds) in sorted(after.items()):
            calls0, seconds0 = before.get(key, (0, 0.0))
            if calls > calls0:
                out[key] = {"calls": calls - calls0, "seconds": seconds - seconds0}
        for service in SERVICES:
            mine = [v for k, v in out.items() if k.split(".", 1)[0] == service]
            out[service] = {"calls": sum(v["calls"] for v in mine), "seconds": sum((v["seconds"] for v in mine), 0.0)}
        return out


def _label(name: str) -> Callable[..., str]:
    return lambda *_, **__: name


@contextmanager
def metered(meter: Meter) -> Iterator[None]:
    """Time every object-store and queue call the handlers make (through the shared port instances) and every
    Jira request."""
    from pipeline import services
    from pipeline.reconcile.jira import JiraClient

    ports = {"objects": services.objects(), "queues": services.queue_bus()}
    for service, port in ports.items():
        for method in _PORT_METHODS[service]:
            # An instance attribute shadows the class's method for every caller holding this instance.
            setattr(port, method, meter.timed(getattr(port, method), _label(f"{service}.{method}")))
    original = JiraClient._json
    JiraClient._json = meter.timed(
        original, lambda _s, method, path, body=None, **_: f"jira.{request_kind(method, path, body)}"
    )
    try:
        yield
    finally:
        JiraClient._json = original
        for service, port in ports.items():
            for method in _PORT_METHODS[service]:
                vars(port).pop(method, None)


@dataclass(frozen=True)
class Plan:
    issues: int
    max_changes: int
    projects: tuple[str, ...]
    catchup_changes: int
    seed: int = 7


FULL = Plan(issues=500, max_changes=8, projects=("OPS", "PLAT"), catchup_changes=20)
# On aws (moto) a fifth of the site: moto's writer takes ~0.3 s a change on a busy machine (`--aws-full` for FULL).
AWS_FULL = Plan(issues=100, max_changes=8, projects=("OPS", "PLAT"), catchup_changes=20)
# Just enough for every job to do something: on aws (moto) each fed change costs the writer ~0.1-0.3 s.
QUICK = Plan(issues=16, max_changes=2, projects=("OPS", "PLAT"), catchup_changes=5)


class TimedFakeJira(FakeJira):
    """The fake Jira, adding up the time its server thread spends answering (rendering issues, changelogs...)."""

    def __init__(self, model: JiraModel) -> None:
        super().__init__(model)
        self.serving_s = 0.0

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        started = time.perf_counter()
        try:
            super()._handle(handler, method)
        finally:
            self.serving_s += time.perf_counter() - started


def request_kind(method: str, path: str, body: Any) -> str:
    if path.endswith("/search/jql"):
        fields = body.get("fields") if isinstance(body, dict) else None
        return "census" if fields and set(fields) <= {"id"} else "search"
    if path.endswith("/search/approximate-count"):
        return "approximate_count"
    if path.endswith("/changelog/bulkfetch"):
        return "bulk_changelog"
    if re.fullmatch(r"/rest/api/[23]/issue/[^/]+/changelog", path):
        return "changelog"
    if re.fullmatch(r"/rest/api/[23]/issue/[^/]+", path):
        return "issue"
    if _LOOKUP.fullmatch(path):
        return "lookup"
    return "other"


def count_requests(logged: list[Any]) -> dict[str, int]:
    kinds = Counter(request_kind(r.method, r.path, r.body) for r in logged)
    counts = {kind: kinds.get(kind, 0) for kind in KINDS}
    counts["total"] = len(logged)
    counts["not_200"] = sum(1 for r in logged if r.status != 200)
    return counts


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """The process environment as a fresh local stack sees it (no JSYNC_/AWS_ leftovers), restored afterwards."""
    from pipeline import services

    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("JSYNC_", "AWS_", "POWERTOOLS_")):
            del os.environ[name]
    os.environ.update(values)
    services.reset()
    try:
        yield
    finally:
        services.reset()
        os.environ.clear()
        os.environ.update(saved)


def run(
    workdir: Path,
    *,
    quick: bool,
    backend: str = "embedded",
    log: Callable[[str], None] = lambda _: None,
    aws_full: bool = False,
) -> dict[str, Any]:
    """Backfill, catch-up and idle re-run against one fresh environment on `backend`; every figure in one dict."""
    plan = QUICK if quick else (AWS_FULL if backend == "aws" and not aws_full else FULL)
    out: dict[str, Any] = {"plan": asdict(plan), "backend": backend}
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = JiraModel(seed=plan.seed, projects=plan.projects, issues=plan.issues, max_changes=plan.max_changes)
    out["model_s"] = time.perf_counter() - started
    out["histories"] = sum(len(i.histories) for i in model.issues.values())
    moto = MotoServer(log=workdir.parent / f"moto-reconcile-{backend}.log") if backend == "aws" else None
    fake = TimedFakeJira(model)
    try:
        started = time.perf_counter()
        if moto:
            moto.start()
        fake.start()
        env = {
            "JSYNC_BACKEND": backend,
            "JSYNC_HOME": str(workdir / "home"),
            "JSYNC_GIT_REMOTE": str(init_bare(workdir / "remote.git")),
            "JSYNC_GIT_BRANCH": "main",
            "JSYNC_GIT_CACHE": str(workdir / "cache.git"),
            "JSYNC_JIRA_URL": fake.base_url,
            "JSYNC_JIRA_EMAIL": EMAIL,
            "JSYNC_JIRA_TOKEN": TOKEN,
            "POWERTOOLS_LOG_LEVEL": "WARNING",  # the handlers' per-event INFO lines would swamp the table
        }
        if moto:
            env.update(AWS_ENV, AWS_ENDPOINT_URL=moto.url)
        with environment(env):
            out.update(_jobs(model, fake, plan, started, log))
    finally:
        fake.stop()
        if moto:
            moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def _jobs(
    model: JiraModel, fake: TimedFakeJira, plan: Plan, started: float, log: Callable[[str], None]
) -> dict[str, Any]:
    # Imported here, after the environment is set: the handlers' loggers read their level when first imported.
    from local.resources import create_resources
    from pipeline.settings import get_settings
    from tests.harness import Pipeline

    for name in ("jsync-reconcile", "jsync-writer", "jsync-committer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    settings = get_settings()
    create_resources(settings)
    pipe = Pipeline(settings)
    out: dict[str, Any] = {"setup_s": time.perf_counter() - started}
    meter = Meter()
    with metered(meter):
        out.update(_three_jobs(model, fake, plan, pipe, meter, log))
    return out


def _three_jobs(
    model: JiraModel, fake: TimedFakeJira, plan: Plan, pipe: Any, meter: Meter, log: Callable[[str], None]
) -> dict[str, Any]:
    out: dict[str, Any] = {}

    log(f"reconcile backfill: {len(model.issues):,} issues, {plan.max_changes} changes at most each")
    backfill = _job(pipe, fake, meter)
    issues = len(model.issues)
    backfill["issues"] = issues
    backfill["changes_expected"] = issues + sum(len(i.histories) for i in model.issues.values())
    backfill["requests_per_issue"] = {k: v / issues for k, v in backfill["requests"].items() if k != "not_200"}
    backfill.update(captured(model))
    out["backfill"] = backfill
    log(summary(backfill))

    # Changes made after the backfill, dated now: the cursor-based job must find them (the cursor is wall time).
    now = int(time.time() * 1000)
    for n in range(plan.catchup_changes):
        model.add_change(at_ms=now + n)
    log(f"reconcile catch-up: {plan.catchup_changes} new changes")
    catchup = _job(pipe, fake, meter)
    catchup["changes_added"] = plan.catchup_changes
    out["catchup"] = catchup

    log("reconcile idle re-run")
    out["idle"] = _job(pipe, fake, meter)
    return out


def _job(pipe: Any, fake: TimedFakeJira, meter: Meter) -> dict[str, Any]:
    """One job as `POST /api/v1/sync` starts it (no bound: from the cursor), run to the end, then drained."""
    from pipeline import services
    from pipeline.reconcile import jobs
    from tests.harness import remote_commits

    store = services.store()
    settings = pipe.settings
    commits_before = len(remote_commits(settings.git_remote, settings.git_branch))
    seen, serving = len(fake.requests), fake.serving_s
    now = int(time.time() * 1000)
    job = jobs.create(store, jobs.new_job(jobs.new_job_id(now, "bench"), "api", None, None, now))
    spent: Counter[str] = Counter()

    calls_at_start = meter.snapshot()
    started = time.perf_counter()
    services.queues().send_sync({"job_id": job.job_id, "step": 0})
    steps, deadline = 0, time.monotonic() + _JOB_LIMIT_S
    while True:
        steps += _poll(pipe.reconciler, "reconcile", spent)
        record = jobs.load(store, job.job_id)
        if record is not None and record.phase == "done":
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"reconcile job {job.job_id} had not ended after {_JOB_LIMIT_S} s: {record}")
    reconciled = time.perf_counter()
    calls_at_done = meter.snapshot()
    jira = fake.requests[seen:]
    queued = pipe.depth(settings.events_queue)
    while True:
        handled = sum(
            _poll(poller, name, spent)
            for name, poller in (("reconcile", pipe.reconciler), ("writer", pipe.writer), ("committer", pipe.committer))
        )
        if handled == 0 and pipe.depth() == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"queues had not drained after {_JOB_LIMIT_S} s")
    finished = time.perf_counter()
    reconcile_calls = Meter.since(calls_at_start, calls_at_done)
    drain_calls = Meter.since(calls_at_done, meter.snapshot())

    reconcile_s, end_to_end_s = reconciled - started, finished - started
    fed, scanned = record.changes_fed, record.issues_scanned
    return {
        "state": record.state,
        "errors": [asdict(error) for error in record.errors],
        "steps": steps,
        "pages_scanned": record.pages_scanned,
        "issues_scanned": scanned,
        "issues_changed": record.issues_changed,
        "changes_fed": fed,
        "deletes_found": record.deletes_found,
        "reconcile_s": reconcile_s,
        "fake_jira_serving_s": fake.serving_s - serving,
        # Of reconcile_s: what neither Jira (client side, incl. the fake's answering) nor the backend took.
        "reconcile_own_s": reconcile_s - sum(reconcile_calls[s]["seconds"] for s in SERVICES),
        "reconcile_calls": reconcile_calls,
        "events_queued_when_done": queued,
        "drain_s": finished - reconciled,
        "writer_s": spent["writer"],
        "committer_s": spent["committer"],
        "drain_calls": drain_calls,
        "end_to_end_s": end_to_end_s,
        "reconcile_issues_per_s": scanned / reconcile_s if reconcile_s else None,
        "reconcile_changes_per_s": fed / reconcile_s if reconcile_s else None,
        "end_to_end_issues_per_s": scanned / end_to_end_s if end_to_end_s else None,
        "end_to_end_changes_per_s": fed / end_to_end_s if end_to_end_s else None,
        "commits": len(remote_commits(settings.git_remote, settings.git_branch)) - commits_before,
        "requests": count_requests(jira),
    }


def captured(model: JiraModel) -> dict[str, int]:
    """What of the site JSync holds once the queues drained: changelog entries and creations, captured and existing."""
    from pipeline import services

    store = services.store()
    out = dict.fromkeys(("entries_captured", "entries_existing", "creations_captured", "creations_existing"), 0)
    for issue in model.issues.values():
        recorded = store.recorded_entries(issue.id)
        out["entries_existing"] += len(issue.histories)
        out["entries_captured"] += sum(1 for h in issue.histories if h.id in recorded)
        out["creations_existing"] += 1
        out["creations_captured"] += "created" in recorded
    return out


def summary(backfill: dict[str, Any]) -> str:
    """The backfill's Jira cost per issue and what it captured, in one line (report.py prints the full table)."""
    requests, issues = backfill["requests"], backfill["issues"]
    kinds = ", ".join(f"{kind} {requests[kind]}" for kind in KINDS if requests.get(kind))
    return (
        f"reconcile backfill: {requests['total']} Jira requests for {issues:,} issues "
        f"({requests['total'] / issues:.3f} per issue: {kinds}); changelog entries captured "
        f"{backfill['entries_captured']:,} of {backfill['entries_existing']:,}, creations "
        f"{backfill['creations_captured']:,} of {backfill['creations_existing']:,}"
    )


def _poll(poller: Any, name: str, spent: Counter[str]) -> int:
    started = time.perf_counter()
    handled = int(poller.poll_once())
    spent[name] += time.perf_counter() - started
    return handled
