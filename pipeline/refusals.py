"""Refused webhook deliveries made visible: a log line and a metric each, counts in S3, summed for health.

A wrong secret in Jira gets every delivery a 401, and Jira does not retry a 401; this module makes that seen.
How, and why so (issue 11):

- **One line per refusal**, JSON on stdout: status, error code, reason (`signature`, `size`, `shape`), the delivery
  id (`X-Atlassian-Webhook-Identifier`), the body's size and user agent; never the body, the signature or the
  secret. The same line carries CloudWatch's embedded metric format (EMF): metric `WebhookRefused`, namespace
  `JSync`, dimensions `stage` and `reason`, which the deployed alarm watches. It is written by hand: ingest ships
  no Powertools (no layer, stdlib and the runtime's boto3 only; Powertools' Metrics import alone costs ~85 ms) and
  EMF is one documented JSON shape.
- **Counts live in the bucket**, because ingest runs as many Lambda instances and health in another function.
  Each ingest instance counts in memory per minute and writes its own object,
  `ops/webhook/refused/<yyyymmddHHMM>/<instance>.json`, holding its running totals for that minute: on each of
  its first `EXACT_UP_TO` refusals of a minute (so a few stray 401s are counted exactly, and a single one is seen
  at once), then at most every `FLUSH_SECONDS`. A flood of bad deliveries
  thus costs an instance a few PUTs a minute whatever its rate; an object is replaced, never added to, so a retried
  write cannot count twice; accepted deliveries never touch any of it. Lambda has no hook before an instance is
  frozen, so counts made after its last write wait for its next refusal: a count can lag, the fact that a minute
  had refusals never does.
- **"Accepted" comes from the writer**, which sees every accepted webhook whichever ingest instance took it: it
  writes the newest webhook's received time to `ops/webhook/last_accepted.json`, at most once per minute of
  received time per writer instance. Ingest could not say it: an instance that only accepts would have to write
  on the accepting path (latency), and otherwise health would never hear of the deliveries it took.
- **Health** lists the last hour's refusal objects (a LIST page per 1,000 instance-minutes; at most `MAX_READS`
  newest are read, in parallel), sums them by reason, and reports every delivery refused when some were refused
  in the last 15 minutes and none was accepted in that time (known to within the writer's minute).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.messages import QueuedEvent
from pipeline.store import WEBHOOK_ACCEPTED_KEY, WEBHOOK_REFUSED_PREFIX, Store, webhook_refused_key

log = logging.getLogger(__name__)

REASONS = ("signature", "size", "shape")
_REASON_BY_STATUS = {401: "signature", 413: "size", 400: "shape", 415: "shape"}
NAMESPACE = "JSync"
METRIC = "WebhookRefused"
FLUSH_SECONDS = 10.0
EXACT_UP_TO = 10  # an instance writes each of its first refusals of a minute, so a few are counted exactly
ACCEPTED_EVERY_MS = 60_000
RECENT_MINUTES = 15
HOUR_MINUTES = 60
MAX_READS = 120
_MAX_LISTED = 10_000  # instance-minutes listed at most: ten LIST pages
_CLIP = 120


def reason_for(status: int) -> str | None:
    """The refusal's group, or None for an answer that is not a refusal (503: Jira retries it)."""
    return _REASON_BY_STATUS.get(status)


def minute_of(epoch_seconds: float) -> str:
    return time.strftime("%Y%m%d%H%M", time.gmtime(epoch_seconds))


def log_refusal(status: int, code: str, headers: dict[str, str], size: int, stage: str, now: float) -> str | None:
    """Write the one line for an answer other than 202; returns its reason (None when it is no refusal)."""
    reason = reason_for(status)
    line: dict[str, Any] = {
        "level": "WARNING" if reason else "ERROR",
        "message": "webhook refused" if reason else "webhook not queued; Jira retries it",
        "status": status,
        "error": code,
        "reason": reason,
        "delivery_id": _clip(headers.get("x-atlassian-webhook-identifier")),
        "bytes": size,
        "user_agent": _clip(headers.get("user-agent")),
    }
    if reason:
        line.update(
            {
                "_aws": {
                    "Timestamp": int(now * 1000),
                    "CloudWatchMetrics": [
                        {
                            "Namespace": NAMESPACE,
                            "Dimensions": [["stage", "reason"]],
                            "Metrics": [{"Name": METRIC, "Unit": "Count"}],
                        }
                    ],
                },
                "stage": stage,
                METRIC: 1,
            }
        )
    # Straight to stdout, as Lambda takes it: a logging handler's prefix would stop CloudWatch reading the metric.
    print(json.dumps(line, separators=(",", ":")), flush=True)
    return reason


def _clip(value: str | None) -> str | None:
    return value[:_CLIP] if value else None


