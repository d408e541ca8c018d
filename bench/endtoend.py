"""End to end through the local stack (`python -m local`, i.e. LocalStack, in its own process): webhook -> 202 ->
snapshot in S3 -> commit on the git remote; the highest rate sustained with nothing lost; ingest and API latency.

The stack pushes to a git http-backend remote (with a token). Commits are watched by reading that remote's bare
repository with dulwich; snapshots by listing the local S3 (moto) bucket. Only loopback traffic.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from dulwich.repo import Repo

from bench.repos import issue_id, issue_key, webhook
from local.stack import free_port, stop_process
from pipeline.queues import queue_depth
from pipeline.settings import load_settings
from pipeline.store import snapshot_key as store_snapshot_key

ROOT = Path(__file__).resolve().parents[1]
_TRAILER = re.compile(rb"^Jira-Event-Id: (\S+)", re.MULTILINE)


def percentile(values: Iterable[float], pct: float) -> float | None:
    data = sorted(values)
    if not data:
        return None
    rank = (len(data) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def summary_ms(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    return {
        "count": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


# --- the stack ------------------------------------------------------------------------------------------
class StackProcess:
    """`python -m local` (LocalStack) with its own home, ports and git remote; stopped with SIGTERM."""

    def __init__(self, home: Path, git_remote: str, git_token: str | None) -> None:
        self.home = home
        self.port, self.moto_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JSYNC_", "AWS_"))}
        env.update(
            JSYNC_HOME=str(home),
            JSYNC_PORT=str(self.port),
            JSYNC_MOTO_PORT=str(self.moto_port),
            JSYNC_GIT_REMOTE=git_remote,
            JSYNC_GIT_BRANCH="main",
            JSYNC_GIT_CACHE=str(home / "committer.git"),
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        if git_token:
            env["JSYNC_GIT_TOKEN"] = git_token
        self.env = env
        self.settings = load_settings(env)
        self.log = home.parent / "stack.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    def start(self, timeout: float = 90) -> StackProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "local"], cwd=str(ROOT), env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the local stack exited early; see {self.log}:\n{self.tail()}")
            if (self.home / "endpoint").exists() and self._health() == 200:
                self.startup_s = time.perf_counter() - started
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the local stack did not become healthy in {timeout:.0f}s:\n{self.tail()}")

    def _health(self) -> int:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/api/v1/health")
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return 0

    def tail(self, chars: int = 3000) -> str:
        from pipeline.gitstore import redact

        try:
            return redact(self.log.read_text(errors="replace")[-chars:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, grace=90)  # SIGTERM: the stack saves its state before exiting
        self._proc = None

    def aws(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


# --- what is sent ---------------------------------------------------------------------------------------
@dataclass
class Event:
    event_id: str
    index: int
    version: int
    timestamp_ms: int
    body: bytes

    @property
    def snapshot_key(self) -> str:
        return store_snapshot_key(issue_id(self.index), self.timestamp_ms, self.event_id)


@dataclass
class Sent:
    event: Event
    sent: float  # monotonic
    acked: float
    status: int
    acked_wall: float  # time.time(), to compare with the writer's capture.captured_at


class Workload:
    """Distinct events: 6 in 10 create an issue, 2 update a seeded issue (in git, new to S3), 2 update an issue
    created earlier in the run whose previous event was acknowledged at least half a second before."""

    def __init__(self, seed_files: int, tag: str) -> None:
        self.tag = tag
        self.next_new = seed_files
        self.seeded = deque(random.Random(seed_files).sample(range(seed_files), seed_files))
        self.ready: deque[tuple[int, int, float]] = deque()
        self.last_ts: dict[int, int] = {}
        self.seq = 0
        self.lock = threading.Lock()

    def next(self) -> Event:
        with self.lock:
            k, self.seq = self.seq, self.seq + 1
            slot = k % 10
            index, version = -1, 0
            if slot in (6, 7) and self.seeded:
                index, version = self.seeded.popleft(), 1
            elif slot in (8, 9) and self.ready and self.ready[0][2] < time.monotonic() - 0.5:
                prev_index, prev_version, _ = self.ready.popleft()
                index, version = prev_index, prev_version + 1
            if index < 0:
                index, self.next_new = self.next_new, self.next_new + 1
            ts = max(int(time.time() * 1000), self.last_ts.get(index, 0) + 1)
            self.last_ts[index] = ts
        event_id = f"{self.tag}-{k}"
        body = json.dumps(webhook(index, version, ts)).encode()
        return Event(event_id, index, version, ts, body)

    def acked(self, sent: Sent) -> None:
        if sent.status == 202:
            with self.lock:
                self.ready.append((sent.event.index, sent.event.version, sent.acked))


class Sender:
    """Open-loop load: events at a fixed rate for a fixed time, POSTed by a pool of keep-alive connections."""

    def __init__(self, port: int, threads: int = 32) -> None:
        self.port = port
        self.threads = threads

    def run(self, rate: float, seconds: float, workload: Workload, on_ack: Callable[[Sent], None]) -> list[Sent]:
        jobs: queue.Queue[Event | None] = queue.Queue()
        results: list[Sent] = []
        lock = threading.Lock()

        def worker() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            while (event := jobs.get()) is not None:
                sent = time.monotonic()
                status = self._post(conn, event)
                if status == 0:  # the connection broke: one fresh attempt, as Jira would retry
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    status = self._post(conn, event)
                record = Sent(event, sent, time.monotonic(), status, time.time())
                with lock:
                    results.append(record)
                workload.acked(record)
                on_ack(record)
            conn.close()

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(self.threads)]
        for t in pool:
            t.start()
        count = max(1, round(rate * seconds))
        start = time.monotonic()
        for k in range(count):
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            jobs.put(workload.next())
        for _ in pool:
            jobs.put(None)
        for t in pool:
            t.join(120)
        return sorted(results, key=lambda s: s.sent)

    def _post(self, conn: http.client.HTTPConnection, event: Event) -> int:
        try:
            conn.request(
                "POST",
                "/webhook",
                body=event.body,
                headers={"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": event.event_id},
            )
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            return 0


# --- what arrives ---------------------------------------------------------------------------------------
class GitWatcher(threading.Thread):
    """Polls the remote's branch (the served bare repository, read with dulwich) for new commits' event ids."""

    def __init__(self, repo: Path, interval: float = 0.05) -> None:
        super().__init__(name="git-watcher", daemon=True)
        self.repo = repo
        self.interval = interval
        self.seen: dict[str, float] = {}
        self.commits = 0
        self._last: bytes | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a ref read mid-update: try again next tick
                continue

    def poll(self) -> None:
        repo = Repo(str(self.repo))
        try:
            tip = repo.refs[b"refs/heads/main"] if b"refs/heads/main" in repo.refs else None  # noqa: SIM401
            if tip is None or tip == self._last:
                return
            now = time.monotonic()
            sha: bytes | None = tip
            found: list[str] = []
            while sha is not None and sha != self._last:
                commit = repo[sha]
                found += [m.decode() for m in _TRAILER.findall(commit.message)]  # type: ignore[attr-defined]
                self.commits += 1
                parents = commit.parents  # type: ignore[attr-defined]
                sha = parents[0] if parents else None
            for event_id in found:
                self.seen.setdefault(event_id, now)
            self._last = tip
        finally:
            repo.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


class S3Snapshots:
    """Which snapshots exist (listing snapshots/); polled only while draining, never while the load runs."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.seen: set[str] = set()

    def poll(self) -> None:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="snapshots/")
        for page in pages:
            self.seen.update(item["Key"] for item in page.get("Contents", []))


