"""kill -9 of the local stack's whole process group, again and again while webhooks flow: how many acknowledged
changes are lost, and how many are committed twice (issue 12's target: none and none).

`python -m local` runs in a session of its own; at random moments `os.killpg(pid, SIGKILL)` takes down everything
it runs, and it is started again at once. Senders post each issue's versions in order, as Jira does: a delivery
that got no answer (connection refused or cut) is sent again, with the same identifier, until it gets one. At the
end the stack drains, and every event id that got a 202 must have its snapshot in the object store and appear
exactly once in the `Jira-Event-Id:` trailers of the commits on the remote.

On `aws` the state lives in the moto server (not killed); messages a killed poller had received come back only
after their visibility timeout (60 s), so that backend drains more slowly after the last kill.
"""

from __future__ import annotations

import http.client
import json
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.endtoend import Event, StackProcess, post
from bench.repos import issue_id, webhook
from bench.state import commit_event_ids
from pipeline.store import snapshot_key


@dataclass(frozen=True)
class Plan:
    events: int
    issues: int  # each gets events // issues versions, sent in order
    kills: int
    senders: int
    rate: float  # events a second over all senders, while the stack is up
    up_s: tuple[float, float]  # how long the stack runs between a start and the next kill, uniformly
    seed: int = 12


FULL = Plan(events=2000, issues=200, kills=10, senders=8, rate=80.0, up_s=(0.5, 3.0))
# On aws (moto) fewer events, for the same ten kills: the drain after them runs at moto's few events a second.
AWS_FULL = Plan(events=400, issues=40, kills=10, senders=8, rate=80.0, up_s=(0.5, 3.0))
QUICK = Plan(events=60, issues=12, kills=1, senders=4, rate=60.0, up_s=(0.3, 0.8))


@dataclass
class Deliveries:
    """What the senders did: ids that got a 202, and the deliveries that got none or another answer."""

    accepted: set[str] = field(default_factory=set)
    unanswered: int = 0  # attempts without an answer (each sent again until answered, as Jira retries)
    busy: int = 0  # 503: sent again
    refused: Counter[str] = field(default_factory=Counter)  # any other status: not retried (a bench bug)
    lock: threading.Lock = field(default_factory=threading.Lock)


class IssueSender(threading.Thread):
    """Sends the versions of its issues in order, round-robin over the issues, at `interval` per delivery."""

    def __init__(self, port: int, issues: list[int], versions: int, interval: float, out: Deliveries, tag: str) -> None:
        super().__init__(daemon=True)
        self.port, self.issues, self.versions, self.interval, self.out, self.tag = (
            port,
            issues,
            versions,
            interval,
            out,
            tag,
        )
        self.next_version = dict.fromkeys(issues, 0)
        self.pending: dict[int, Event] = {}  # the delivery of each issue waiting for an answer (same id, same body)
        self.last_ts: dict[int, int] = {}
        self.events: list[Event] = []
        self.halt = threading.Event()

    @property
    def done(self) -> bool:
        return all(v >= self.versions for v in self.next_version.values())

    def _event(self, issue: int) -> Event:
        if issue not in self.pending:
            version = self.next_version[issue]
            ts = max(int(time.time() * 1000), self.last_ts.get(issue, 0) + 1)
            self.last_ts[issue] = ts
            body = json.dumps(webhook(issue, version, ts)).encode()
            event = Event(f"{self.tag}-{issue}-{version}", issue, version, ts, body)
            self.pending[issue] = event
            self.events.append(event)
        return self.pending[issue]

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        next_at = time.monotonic()
        while not self.halt.is_set() and not self.done:
            for issue in self.issues:
                if self.halt.is_set() or self.next_version[issue] >= self.versions:
                    continue
                event = self._event(issue)
                status = post(conn, event)
                if status == 0:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                with self.out.lock:
                    if status == 202:
                        self.out.accepted.add(event.event_id)
                    elif status == 0:
                        self.out.unanswered += 1
                    elif status == 503:
                        self.out.busy += 1
                    else:
                        self.out.refused[str(status)] += 1
                if status not in (0, 503):
                    del self.pending[issue]
                    self.next_version[issue] += 1
                    next_at += self.interval
                    self.halt.wait(max(0.0, next_at - time.monotonic()))
                else:  # the stack is down or busy: try the same delivery again shortly
                    next_at = time.monotonic()
                    self.halt.wait(0.05)
        conn.close()


