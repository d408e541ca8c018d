"""End to end through the local stack (`python -m local`, i.e. LocalStack, in its own process), on either backend:
webhook -> 202 -> snapshot in the object store -> commit on the git remote; the highest rate sustained with nothing
lost; webhook -> commit while clients read the API; a bulk edit; ingest and API latency.

The stack pushes to a git http-backend remote (with a token). Commits are watched by reading that remote's bare
repository with dulwich; snapshots and queues by reading the stack's backend from this process (the SQLite file
read-only for `embedded`, the moto server for `aws`; see bench/state.py). Only loopback traffic.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import random
import signal
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

from dulwich.repo import Repo

from bench.motoserver import AWS_ENV
from bench.repos import issue_id, issue_key, webhook
from bench.state import _TRAILER, AwsState, EmbeddedState, StackState
from local.stack import free_port, stop_process
from pipeline.settings import load_settings
from pipeline.store import snapshot_key as store_snapshot_key

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("embedded", "aws")


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
    """`python -m local` (LocalStack) with its own home, port, backend and git remote, in a session of its own (so
    the whole process group can be killed, as from a terminal); stopped with SIGTERM.

    `git_remote` None: the stack's default, a bare repository under its home. `aws_endpoint`: the moto server
    for `backend="aws"`."""

    def __init__(
        self,
        home: Path,
        backend: str,
        *,
        git_remote: str | None = None,
        git_token: str | None = None,
        aws_endpoint: str | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r}: one of {', '.join(BACKENDS)}")
        if backend == "aws" and not aws_endpoint:
            raise ValueError("backend aws needs the moto server's endpoint")
        self.home = home
        self.backend = backend
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JSYNC_", "AWS_"))}
        env.update(
            JSYNC_HOME=str(home),
            JSYNC_PORT=str(self.port),
            JSYNC_BACKEND=backend,
            JSYNC_GIT_BRANCH="main",
            JSYNC_GIT_CACHE=str(home / "committer.git"),
        )
        if git_remote:
            env["JSYNC_GIT_REMOTE"] = git_remote
        if git_token:
            env["JSYNC_GIT_TOKEN"] = git_token
        if backend == "aws":
            env.update(AWS_ENV, AWS_ENDPOINT_URL=str(aws_endpoint))
        self.env = env
        self.settings = load_settings(env)
        self.remote_dir = Path(git_remote) if git_remote and "://" not in git_remote else home / "remote.git"
        self.state: StackState = (
            EmbeddedState(self.settings.database)
            if backend == "embedded"
            else AwsState(str(aws_endpoint), self.settings.bucket)
        )
        self.log = home.parent / f"stack-{home.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    def start(self, timeout: float = 90) -> StackProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "local"],
                cwd=str(ROOT),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the local stack exited early; see {self.log}:\n{self.tail()}")
            if self._health() == 200:
                self.startup_s = time.perf_counter() - started
                return self
            time.sleep(0.05)
        raise RuntimeError(f"the local stack did not become healthy in {timeout:.0f}s:\n{self.tail()}")

    def _health(self) -> int:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/api/v1/health")
            status = conn.getresponse().status
            conn.close()
            return status
        except (OSError, http.client.HTTPException):
            return 0

    def tail(self, chars: int = 3000) -> str:
        from pipeline.git.store import redact

        try:
            return redact(self.log.read_text(errors="replace")[-chars:])
        except OSError:
            return ""

    def kill_group(self) -> None:
        """SIGKILL to the stack's whole process group, as `kill -9 -PGID` from a terminal."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(30)
        self._proc = None

    def stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, grace=90)  # SIGTERM: the stack finishes its batches before exiting
        self._proc = None

    def depths(self) -> dict[str, int]:
        """Messages waiting or in flight on each queue: where a backlog sits says which stage is behind."""
        names = {"events": self.settings.events_queue, "commits": self.settings.commits_queue}
        return {label: self.state.depth(name) for label, name in names.items()}


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
    """Distinct events: 6 in 10 create an issue, 2 update a seeded issue (in git, new to the store), 2 update an
    issue created earlier in the run whose previous event was acknowledged at least half a second before. Each
    update is its issue's next version, so no two events share an issue's changelog id (the writer would take the
    second for a change already captured)."""

    def __init__(self, seed_files: int, tag: str) -> None:
        self.tag = tag
        self.seed_files = seed_files
        self.next_new = seed_files
        self.seeded = deque(random.Random(seed_files).sample(range(seed_files), seed_files))
        self.ready: deque[tuple[int, int, float]] = deque()
        self.last_ts: dict[int, int] = {}
        self.versions: dict[int, int] = {}
        self.seq = 0
        self.lock = threading.Lock()

    def next(self) -> Event:
        with self.lock:
            k, self.seq = self.seq, self.seq + 1
            slot = k % 10
            index, version = -1, 0
            if slot in (6, 7) and self.seeded:
                index = self.seeded.popleft()
            elif slot in (8, 9) and self.ready and self.ready[0][2] < time.monotonic() - 0.5:
                index = self.ready.popleft()[0]
            if index < 0:
                index, self.next_new = self.next_new, self.next_new + 1
            else:  # an update: the issue's next version (its changelog id is the version: never reuse one)
                version = self.versions.get(index, 0) + 1
            return self._event(k, index, version)

    def bulk(self, count: int) -> list[Event]:
        """A bulk edit: one update each of `count` issues (the seeded ones first), as Jira sends for a bulk change."""
        with self.lock:
            out = []
            for n in range(count):
                k, self.seq = self.seq, self.seq + 1
                index = n if n < self.seed_files else 5_000_000 + n  # past every issue the run creates
                version = self.versions.get(index, 0) + 1
                out.append(self._event(k, index, version))
            return out

    def _event(self, k: int, index: int, version: int) -> Event:
        ts = max(int(time.time() * 1000), self.last_ts.get(index, 0) + 1)
        self.last_ts[index] = ts
        self.versions[index] = max(self.versions.get(index, 0), version)
        event_id = f"{self.tag}-{k}"
        body = json.dumps(webhook(index, version, ts)).encode()
        return Event(event_id, index, version, ts, body)

    def acked(self, sent: Sent) -> None:
        if sent.status == 202:
            with self.lock:
                self.ready.append((sent.event.index, sent.event.version, sent.acked))