def _wait_for(events: list[Event], git: GitWatcher, s3: S3Snapshots, timeout: float) -> float:
    """Seconds until every event is in git and S3, or `timeout` if some never arrived."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(e.event_id in git.seen for e in events):
            s3.poll()
            if all(e.snapshot_key in s3.seen for e in events):
                return time.monotonic() - started
        time.sleep(0.1)
    s3.poll()
    return timeout


def queue_depths(stack: StackProcess, sqs: Any) -> dict[str, int]:
    """Messages waiting or in flight on each queue: where a backlog sits says which stage is behind."""
    names = {"events": stack.settings.events_queue, "commits": stack.settings.commits_queue}
    return {label: queue_depth(sqs, name) for label, name in names.items()}


# --- phases ---------------------------------------------------------------------------------------------
def latency_phase(
    stack: StackProcess, sender: Sender, workload: Workload, git: GitWatcher, rate: float, seconds: float
) -> dict[str, Any]:
    """Webhooks at `rate`: 202 -> snapshot written (its capture.captured_at, so nothing polls the stack's S3
    while it works) and 202 -> commit on the remote (seen by the git watcher)."""
    s3 = S3Snapshots(stack.aws("s3"), stack.settings.bucket)
    # Warm the handlers first (lazy imports, the committer's first fetch): steady state is what is measured.
    warmup = sender.run(10, 1, workload, lambda _: None)
    _wait_for([s.event for s in warmup if s.status == 202], git, s3, timeout=30)
    sent = sender.run(rate, seconds, workload, lambda _: None)
    depths = queue_depths(stack, stack.aws("sqs"))
    accepted = [s for s in sent if s.status == 202]
    drain = _wait_for([s.event for s in accepted], git, s3, timeout=30)
    client = stack.aws("s3")
    to_s3: list[float] = []
    for s in accepted:
        if s.event.snapshot_key in s3.seen:
            body = client.get_object(Bucket=stack.settings.bucket, Key=s.event.snapshot_key)["Body"].read()
            captured_ms = json.loads(body)["capture"]["captured_at"]
            to_s3.append(max(0.0, captured_ms / 1000 - s.acked_wall))
    to_git = [max(0.0, git.seen[s.event.event_id] - s.acked) for s in accepted if s.event.event_id in git.seen]
    return {
        "rate": rate,
        "seconds": seconds,
        "warmup_events": len(warmup),
        "sent": len(sent),
        "accepted": len(accepted),
        "in_s3": len(to_s3),
        "in_git": len(to_git),
        "drain_s": drain,
        "queues_when_sending_stopped": depths,
        "ack": summary_ms([s.acked - s.sent for s in sent]),
        "to_s3": summary_ms(to_s3),
        "to_git": summary_ms(to_git),
        "git_poll_ms": git.interval * 1000,
        "_accepted": accepted,
    }


def api_phase(stack: StackProcess, keys: list[str], requests: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    times: list[float] = []
    statuses: dict[int, int] = {}
    rng = random.Random(6)
    try:
        for _ in range(requests):
            key = rng.choice(keys)
            started = time.monotonic()
            conn.request("GET", f"/api/v1/issues/{key}")
            response = conn.getresponse()
            response.read()
            times.append(time.monotonic() - started)
            statuses[response.status] = statuses.get(response.status, 0) + 1
    finally:
        conn.close()
    return {**summary_ms(times), "statuses": {str(k): v for k, v in statuses.items()}}


def rate_steps(
    stack: StackProcess,
    sender: Sender,
    workload: Workload,
    git: GitWatcher,
    rates: list[float],
    seconds: float,
    drain_limit: float,
) -> dict[str, Any]:
    """Step the rate up; a step holds when the load was offered, all accepted, all in S3 and git within
    `drain_limit` after sending stopped, and the backlog (accepted, not yet committed) stopped growing."""
    s3 = S3Snapshots(stack.aws("s3"), stack.settings.bucket)
    sqs = stack.aws("sqs")
    steps: list[dict[str, Any]] = []
    best: float | None = None
    for rate in rates:
        acked: list[Sent] = []
        samples: list[tuple[float, int]] = []
        sampling = threading.Event()

        def sample(
            acked: list[Sent] = acked, samples: list[tuple[float, int]] = samples, sampling: threading.Event = sampling
        ) -> None:
            start = time.monotonic()
            while not sampling.wait(0.25):
                done = [s for s in list(acked) if s.status == 202]
                backlog = sum(1 for s in done if s.event.event_id not in git.seen)
                samples.append((time.monotonic() - start, backlog))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sent = sender.run(rate, seconds, workload, acked.append)
        sampling.set()
        sampler.join(5)
        depths = queue_depths(stack, sqs)
        accepted = [s for s in sent if s.status == 202]
        span = (sent[-1].sent - sent[0].sent) if len(sent) > 1 else seconds
        achieved = (len(sent) - 1) / span if span > 0 else 0.0
        drain = _wait_for([s.event for s in accepted], git, s3, timeout=drain_limit)
        lost_git = sum(1 for s in accepted if s.event.event_id not in git.seen)
        lost_s3 = sum(1 for s in accepted if s.event.snapshot_key not in s3.seen)
        mid = [b for t, b in samples if abs(t - seconds / 2) <= 0.5]
        end = [b for t, b in samples if t >= seconds - 1.0]
        growth = (statistics.mean(end) if end else 0.0) - (statistics.mean(mid) if mid else 0.0)
        tolerance = max(10.0, 0.1 * rate * seconds / 2)
        to_git = [git.seen[s.event.event_id] - s.acked for s in accepted if s.event.event_id in git.seen]
        step = {
            "rate": rate,
            "achieved_rate": achieved,
            "sent": len(sent),
            "accepted": len(accepted),
            "lost_s3": lost_s3,
            "lost_git": lost_git,
            "drain_s": drain,
            "backlog_max": max((b for _, b in samples), default=0),
            "backlog_growth": growth,
            "backlog_tolerance": tolerance,
            "queues_when_sending_stopped": depths,
            "ack": summary_ms([s.acked - s.sent for s in sent]),
            "to_git": summary_ms(to_git),
        }
        reasons = []
        if achieved < 0.9 * rate:
            reasons.append(f"offered only {achieved:.0f}/s (ingest answered too slowly)")
        if len(accepted) < len(sent):
            reasons.append(f"{len(sent) - len(accepted)} not accepted")
        if lost_s3 or lost_git:
            reasons.append(f"{lost_s3} missing in S3, {lost_git} missing in git after {drain_limit:.0f}s")
        if growth > tolerance:
            reasons.append(f"backlog grew by {growth:.0f} in the second half")
        step["sustained"] = not reasons
        step["why_not"] = "; ".join(reasons)
        steps.append(step)
        if reasons:
            break
        best = rate
    return {"seconds_per_step": seconds, "drain_limit_s": drain_limit, "steps": steps, "highest_sustained": best}


def ingest_import(runs: int = 3) -> dict[str, Any]:
    """Fresh interpreters: `-X importtime` cumulative for functions.ingest, and wall time over `-c pass`."""
    cumulative: list[float] = []
    walls: list[float] = []
    bare: list[float] = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import functions.ingest"],
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=60,
        )
        for line in proc.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == "functions.ingest":
                cumulative.append(int(parts[1].strip()) / 1000)
        for code, out in (("import functions.ingest", walls), ("pass", bare)):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), check=True, timeout=60)
            out.append(time.perf_counter() - started)
    return {
        "importtime_cumulative_ms": statistics.median(cumulative) if cumulative else None,
        "fresh_import_wall_ms": 1000 * (statistics.median(walls) - statistics.median(bare)),
        "runs": runs,
    }


def run(
    workdir: Path,
    remote_dir: Path,
    remote_url: str,
    token: str | None,
    seed_files: int,
    *,
    quick: bool,
) -> dict[str, Any]:
    """Everything of sections 3 and 4 against one stack; the remote is `remote_url` (served from `remote_dir`)."""
    stack = StackProcess(workdir / "home", remote_url, token)
    git = GitWatcher(remote_dir)
    out: dict[str, Any] = {"remote": "git http-backend (smart HTTP, Basic-auth token)", "seed_files": seed_files}
    try:
        stack.start()
        out["stack_startup_s"] = stack.startup_s
        git.poll()
        git.start()
        sender = Sender(stack.port)
        workload = Workload(seed_files, "e2e")
        rate, seconds = 20.0, (2.0 if quick else 10.0)
        latency = latency_phase(stack, sender, workload, git, rate, seconds)
        accepted: list[Sent] = latency.pop("_accepted")
        out["latency"] = latency
        keys = sorted({issue_key(s.event.index) for s in accepted}) or [issue_key(0)]
        out["api"] = api_phase(stack, keys, 30 if quick else 300)
        out["sustained"] = rate_steps(
            stack,
            sender,
            workload,
            git,
            [10.0, 20.0] if quick else [10.0, 20.0, 50.0, 100.0, 200.0, 400.0],
            1.0 if quick else 5.0,
            10.0 if quick else 20.0,
        )
        out["commits_seen"] = git.commits
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["stack_log_tail"] = stack.tail()
    finally:
        git.stop()
        stack.stop()
    out["ingest_import"] = ingest_import(2 if quick else 5)
    return out