def run(
    workdir: Path, backend: str, *, quick: bool, aws_endpoint: str | None = None, aws_full: bool = False
) -> dict[str, Any]:
    plan = QUICK if quick else (AWS_FULL if backend == "aws" and not aws_full else FULL)
    versions = plan.events // plan.issues
    stack = StackProcess(workdir / "home", backend, aws_endpoint=aws_endpoint)  # default remote: a bare repo
    rng = random.Random(plan.seed)
    out: dict[str, Any] = {"backend": backend, "plan": plan.__dict__, "versions_per_issue": versions}
    deliveries = Deliveries()
    senders = [
        IssueSender(
            stack.port,
            list(range(t, plan.issues, plan.senders)),
            versions,
            plan.senders / plan.rate,
            deliveries,
            f"kill-{backend}",
        )
        for t in range(plan.senders)
    ]
    restarts: list[float] = []
    drain_limit = 600.0 if backend == "aws" else 120.0
    started = time.monotonic()
    try:
        stack.start()
        restarts.append(stack.startup_s or 0.0)
        for sender in senders:
            sender.start()
        kills, accepted_at_kill = 0, []
        while kills < plan.kills and not all(s.done for s in senders):
            time.sleep(rng.uniform(*plan.up_s))
            stack.kill_group()
            kills += 1
            accepted_at_kill.append(len(deliveries.accepted))
            stack.start()
            restarts.append(stack.startup_s or 0.0)
        out["kills"] = kills
        out["accepted_at_each_kill"] = accepted_at_kill
        for sender in senders:
            sender.join(600)
        sending_done = time.monotonic()
        out["send_s"] = sending_done - started
        drained = _drain(stack, deliveries.accepted, drain_limit)
        out["drain_s"] = drained - sending_done if drained else None
        out.update(_count(stack, deliveries, [e for s in senders for e in s.events]))
    except Exception as exc:
        for sender in senders:
            sender.halt.set()
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["stack_log_tail"] = stack.tail()
    finally:
        stack.stop()
        for sender in senders:
            sender.halt.set()
    out["restart_s"] = {
        "median": statistics.median(restarts) if restarts else None,
        "max": max(restarts, default=None),
    }
    out["run_s"] = time.monotonic() - started
    return out


def _drain(stack: StackProcess, accepted: set[str], limit: float) -> float | None:
    """When the events and commits queues were empty and every accepted id was on the remote; None: not in time."""
    s = stack.settings
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if stack.state.depth(s.events_queue) + stack.state.depth(s.commits_queue) == 0:
            ids, _ = commit_event_ids(stack.remote_dir)
            if accepted <= set(ids):
                return time.monotonic()
        time.sleep(0.5)
    return None


def _count(stack: StackProcess, deliveries: Deliveries, events: list[Event]) -> dict[str, Any]:
    ids, commits = commit_event_ids(stack.remote_dir)
    snapshots = stack.state.keys("snapshots/")
    by_id = {e.event_id: e for e in events}
    accepted = deliveries.accepted
    lost_store = sorted(i for i in accepted if snapshot_key(issue_id(by_id[i].index), by_id[i].timestamp_ms, i)
                        not in snapshots)  # fmt: skip
    lost_git = sorted(i for i in accepted if i not in ids)
    doubled = sorted(i for i, n in ids.items() if n > 1)
    return {
        "events": len(events),
        "accepted": len(accepted),
        "unanswered_resent": deliveries.unanswered,
        "busy_503_resent": deliveries.busy,
        "refused": dict(deliveries.refused),
        "commits": commits,
        "snapshots": len(snapshots),
        "lost_store": len(lost_store),
        "lost_git": len(lost_git),
        "lost": len(set(lost_store) | set(lost_git)),
        "doubled_git": len(doubled),
        "committed_without_a_202_seen": sum(1 for i in ids if i not in accepted),
        "examples": {"lost_store": lost_store[:5], "lost_git": lost_git[:5], "doubled_git": doubled[:5]},
    }
