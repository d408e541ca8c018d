"""Changes out: after each push, one event per change the push carried, on an EventBridge bus (deployed, with the
`eventBusName` param), or as NDJSON lines in `$JSYNC_HOME/events.ndjson` (locally); none on AWS without a bus.

- **Only what the push carried.** `events_for` takes the changes `commit_batch` reports committed, each with its
  commit; a replay, a duplicate, an older event or a change that alters no file was skipped there and gets none.
  The committer publishes before it deletes the batch from the commits queue: a committer that dies in between
  gets its changes back, finds them in git, and publishes nothing twice.
- **Git is the record; events are best effort after it.** A failed publish never fails or redoes a push. Entries
  the sink refuses (PutEvents answers per entry) are sent again, only those, `attempts` times with backoff. What still
  fails is kept in an outbox in the store (`gitstate/_events_outbox.json`) and goes out first with the committer's
  next batch. The outbox is written only when something failed (and once more to empty it): a copy of every
  batch's events written before the push would cost each push a PUT to cover a crash between the push and the
  publish, a window of milliseconds, which is the one way an event is lost (besides an outbox over
  `OUTBOX_LIMIT`, whose oldest events are dropped with an error). EventBridge itself does not promise delivery in
  order: consumers order by `event_time` and `version`.
- **Order.** A PutEvents call carries at most one event of an issue (PutEvents may refuse one entry of a call
  and take the next), and an issue with a refused event has its later events held back until it is taken. The
  NDJSON file takes a call whole or not at all, so it takes up to 1,000 lines a write.
- **Sizes.** PutEvents takes 10 entries and 256 KB a call. An event over 256 KB has its long `from`/`to` values
  cut to 500 characters and `...`, as the writer does for a change that would not fit SQS (then shorter, if it
  still would not fit); the full values stay in the snapshot the event's `version` names.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from pipeline import metrics
from pipeline.jiratime import iso_ms
from pipeline.settings import Settings
from pipeline.store import EVENTS_OUTBOX_KEY, Store, version_of

if TYPE_CHECKING:
    from pipeline.git.commits import BatchResult
    from pipeline.messages import Change

log = logging.getLogger(__name__)

SOURCE = "jsync"
DETAIL_TYPE = "Jira issue changed"
MAX_ENTRIES = 10  # PutEvents: entries per call
MAX_CALL_BYTES = 256 * 1024  # PutEvents: the entries of one call together
_TIME_BYTES = 14  # what AWS counts for an entry's Time
_CUTS = (500, 60, 0)  # characters kept of a long value, tried in turn until the event fits
OUTBOX_LIMIT = 10_000  # events kept for a later run at most; beyond, the oldest are dropped

Event = dict[str, Any]  # {"source", "detail-type", "time", "detail"}: the NDJSON line, the EventBridge entry


def events_for(changes: list[Change], result: BatchResult, names: Mapping[str, str], now: float) -> list[Event]:
    """One event per change the push committed, in the batch's order (each issue's changes are in order there)."""
    shas = dict(zip(result.commits, result.shas, strict=True))
    events = []
    for change in changes:
        sha = shas.pop(change.event_id, None)
        if sha is not None:
            events.append(envelope(_fitted(detail_of(change, sha, names)), now))
    return events


def detail_of(change: Change, commit: str, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "issue_id": change.issue_id,
        "key": change.key,
        "previous_key": change.previous_key,
        "event": change.event_name,
        "event_time": iso_ms(change.time_ms),
        "actor": change.actor,
        "changes": [_named(str(c.get("field")), c, names) for c in change.changes],
        "version": version_of(change.snapshot_key),
        "commit": commit,
    }


def _named(field: str, change: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    # The field's name from Jira's catalogue (pipeline/fields.py), else its id, as history and diff show it.
    return {"field": field, "name": names.get(field, field), "from": change.get("from"), "to": change.get("to")}


def envelope(detail: dict[str, Any], now: float) -> Event:
    return {"source": SOURCE, "detail-type": DETAIL_TYPE, "time": iso_ms(int(now * 1000)), "detail": detail}


def entry_bytes(event: Event) -> int:
    """An entry's size as PutEvents counts it against the call's 256 KB."""
    detail = json.dumps(event["detail"], separators=(",", ":")).encode()
    return len(event["source"].encode()) + len(event["detail-type"].encode()) + len(detail) + _TIME_BYTES


def _fitted(detail: dict[str, Any]) -> dict[str, Any]:
    for keep in _CUTS:
        if entry_bytes(envelope(detail, 0)) <= MAX_CALL_BYTES:
            return detail
        changes = [{k: _cut(v, keep) if k in ("from", "to") else v for k, v in c.items()} for c in detail["changes"]]
        detail = {**detail, "changes": changes}
    while detail["changes"] and entry_bytes(envelope(detail, 0)) > MAX_CALL_BYTES:
        # Thousands of fields in one change: what fits goes; the snapshot holds the rest.
        detail = {**detail, "changes": detail["changes"][: len(detail["changes"]) // 2]}
    return detail


def _cut(value: Any, keep: int) -> Any:
    return value[:keep] + "..." if isinstance(value, str) and len(value) > keep else value


class EventSink(Protocol):
    """Where events go. `put` takes one call's worth (at most `max_entries`, MAX_CALL_BYTES in all) and returns the
    positions that were not taken, never raising. `all_or_none`: a call is taken whole or not at all."""

    max_entries: int
    all_or_none: bool

    def put(self, events: list[Event]) -> list[int]: ...


class EventBridgeSink:
    """PutEvents on one bus."""

    max_entries = MAX_ENTRIES
    all_or_none = False

    def __init__(self, client: Any, bus: str) -> None:
        self.client, self.bus = client, bus

    def put(self, events: list[Event]) -> list[int]:
        entries = [
            {
                "Source": e["source"],
                "DetailType": e["detail-type"],
                "Detail": json.dumps(e["detail"], separators=(",", ":")),
                "Time": datetime.fromisoformat(e["time"]),
                "EventBusName": self.bus,
            }
            for e in events
        ]
        try:
            answer = self.client.put_events(Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            log.warning("PutEvents failed: %s", exc)
            return list(range(len(events)))
        results = answer.get("Entries") or []
        failed = [i for i, entry in enumerate(results) if entry.get("ErrorCode")]
        if failed:
            first = results[failed[0]]
            log.warning(
                "PutEvents refused %d of %d entries: %s %s",
                len(failed),
                len(events),
                first.get("ErrorCode"),
                first.get("ErrorMessage"),
            )
        return failed + list(range(len(results), len(events)))  # an answer short of entries: the rest failed


class NdjsonSink:
    """One JSON object a line, appended to a file and fsynced before `put` returns."""

    max_entries = 1_000  # one write and one fsync for many lines
    all_or_none = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def put(self, events: list[Event]) -> list[int]:
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            log.warning("could not append events to %s: %s", self.path, exc)
            return list(range(len(events)))
        return []


def sink_for(settings: Settings, client: Callable[[str], Any]) -> EventSink | None:
    """The bus when one is set; else, off Lambda, the NDJSON file; else none."""
    if settings.event_bus:
        return EventBridgeSink(client("events"), settings.event_bus)
    return NdjsonSink(settings.events_file) if settings.events_file else None


def destination(settings: Settings) -> str:
    """Where events go, in a few words (the local stack's banner)."""
    if settings.event_bus:
        return f"EventBridge bus {settings.event_bus}"
    return f"NDJSON lines in {settings.events_file}" if settings.events_file else "off (no eventBusName)"


class Publisher:
    """The committer's publisher: sends a push's events, retries what the sink refused, keeps the rest for later."""

    def __init__(
        self,
        sink: EventSink | None,
        store: Store,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sink, self.store = sink, store
        self.attempts, self.backoff_seconds, self._sleep = attempts, backoff_seconds, sleep
        self._pending: list[Event] = []  # not published yet, oldest first: the outbox, once read, and what failed
        self._read = False  # whether the stored outbox has been read into `_pending` (once per process)
        self._stored = 0  # events the stored outbox holds, as last read or written

    def publish(self, events: list[Event]) -> None:
        """Send the outbox's events, then `events`; never raises."""
        if self.sink is None:
            return
        self._pending += events
        if not self._read:
            try:
                found = self.store.read_json(EVENTS_OUTBOX_KEY)
            except Exception:
                # Sending without it could put an issue's later event before its earlier one: wait for the next run.
                log.warning("events outbox unreadable; %d events wait for the next run", len(self._pending))
                metrics.count("EventsPublishFailed", len(events))
                return
            held = list(found.data.get("events") or []) if found else []
            self._pending, self._read, self._stored = held + self._pending, True, len(held)
        if not self._pending:
            return
        failed = self._send(self._pending)
        if sent := len(self._pending) - len(failed):
            metrics.count("EventsPublished", sent)
        if failed:
            log.warning("%d events not published; they are kept and sent again with the next batch", len(failed))
            metrics.count("EventsPublishFailed", len(failed))
        if len(failed) > OUTBOX_LIMIT:
            dropped = len(failed) - OUTBOX_LIMIT
            log.error("events outbox over %d events: the %d oldest are dropped", OUTBOX_LIMIT, dropped)
            metrics.count("EventsDropped", dropped)
            failed = failed[dropped:]
        self._pending = failed
        if failed or self._stored:
            try:
                self.store.put_json(EVENTS_OUTBOX_KEY, {"events": failed})
                self._stored = len(failed)
            except Exception:
                log.warning("could not save the events outbox; %d events are kept in memory only", len(failed))

    def _send(self, events: list[Event]) -> list[Event]:
        left = events
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
            left = self._round(left)
            if not left:
                break
        return left

    def _round(self, events: list[Event]) -> list[Event]:
        """Each event once, in calls of what PutEvents takes; returns what was not taken, each issue in order.

        Unless the sink takes a call whole or not at all, a call carries at most one event of an issue: PutEvents
        may refuse one entry of a call and take the next, which would let an issue's later change overtake its
        earlier one."""
        assert self.sink is not None
        one_per_issue = not self.sink.all_or_none
        left: list[Event] = []
        held: set[str] = set()  # issues with an event not taken: their later ones wait
        call: list[Event] = []
        size = 0
        for event in [*events, None]:
            issue = event["detail"]["issue_id"] if event is not None else None
            in_call = one_per_issue and any(e["detail"]["issue_id"] == issue for e in call)
            full = event is None or len(call) == self.sink.max_entries or size + entry_bytes(event) > MAX_CALL_BYTES
            if call and (full or in_call):
                for position in self._put(call):
                    left.append(call[position])
                    held.add(call[position]["detail"]["issue_id"])
                call, size = [], 0
            if event is None:
                break
            if issue in held:
                left.append(event)
                continue
            call.append(event)
            size += entry_bytes(event)
        return left

    def _put(self, call: list[Event]) -> list[int]:
        assert self.sink is not None
        try:
            return self.sink.put(call)
        except Exception:  # a sink that breaks its promise not to raise must not break the committer
            log.warning("publishing failed", exc_info=True)
            return list(range(len(call)))
