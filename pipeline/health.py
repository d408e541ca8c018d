"""Is the pipeline able to take and keep changes? Storage, queues, dead letters, git and deliveries, each checked.

Git is judged from the committer's own record of its last push (`gitstate/_push.json`), so health needs no git
credential: failing when the last push attempt failed. A read-only look at the remote adds to it: a local remote's
refs are read directly, and one that is gone fails the check at once; an http(s) remote is asked anonymously,
which only public repositories answer, so that probe alone never fails the check. A private remote that goes down
while JSync is idle therefore shows on the committer's next push attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline.backends import ObjectStore, QueueBus
from pipeline.refusals import RECENT_MINUTES, RefusalReport, report
from pipeline.settings import Settings
from pipeline.store import UNREADABLE_PREFIX, Store


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)  # what the check found, beside its verdict

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **self.facts}


@dataclass(frozen=True)
class GitProbe:
    """A look at the remote branch without credentials. `decisive`: failing to read it means the remote is gone
    (a local path), not merely that it wants credentials (http)."""

    tip: Callable[[], bytes | None]
    decisive: bool


def run_checks(
    settings: Settings,
    bus: QueueBus,
    store: Store,
    git_probe: GitProbe | None,
    now: float | None = None,
) -> dict[str, Check]:
    """Run every check in parallel; each reports on its own, so one slow part does not hide another."""
    at = time.time() if now is None else now
    checks: dict[str, Callable[[], Check]] = {
        "storage": lambda: _storage(store.objects),
        "queues": lambda: _queues(settings, bus),
        "dead_letters": lambda: _dead_letters(settings, bus),
        "git": lambda: _git(store, git_probe),
        "webhook": lambda: _webhook(report(store, at)),
        "set_aside": lambda: _set_aside(store),
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


_SET_ASIDE_LISTED = 1000


def _set_aside(store: Store) -> Check:
    """Accepted events the writer could not interpret: kept raw, but not captured until someone acts, like a DLQ."""
    keys, more = store.list_keys(UNREADABLE_PREFIX, None, _SET_ASIDE_LISTED)
    if not keys:
        return Check(True, "no events set aside", {"count": 0})
    count = f"{len(keys)}{'+' if more else ''}"
    example = store.read_json(keys[0])
    why = f" (e.g. {example.data.get('reason')}: {example.data.get('detail')})" if example else ""
    return Check(
        False,
        f"{count} accepted events could not be interpreted and were set aside{why}; their raw copies are kept and"
        " their issues are read again by the next reconcile; fix the cause, then run make redrive",
        {"count": len(keys)},
    )


def _storage(objects: ObjectStore) -> Check:
    return Check(True, f"{objects.check()} reachable")


def _queues(settings: Settings, bus: QueueBus) -> Check:
    depths = {name: bus.depth(name).total for name, _ in settings.queue_pairs}
    return Check(True, ", ".join(f"{n}: {d} waiting" for n, d in depths.items()))


def _dead_letters(settings: Settings, bus: QueueBus) -> Check:
    depths = {name: bus.depth(name).total for _, name in settings.queue_pairs}
    stuck = {n: d for n, d in depths.items() if d}
    if stuck:
        listed = ", ".join(f"{n}: {d}" for n, d in stuck.items())
        return Check(False, f"messages in dead-letter queues ({listed}); fix the cause, then run make redrive")
    return Check(True, "dead-letter queues empty")


def _git(store: Store, probe: GitProbe | None) -> Check:
    record = store.push_record() or {}
    last_push, last_error = record.get("last_push"), record.get("last_error")
    facts: dict[str, Any] = {"last_push": last_push, "last_error": last_error, "remote_tip": None}
    probe_note, probe_failed = "", False
    if probe is not None:
        try:
            tip = probe.tip()
            facts["remote_tip"] = tip.decode() if tip else None
            probe_note = f"remote branch at {tip.decode()[:12]}" if tip else "remote branch empty"
        except Exception as exc:
            probe_failed = probe.decisive
            probe_note = (
                f"remote unreachable ({_first_line(exc)})"
                if probe.decisive
                else f"remote not readable without credentials ({_first_line(exc)})"
            )
    if record.get("ok") is False and last_error:
        detail = f"last push failed at {last_error['at']} (failing since {last_error['since']}): {last_error['error']}"
        return Check(False, _joined(detail, probe_note), facts)
    pushed = f"last push at {last_push['at']}" if last_push else "no push recorded yet"
    return Check(not probe_failed, _joined(pushed, probe_note), facts)


def _joined(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _webhook(found: RefusalReport) -> Check:
    counts = {reason: n for reason, n in found.last_hour.items() if n}
    listed = ", ".join(f"{reason}: {n}" for reason, n in counts.items()) or "uncounted yet"
    facts: dict[str, Any] = {
        "refused_last_hour": found.last_hour,
        "last_accepted_at": _iso(found.last_accepted_ms),
    }
    more = f" (newest records only; {found.unread} more not read)" if found.unread else ""
    if found.all_refused:
        return Check(
            False,
            f"every delivery in the last {RECENT_MINUTES} minutes was refused and none accepted "
            f"(last hour: {listed}{more}); {_advice(counts)}",
            facts,
        )
    if counts or found.refused_recently:
        return Check(True, f"deliveries refused in the last hour: {listed}{more}; others accepted", facts)
    return Check(True, "no delivery refused in the last hour", facts)


def _advice(counts: dict[str, int]) -> str:
    worst = max(counts, key=lambda reason: counts[reason]) if counts else "signature"
    return {
        "signature": "check that Jira's webhook secret matches JSync's (README runbook: deliveries are refused)",
        "size": "bodies over 6 MiB are refused; reconcile reads those issues from Jira's REST API",
        "shape": "the payloads are not Jira webhooks JSync accepts; see the ingest log's error codes",
    }[worst]


def _iso(epoch_ms: int | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_ms / 1000)) if epoch_ms is not None else None
