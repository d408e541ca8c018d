"""What Lambda's SQS event source mapping does, locally: receive a batch, invoke the handler, honour its answer."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.backends import QueueBus, Received

log = logging.getLogger("jsync.local")
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
_MIN_PAUSE, _MAX_PAUSE = 0.02, 0.5


@dataclass
class LocalContext:
    """The parts of a LambdaContext that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""
    deadline: float | None = None  # time.monotonic() at which Lambda would stop the invocation; None: never

    def get_remaining_time_in_millis(self) -> int:
        if self.deadline is None:
            return 60_000
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class Poller:
    """Receives up to 10 messages, invokes the handler with a real-shaped SQS event, deletes what succeeded."""

    def __init__(
        self,
        name: str,
        bus: QueueBus,
        queue: str,
        handler: Handler,
        retry_delay: int = 1,
        receive_lock: threading.Lock | None = None,
        timeout: float | None = None,
        stop_grace: float | None = None,
    ) -> None:
        """`timeout`: the function's time limit; the context counts down from it (None: always 60 s left).

        `stop_grace`: how long `stop()` waits for a batch in hand before abandoning it (None: until it is done).
        An abandoned batch goes back to the queue at once, so it is saved with the queue and retried after a
        restart; only a handler that keeps its progress as it goes (reconcile) should be abandoned.
        """
        self.name = name
        self.bus = bus
        self.queue = queue
        self.handler = handler
        self.retry_delay = retry_delay
        # moto's server can hand two concurrent receivers messages of the same FIFO group; SQS and the embedded
        # queues never do. Pollers of one queue share this lock around the receive, so a group in flight stays held.
        self._receive_lock = receive_lock or threading.Lock()
        self.arn = bus.arn(queue)
        self._stop = threading.Event()
        # Failed messages wait out their backoff invisible; on stop they are made visible so they get saved.
        self._backing_off: dict[str, str] = {}  # message id -> receipt
        self._thread = threading.Thread(target=self._run, name=f"poller-{name}", daemon=True)
        self.busy = threading.Event()  # set while a batch is in the handler
        self.timeout = timeout
        self.stop_grace = stop_grace
        # The batch in the handler and its context; the lock makes "handler done, delete what succeeded" and
        # "abandoned, give it back" exclusive, so an abandoned batch is never also deleted by its handler.
        self._hand_lock = threading.Lock()
        self._in_hand: list[Received] = []
        self._context: LocalContext | None = None
        self._abandoned = False
        self._stop_by: float | None = None

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Stop receiving, without waiting; a handler watching its remaining time is told it has `stop_grace` s."""
        if self.stop_grace is not None and self._stop_by is None:
            self._stop_by = time.monotonic() + self.stop_grace
        self._stop.set()  # before reading the context: `_handle` sets the context, then checks this
        context = self._context
        if context is not None and context.deadline is not None and self._stop_by is not None:
            context.deadline = min(context.deadline, self._stop_by)

    def stop(self, timeout: float = 120) -> None:
        """Stop receiving; the batch in hand is finished first (or, past `stop_grace`, given back to the queue),
        and messages backing off are released."""
        self.request_stop()
        if self.stop_grace is None:
            self._thread.join(timeout)
        else:
            assert self._stop_by is not None
            self._thread.join(max(0.0, min(timeout, self._stop_by - time.monotonic())))
            if self._thread.is_alive():
                self._abandon()
        self._release(self._backing_off.values())
        self._backing_off.clear()

    def _abandon(self) -> None:
        """Make the batch still in the handler visible again; the handler's answer, when it comes, is ignored."""
        with self._hand_lock:
            self._abandoned = True
            if self._in_hand:
                log.warning("%s: stopped mid-batch; %d message(s) go back to the queue", self.name, len(self._in_hand))
            self._release(m.receipt for m in self._in_hand)

    def _release(self, receipts: Iterable[str]) -> None:
        """Make messages visible again at once."""
        for receipt in receipts:
            try:
                self.bus.change_visibility(self.queue, receipt, 0)
            except Exception:  # handled since, already visible or gone: nothing to give back
                continue

    def _run(self) -> None:
        # Short polls, with a pause that grows while the queue stays empty (20 ms up to 0.5 s): a long poll
        # would hold the shared receive lock and keep the other writers waiting. The embedded queues end the
        # pause as soon as something is sent.
        pause = _MIN_PAUSE
        while not self._stop.is_set():
            try:
                handled = self.poll_once()
            except Exception:
                log.exception("%s: receive failed; retrying", self.name)
                handled, pause = 0, 1.0
            pause = _MIN_PAUSE if handled else min(pause * 2, _MAX_PAUSE)
            if not handled and not self._stop.is_set():
                self.bus.wait(self.queue, pause)

    def poll_once(self) -> int:
        with self._receive_lock:
            messages = self.bus.receive(self.queue, 10)
        if not messages:
            return 0
        self.busy.set()
        try:
            return self._handle(messages)
        finally:
            self.busy.clear()

    def _handle(self, messages: list[Received]) -> int:
        event = {"Records": [m.lambda_record(self.arn) for m in messages]}
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        context = LocalContext(self.name, str(uuid.uuid4()), deadline=deadline)
        with self._hand_lock:
            if self._abandoned:  # received while `stop()` gave up on this poller: straight back to the queue
                self._release(m.receipt for m in messages)
                return len(messages)
            self._in_hand, self._context = messages, context
        if self._stop.is_set():
            self.request_stop()  # stop came between the receive and here: the handler gets the grace too
        try:
            try:
                response = self.handler(event, context) or {}
                failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            except Exception:
                # A handler that raises fails the whole batch, as on Lambda. Once abandoned it is expected to
                # fail (the stack it talks to is going away), and its batch is back on the queue already.
                if not self._abandoned:
                    log.exception("%s: handler raised; the whole batch will be retried", self.name)
                failed = {m.message_id for m in messages}
            with self._hand_lock:
                if not self._abandoned:
                    self._settle(messages, failed)
        finally:
            with self._hand_lock:
                self._in_hand, self._context = [], None
        return len(messages)

    def _settle(self, messages: list[Received], failed: set[str]) -> None:
        """Delete what succeeded; hide each failure for a backoff that grows with its receive count."""
        done = [m for m in messages if m.message_id not in failed]
        for m in done:
            self._backing_off.pop(m.message_id, None)
        if done:
            self.bus.delete(self.queue, [m.receipt for m in done])
        for m in messages:
            if m.message_id in failed:
                # Lambda waits out the visibility timeout. Locally, back off by receive count (1, 2, 4, 8 s...),
                # so an outage of half a minute is ridden out before the fifth receive sends it to the DLQ.
                self._backing_off[m.message_id] = m.receipt
                backoff = min(self.retry_delay * 2 ** max(m.receive_count - 1, 0), 300)
                self.bus.change_visibility(self.queue, m.receipt, backoff)