def post(conn: http.client.HTTPConnection, event: Event) -> int:
    """POST one webhook as Jira does; 0 when there was no answer (connection refused or broken)."""
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
        conn.close()
        return 0


class Sender:
    """Open-loop load: events at a fixed rate for a fixed time, POSTed by a pool of keep-alive connections."""

    def __init__(self, port: int, threads: int = 48) -> None:
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
                status = post(conn, event)
                if status == 0:  # the connection broke: one fresh attempt, as Jira would retry
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    status = post(conn, event)
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

    def burst(self, events: list[Event], senders: int) -> list[Sent]:
        """Closed loop: `senders` connections each POST their next event as soon as the previous one is answered."""
        jobs: queue.Queue[Event] = queue.Queue()
        for event in events:
            jobs.put(event)
        results: list[Sent] = []
        lock = threading.Lock()

        def worker() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            while True:
                try:
                    event = jobs.get_nowait()
                except queue.Empty:
                    break
                sent = time.monotonic()
                status = post(conn, event)
                if status == 0:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    status = post(conn, event)
                with lock:
                    results.append(Sent(event, sent, time.monotonic(), status, time.time()))
            conn.close()

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(senders)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(300)
        return sorted(results, key=lambda s: s.sent)


class ApiReaders:
    """`clients` keep-alive clients, each GETting /api/v1/issues/{key} every `interval` seconds (or as fast as
    answers come, if slower), on keys chosen at random from `keys`."""

    def __init__(self, port: int, keys: list[str], clients: int = 4, interval: float = 0.1) -> None:
        self.port, self.keys, self.clients, self.interval = port, keys, clients, interval
        self.times: list[float] = []
        self.statuses: dict[int, int] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> ApiReaders:
        for n in range(self.clients):
            thread = threading.Thread(target=self._run, args=(random.Random(n),), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, rng: random.Random) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        next_at = time.monotonic()
        while not self._halt.is_set():
            key = rng.choice(self.keys)
            started = time.monotonic()
            try:
                conn.request("GET", f"/api/v1/issues/{key}")
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                status = 0
            took = time.monotonic() - started
            with self._lock:
                self.times.append(took)
                self.statuses[status] = self.statuses.get(status, 0) + 1
            next_at += self.interval
            self._halt.wait(max(0.0, next_at - time.monotonic()))
        conn.close()

    def stop(self) -> dict[str, Any]:
        self._halt.set()
        for thread in self._threads:
            thread.join(30)
        return {
            **summary_ms(self.times),
            "clients": self.clients,
            "interval_ms": self.interval * 1000,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


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
        if self.ident is not None:  # started
            self.join(5)


class Snapshots:
    """Which snapshots exist in the stack's object store; read only while draining, never while the load runs."""

    def __init__(self, state: StackState) -> None:
        self.state = state
        self.seen: set[str] = set()

    def poll(self) -> None:
        self.seen |= self.state.keys("snapshots/")


def _wait_for(events: list[Event], git: GitWatcher, snaps: Snapshots, timeout: float) -> float:
    """Seconds until every event is in git and the object store, or `timeout` if some never arrived."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(e.event_id in git.seen for e in events):
            snaps.poll()
            if all(e.snapshot_key in snaps.seen for e in events):
                return time.monotonic() - started
        time.sleep(0.1)
    snaps.poll()
    return timeout


# --- phases ---------------------------------------------------------------------------------------------
def latency_phase(
    stack: StackProcess,
    sender: Sender,
    workload: Workload,
    git: GitWatcher,
    rate: float,
    seconds: float,
    readers: int,
    drain_limit: float,
    warmup_events: int = 20,
) -> dict[str, Any]:
    """Webhooks at `rate` while `readers` clients poll the issues API: 202 -> snapshot written (its
    capture.captured_at, so nothing polls the store while it works) and 202 -> commit on the remote (seen by the
    git watcher); the API's latency under that load."""
    snaps = Snapshots(stack.state)
    # Warm the handlers first (lazy imports, the committer's first fetch): steady state is what is measured.
    warmup = sender.run(warmup_events, 1, workload, lambda _: None)
    warm = [s for s in warmup if s.status == 202]
    _wait_for([s.event for s in warm], git, snaps, timeout=drain_limit)
    keys = sorted({issue_key(s.event.index) for s in warm}) or [issue_key(0)]
    api = ApiReaders(stack.port, keys, clients=readers).start() if readers else None
    sent = sender.run(rate, seconds, workload, lambda _: None)
    depths = stack.depths()
    accepted = [s for s in sent if s.status == 202]
    drain = _wait_for([s.event for s in accepted], git, snaps, timeout=drain_limit)
    api_under_load = api.stop() if api else None
    to_store: list[float] = []
    for s in accepted:
        if s.event.snapshot_key in snaps.seen:
            body = stack.state.get(s.event.snapshot_key)
            if body:
                captured_ms = json.loads(body)["capture"]["captured_at"]
                to_store.append(max(0.0, captured_ms / 1000 - s.acked_wall))
    to_git = [max(0.0, git.seen[s.event.event_id] - s.acked) for s in accepted if s.event.event_id in git.seen]
    return {
        "rate": rate,
        "seconds": seconds,
        "warmup_events": len(warmup),
        "sent": len(sent),
        "accepted": len(accepted),
        "in_store": len(to_store),
        "in_git": len(to_git),
        "drain_s": drain,
        "queues_when_sending_stopped": depths,
        "ack": summary_ms([s.acked - s.sent for s in sent]),
        "to_store": summary_ms(to_store),
        "to_git": summary_ms(to_git),
        "api_under_load": api_under_load,
        "git_poll_ms": git.interval * 1000,
        "_accepted": accepted,
    }


def api_phase(stack: StackProcess, keys: list[str], requests: int) -> dict[str, Any]:
    """Sequential GETs with nothing else running."""
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


def bulk_phase(
    stack: StackProcess, sender: Sender, workload: Workload, git: GitWatcher, count: int, senders: int, limit: float
) -> dict[str, Any]:
    """A bulk edit: `count` webhooks from `senders` concurrent connections, as fast as the stack answers; the
    figure is the time from the last 202 until every accepted event is committed on the remote."""
    snaps = Snapshots(stack.state)
    events = workload.bulk(count)
    started = time.monotonic()
    sent = sender.burst(events, senders)
    accepted = [s for s in sent if s.status == 202]
    last_ack = max((s.acked for s in accepted), default=started)
    depths = stack.depths()
    drain = _wait_for([s.event for s in accepted], git, snaps, timeout=limit)
    in_git = [git.seen[s.event.event_id] for s in accepted if s.event.event_id in git.seen]
    complete = len(in_git) == len(accepted) == count
    return {
        "events": count,
        "senders": senders,
        "sent": len(sent),
        "accepted": len(accepted),
        "in_git": len(in_git),
        "in_store": sum(1 for s in accepted if s.event.snapshot_key in snaps.seen),
        "send_s": last_ack - started,
        "ingest_rate": len(accepted) / (last_ack - started) if last_ack > started else None,
        "ack": summary_ms([s.acked - s.sent for s in sent]),
        "queues_at_last_ack": depths,
        # None when some never arrived within the limit: the figure would be a lower bound.
        "last_ack_to_all_in_git_s": max(0.0, max(in_git) - last_ack) if complete and in_git else None,
        "all_in_git_and_store_s": drain,
        "limit_s": limit,
    }


def rate_steps(
    stack: StackProcess,
    sender: Sender,
    workload: Workload,
    git: GitWatcher,
    rates: list[float],
    seconds: float,
    drain_limit: float,
) -> dict[str, Any]:
    """Step the rate up; a step holds when the load was offered, all accepted, all in the store and git within
    `drain_limit` after sending stopped, and the backlog (accepted, not yet committed) stopped growing."""
    snaps = Snapshots(stack.state)
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
        depths = stack.depths()
        accepted = [s for s in sent if s.status == 202]
        span = (sent[-1].sent - sent[0].sent) if len(sent) > 1 else seconds
        achieved = (len(sent) - 1) / span if span > 0 else 0.0
        drain = _wait_for([s.event for s in accepted], git, snaps, timeout=drain_limit)
        lost_git = sum(1 for s in accepted if s.event.event_id not in git.seen)
        lost_store = sum(1 for s in accepted if s.event.snapshot_key not in snaps.seen)
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
            "lost_store": lost_store,
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
        if lost_store or lost_git:
            reasons.append(f"{lost_store} missing in the store, {lost_git} missing in git after {drain_limit:.0f}s")
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


@dataclass(frozen=True)
class Plan:
    latency_rate: float
    latency_seconds: float
    readers: int
    api_requests: int
    rates: tuple[float, ...]
    step_seconds: float
    drain_limit: float
    bulk_events: int
    bulk_senders: int
    warmup_events: int = 20


FULL = Plan(
    latency_rate=50.0,
    latency_seconds=10.0,
    readers=4,
    api_requests=300,
    rates=(20.0, 50.0, 100.0, 200.0, 300.0, 400.0, 600.0),
    step_seconds=5.0,
    drain_limit=30.0,
    bulk_events=1000,
    bulk_senders=16,
)
# Enough to run every phase's code on both backends, little enough for `make test` on a busy 2-core machine.
QUICK = Plan(
    latency_rate=10.0,
    latency_seconds=1.0,
    readers=4,
    api_requests=20,
    rates=(10.0,),
    step_seconds=1.0,
    drain_limit=20.0,
    bulk_events=30,
    bulk_senders=16,
    warmup_events=5,
)


# moto captures a few events a second on a busy 2-core machine: the full plan would keep it busy for most of an
# hour. The same phases with fewer events (its rate and latencies do not need more to show); `--aws-full` for FULL.
AWS_FULL = Plan(
    latency_rate=50.0,
    latency_seconds=4.0,
    readers=4,
    api_requests=300,
    rates=(5.0, 10.0, 20.0, 50.0),
    step_seconds=5.0,
    drain_limit=30.0,
    bulk_events=200,
    bulk_senders=16,
)


def plan_for(backend: str, quick: bool, aws_full: bool = False) -> Plan:
    if quick:
        return QUICK
    return AWS_FULL if backend == "aws" and not aws_full else FULL


def run(
    workdir: Path,
    backend: str,
    remote_dir: Path,
    remote_url: str,
    token: str | None,
    seed_files: int,
    *,
    quick: bool,
    aws_endpoint: str | None = None,
    aws_full: bool = False,
) -> dict[str, Any]:
    """Sections 3 and 4 for one backend against one stack; the remote is `remote_url` (served from `remote_dir`)."""
    plan = plan_for(backend, quick, aws_full)
    stack = StackProcess(workdir / "home", backend, git_remote=remote_url, git_token=token, aws_endpoint=aws_endpoint)
    git = GitWatcher(remote_dir)
    out: dict[str, Any] = {
        "backend": backend,
        "backend_detail": f"SQLite {stack.settings.database}" if backend == "embedded" else f"moto at {aws_endpoint}",
        "remote": "git http-backend (smart HTTP, Basic-auth token)",
        "seed_files": seed_files,
        "plan": plan.__dict__,
    }
    try:
        stack.start()
        out["stack_startup_s"] = stack.startup_s
        git.poll()
        git.start()
        sender = Sender(stack.port)
        workload = Workload(seed_files, f"e2e-{backend}")
        # moto falls behind at 50 ev/s: wait long enough on aws for every event to arrive, so its p95 is a figure.
        slow = backend == "aws" and not quick
        latency = latency_phase(
            stack,
            sender,
            workload,
            git,
            plan.latency_rate,
            plan.latency_seconds,
            plan.readers,
            plan.drain_limit * (6 if slow else 1),
            plan.warmup_events,
        )
        accepted: list[Sent] = latency.pop("_accepted")
        out["latency"] = latency
        keys = sorted({issue_key(s.event.index) for s in accepted}) or [issue_key(0)]
        out["api"] = api_phase(stack, keys, plan.api_requests)
        out["bulk"] = bulk_phase(
            stack, sender, workload, git, plan.bulk_events, plan.bulk_senders, 300.0 if slow else 60.0
        )
        out["sustained"] = rate_steps(
            stack, sender, workload, git, list(plan.rates), plan.step_seconds, plan.drain_limit
        )
        out["commits_seen"] = git.commits
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["stack_log_tail"] = stack.tail()
    finally:
        git.stop()
        stack.stop()
    return out
