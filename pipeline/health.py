"""Is the pipeline able to take and keep changes? Storage, queues, dead letters and the git remote, each checked."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.queues import queue_depth
from pipeline.settings import Settings


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


def run_checks(settings: Settings, s3: Any, sqs: Any, git_tip: Callable[[], Any]) -> dict[str, Check]:
    """Run every check in parallel; each reports on its own, so one slow part does not hide another."""
    checks: dict[str, Callable[[], Check]] = {
        "storage": lambda: _storage(settings, s3),
        "queues": lambda: _queues(settings, sqs),
        "dead_letters": lambda: _dead_letters(settings, sqs),
        "git": lambda: _git(git_tip),
    }
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = {name: pool.submit(_guarded, fn) for name, fn in checks.items()}
        return {name: f.result() for name, f in futures.items()}


def _guarded(fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except Exception as exc:  # a check that breaks is a failing check, with its reason
        return Check(False, f"{type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0][:300]


def _storage(settings: Settings, s3: Any) -> Check:
    s3.head_bucket(Bucket=settings.bucket)
    return Check(True, f"bucket {settings.bucket} reachable")


def _queues(settings: Settings, sqs: Any) -> Check:
    depths = {name: queue_depth(sqs, name) for name, _ in settings.queue_pairs}
    return Check(True, ", ".join(f"{n}: {d} waiting" for n, d in depths.items()))


def _dead_letters(settings: Settings, sqs: Any) -> Check:
    depths = {name: queue_depth(sqs, name) for _, name in settings.queue_pairs}
    stuck = {n: d for n, d in depths.items() if d}
    if stuck:
        listed = ", ".join(f"{n}: {d}" for n, d in stuck.items())
        return Check(False, f"messages in dead-letter queues ({listed}); fix the cause, then run make redrive")
    return Check(True, "dead-letter queues empty")


def _git(git_tip: Callable[[], Any]) -> Check:
    tip = git_tip()
    return Check(True, f"remote reachable, branch at {tip.decode()[:12]}" if tip else "remote reachable, branch empty")