class RefusalCounter:
    """One ingest instance's refusals per minute, written to its own object in the store, rarely."""

    def __init__(self, instance: str | None = None, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.instance = instance or uuid.uuid4().hex[:16]
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()  # the local stack runs ingest on several threads of one process
        self._store: Store | None = None
        self._counts: dict[str, dict[str, int]] = {}
        self._dirty: set[str] = set()
        self._written_at = -math.inf

    def refused(self, reason: str, store: Store, now: float) -> None:
        minute = minute_of(now)
        with self._lock:
            if store is not self._store:  # another bucket (a restarted local stack, a test): it knows nothing yet
                self._store, self._counts, self._dirty, self._written_at = store, {}, set(), -math.inf
            counts = self._counts.setdefault(minute, dict.fromkeys(REASONS, 0))
            counts[reason] += 1
            self._dirty.add(minute)
            few = sum(counts.values()) <= EXACT_UP_TO
            if not few and now - self._written_at < self.flush_seconds:
                return
            self._written_at = now
            for pending in sorted(self._dirty):
                body = {"minute": pending, "instance": self.instance, "refused": dict(self._counts[pending])}
                try:
                    store.put_json(webhook_refused_key(pending, self.instance), body)
                except Exception as exc:  # the answer Jira gets must not change; the counts wait for the next write
                    log.warning("could not record webhook refusals: %s", type(exc).__name__)
                    break
                self._dirty.discard(pending)
            horizon = minute_of(now - HOUR_MINUTES * 60)
            for old in [m for m in self._counts if m <= horizon]:
                del self._counts[old]
                self._dirty.discard(old)


class AcceptedMarker:
    """The writer's note of the newest accepted webhook, so health can tell "all refused" from "some refused"."""

    def __init__(self, every_ms: int = ACCEPTED_EVERY_MS) -> None:
        self.every_ms = every_ms
        self._lock = threading.Lock()  # the local stack runs several writers in one process
        self._store: Store | None = None
        self._written_ms = 0

    def note(self, records: list[dict[str, Any]], store: Store) -> None:
        """Record the batch's newest webhook (not reconcile feeds) if a minute newer than the last one recorded."""
        with self._lock:
            if store is not self._store:
                self._store, self._written_ms = store, 0
            received_ms = _newest_webhook_ms(records)
            if received_ms is None or received_ms - self._written_ms < self.every_ms:
                return
            store.put_json(WEBHOOK_ACCEPTED_KEY, {"received_ms": received_ms})
            self._written_ms = received_ms


def _newest_webhook_ms(records: list[dict[str, Any]]) -> int | None:
    # The batch's last webhook is about its newest: it decodes one message, not ten.
    for record in reversed(records):
        try:
            queued = QueuedEvent.from_json(record["body"])
        except (KeyError, TypeError, ValueError):
            continue
        if queued.source == "webhook":
            return queued.received_ms
    return None


@dataclass(frozen=True)
class RefusalReport:
    """What health says about deliveries: refusals by reason over the last hour, and the newest accepted one."""

    last_hour: dict[str, int]
    refused_recently: bool  # some delivery was refused in the last RECENT_MINUTES
    last_accepted_ms: int | None
    unread: int  # instance-minutes beyond MAX_READS, not in `last_hour`
    now_ms: int

    @property
    def accepted_recently(self) -> bool:
        # The writer notes accepted deliveries once a minute: allow for that minute.
        window = (RECENT_MINUTES * 60_000) + ACCEPTED_EVERY_MS
        return self.last_accepted_ms is not None and self.now_ms - self.last_accepted_ms <= window

    @property
    def all_refused(self) -> bool:
        """Deliveries refused in the last 15 minutes and none accepted: Jira's deliveries are being lost."""
        return self.refused_recently and not self.accepted_recently


def report(store: Store, now: float) -> RefusalReport:
    """Sum the last hour's refusal objects by reason (the newest MAX_READS of them) and read the accepted marker."""
    start_after = f"{WEBHOOK_REFUSED_PREFIX}{minute_of(now - HOUR_MINUTES * 60)}/~"  # '~' sorts after any instance id
    recent_from = minute_of(now - (RECENT_MINUTES - 1) * 60)
    keys: list[str] = []
    more = True
    while more and len(keys) < _MAX_LISTED:
        page, more = store.list_keys(WEBHOOK_REFUSED_PREFIX, keys[-1] if keys else start_after, 1000)
        keys += page
    minutes = [key[len(WEBHOOK_REFUSED_PREFIX) :].split("/", 1)[0] for key in keys]
    newest = keys[::-1][:MAX_READS]  # LIST gives keys in order, and minutes lead them
    totals = dict.fromkeys(REASONS, 0)
    if newest:
        with ThreadPoolExecutor(max_workers=min(16, len(newest))) as pool:
            for found in pool.map(store.read_json, newest):
                refused = found.data.get("refused", {}) if found else {}
                for reason in REASONS:
                    totals[reason] += int(refused.get(reason, 0))
    accepted = store.read_json(WEBHOOK_ACCEPTED_KEY)
    return RefusalReport(
        last_hour=totals,
        refused_recently=any(m >= recent_from for m in minutes),
        last_accepted_ms=int(accepted.data["received_ms"]) if accepted else None,
        unread=len(keys) - len(newest),
        now_ms=int(now * 1000),
    )
