"""The committer's intake: every change ready on the commits queue, across issues, up to a bound, one push each.

Lambda hands a FIFO queue to a function ten messages at a time, and a git host takes a second a push: ten changes a
push is ten changes a second. So the commits queue has no event source; it is grouped by issue, and the committer,
woken by a bell (its own single-group queue, so it never runs twice at once), receives from it itself until the
bound, commits, pushes once, and only then deletes what the push holds. What a crash leaves undeleted comes back
after `visibility_seconds` and is recognised as already committed (the records, or the trailers since them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline import metrics
from pipeline.backends import QueueBus, Received
from pipeline.git.commits import BatchResult
from pipeline.messages import Change

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bounds:
    """How much one push carries, and how long received changes stay the committer's."""

    max_changes: int = 1_000
    max_seconds: float = 5.0  # receiving, before committing what came
    # Far longer than a batch takes, so no change is received twice while it is being pushed; shorter than the
    # bell queue's visibility timeout, so a bell back from a crashed committer finds its changes visible again.
    visibility_seconds: int = 240


@dataclass
class Drained:
    """What one drain did."""

    pushes: int = 0
    commits: int = 0
    skipped: int = 0
    left: int = 0  # changes received and not dealt with: back on the queue after their visibility timeout

    @property
    def received(self) -> int:
        return self.commits + self.skipped + self.left


def drain(
    bus: QueueBus,
    queue: str,
    commit: Callable[[list[Change]], BatchResult],
    bounds: Bounds,
    time_left: Callable[[], float],
    pushed: Callable[[list[Change], BatchResult], None] = lambda changes, result: None,
) -> Drained:
    """Receive, commit and delete batch after batch until the queue has nothing ready or time is short.

    `commit` pushes (or raises, and then nothing of the batch is deleted). `pushed` is told what each push carried
    before its changes are deleted (the committer publishes them; what it raises is logged, and the push stands).
    `time_left` is seconds before the caller must stop; a batch starts only with room for one.
    """
    done = Drained()
    while time_left() > bounds.max_seconds:
        received = _receive(bus, queue, bounds)
        if not received:
            break
        changes, kept = _readable(received)
        result = commit(changes)
        _measure(changes, result)
        try:
            pushed(changes, result)
        except Exception:  # the push stands whatever its aftermath does
            log.exception("what follows the push failed; the push stands")
        finished = [kept[i] for i in result.done(len(changes))]
        if finished:
            # A delete that fails leaves them to come back: replays, which the committer recognises and skips.
            bus.delete(queue, [m.receipt for m in finished])
        done.pushes += 1
        done.commits += len(result.commits)
        done.skipped += len(result.skipped)
        done.left += len(received) - len(finished)
    return done


def _measure(changes: list[Change], result: BatchResult) -> None:
    """Changes committed, and how long after its event the slowest of them reached git."""
    if not result.commits:
        return
    metrics.count("ChangesCommitted", len(result.commits))
    committed = set(result.commits)
    now_ms = time.time() * 1000
    metrics.measure("CommitLagMs", max(0, max(now_ms - c.time_ms for c in changes if c.event_id in committed)))


def _receive(bus: QueueBus, queue: str, bounds: Bounds) -> list[Received]:
    """Up to the bound: ten a call, until the queue answers with nothing (each group held while its messages are
    ours, so no issue's later change can overtake an earlier one)."""
    received: dict[str, Received] = {}
    started = time.monotonic()
    while len(received) < bounds.max_changes and time.monotonic() - started < bounds.max_seconds:
        got = bus.receive(queue, min(10, bounds.max_changes - len(received)), bounds.visibility_seconds)
        again = [m for m in got if m.message_id in received]
        for message in got:
            received[message.message_id] = message  # only the newest receipt deletes it
        if not got or again:
            # A message back already: the visibility timeout is shorter than this receiving. Stop before it
            # counts more receives towards the dead-letter queue.
            break
    return list(received.values())


def _readable(received: list[Received]) -> tuple[list[Change], list[Received]]:
    """The changes to commit, with the message of each. One that cannot be read stays on the queue (it reaches the
    dead-letter queue after five receives) and holds back the rest of its group."""
    changes: list[Change] = []
    kept: list[Received] = []
    held: set[str] = set()
    for message in received:
        if message.group in held:
            continue
        try:
            changes.append(Change.from_json(message.body))
        except (KeyError, TypeError, ValueError):
            log.error("unreadable change; it and the rest of its group wait", extra={"message_id": message.message_id})
            held.add(message.group)
            continue
        kept.append(message)
    return changes, kept
