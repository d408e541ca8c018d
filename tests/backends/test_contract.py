"""The contract of the two ports (`pipeline/backends/__init__.py`), checked on both backends.

Every test taking `backend` runs on the embedded backend and on S3/SQS (moto). The few taking `embedded` check a
promise the embedded backend makes and moto does not reproduce; each says why in its docstring. None of them is a
skip: AWS keeps those promises (or documents them as best effort), moto is what falls short.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.backends import UNAVAILABLE, Depth, Outgoing, PreconditionFailed, QueueBus, Received
from pipeline.backends.embedded import MAX_RECEIVE_COUNT, Database, SqliteObjects
from tests.backends.conftest import Backend

ROOT = Path(__file__).resolve().parents[2]


# --- helpers --------------------------------------------------------------------------------------------------------
def message(body: str, group: str = "g", dedup: str | None = "") -> Outgoing:
    """An outgoing message; its dedup id is its body unless given (None: let the queue hash the body)."""
    return Outgoing(body, group, body if dedup == "" else dedup)


def send(queues: QueueBus, queue: str, *messages: Outgoing) -> None:
    for start in range(0, len(messages), 10):
        queues.send(queue, list(messages[start : start + 10]))


def bodies(got: list[Received]) -> list[str]:
    return [m.body for m in got]


def receive_some(queues: QueueBus, queue: str, max_messages: int = 10, tries: int = 5) -> list[Received]:
    """The first non-empty receive within `tries` (a receive that moves a message to its DLQ may return nothing
    on the embedded backend, while moto hands out the next one at once)."""
    for _ in range(tries):
        if got := queues.receive(queue, max_messages):
            return got
    return []


def drain(queues: QueueBus, queue: str, max_messages: int = 10) -> list[Received]:
    """Receive and delete until the queue gives nothing; everything received, in receive order."""
    out: list[Received] = []
    for _ in range(200):
        got = queues.receive(queue, max_messages)
        if not got:
            return out
        queues.delete(queue, [m.receipt for m in got])
        out += got
    raise AssertionError(f"{queue} never ran dry")


def by_group(got: list[Received]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for m in got:
        groups[m.group].append(m.body)
    return dict(groups)


def run_threads(count: int, target, *args) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i, *args)
        except BaseException as exc:  # handed back to the test below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


# === queues ==========================================================================================================
def test_order_within_a_group(backend: Backend) -> None:
    q = backend.queues
    sent = [message(f"{g}{i}", g) for i in range(12) for g in "abc"]
    send(q, backend.source, *sent)
    got = drain(q, backend.source, max_messages=4)
    assert by_group(got) == {g: [f"{g}{i}" for i in range(12)] for g in "abc"}


def test_a_group_with_a_message_in_flight_is_held(backend: Backend) -> None:
    q, src = backend.queues, backend.source
    send(q, src, message("a1", "a"), message("a2", "a"), message("b1", "b"))
    (first,) = q.receive(src, 1)
    assert first.body == "a1"
    assert bodies(q.receive(src)) == ["b1"]  # a2 waits for a1
    assert q.receive(src) == []
    q.delete(src, [first.receipt])
    assert bodies(q.receive(src)) == ["a2"]


def test_a_group_stays_held_while_any_of_its_batch_is_in_flight(backend: Backend) -> None:
    q, src = backend.queues, backend.source
    send(q, src, message("a1", "a"), message("a2", "a"), message("a3", "a"), message("b1", "b"))
    a1, a2 = q.receive(src, 2)
    assert (a1.body, a2.body) == ("a1", "a2")
    q.delete(src, [a1.receipt])
    assert bodies(q.receive(src)) == ["b1"]  # a2 is still in flight: a3 must not overtake it
    q.change_visibility(src, a2.receipt, 0)
    again = q.receive(src)
    assert bodies(again) == ["a2", "a3"]
    assert [m.receive_count for m in again] == [2, 1]


def test_concurrent_receivers_never_share_a_group(embedded: Backend) -> None:
    """Six threads race receives; no group is ever in two hands, and each group is done in order.

    Embedded only: moto's ReceiveMessage reads the set of busy groups without a lock, so two concurrent receives
    can both take one group (seen with moto 5.2: a group handed to two threads at once, then done out of order).
    SQS keeps this promise, and locally the poller serialises receives on moto (`local/poller.py`, the shared
    `receive_lock`), so moto's gap never reaches the pipeline. Serialised receives are checked on both backends
    by the tests above and the property below.
    """
    q, src = embedded.queues, embedded.source
    groups, per_group = 4, 20
    send(q, src, *[message(f"{g}:{i}", f"g{g}") for i in range(per_group) for g in range(groups)])
    lock = threading.Lock()
    holder: dict[str, int] = {}
    clashes: list[tuple[str, int, int]] = []
    done: dict[str, list[str]] = defaultdict(list)

    def consumer(me: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = q.receive(src, 3)
            if not got:
                with lock:
                    if sum(map(len, done.values())) == groups * per_group:
                        return
                continue
            mine = {m.group for m in got}
            with lock:
                for g in mine:
                    if g in holder:
                        clashes.append((g, holder[g], me))
                    holder[g] = me
            time.sleep(0.001)  # hold the batch a moment, as a worker would
            with lock:
                for m in got:
                    done[m.group].append(m.body)
                for g in mine:
                    if holder.get(g) == me:
                        del holder[g]
            q.delete(src, [m.receipt for m in got])  # after letting go: a clash now would still be seen above

    run_threads(6, consumer)
    assert clashes == []
    assert dict(done) == {f"g{g}": [f"{g}:{i}" for i in range(per_group)] for g in range(groups)}


def test_a_repeated_dedup_id_is_dropped_within_the_window(backend: Backend) -> None:
    q, src = backend.queues, backend.source
    send(q, src, message("first", dedup="d1"))
    send(q, src, message("again", dedup="d1"))  # accepted, and dropped
    send(q, src, message("x", dedup="d2"), message("y", dedup="d2"), message("z", dedup="d3"))  # also in one batch
    assert q.depth(src) == Depth(3, 0)
    assert bodies(drain(q, src)) == ["first", "x", "z"]


def test_a_dedup_id_holds_after_its_message_is_deleted(embedded: Backend) -> None:
    """A repeat within 5 minutes is dropped even once the first copy is done, as SQS documents.

    Embedded only: moto forgets a deduplication id when its message is deleted (it compares against the messages
    still queued), so there a late repeat is delivered again. The pipeline's consumers are idempotent either way.
    """
    q, src = embedded.queues, embedded.source
    send(q, src, message("first", dedup="d1"))
    q.delete(src, [m.receipt for m in q.receive(src)])
    send(q, src, message("late repeat", dedup="d1"))
    assert q.depth(src) == Depth(0, 0)
    assert q.receive(src) == []


def test_content_based_dedup(backend: Backend) -> None:
    q, queue = backend.queues, backend.content
    send(q, queue, message("same", dedup=None), message("other", dedup=None))
    send(q, queue, message("same", dedup=None))  # the same body: the same id
    send(q, queue, message("same", dedup="explicit"))  # an explicit id wins over the body's hash
    assert bodies(drain(q, queue)) == ["same", "other", "same"]


def test_no_dedup_id_on_a_queue_without_content_dedup_is_refused(backend: Backend) -> None:
    with pytest.raises((ValueError, ClientError)):
        backend.queues.send(backend.source, [message("body", dedup=None)])
    assert backend.queues.depth(backend.source) == Depth(0, 0)


def test_visibility_timeout_expiry_redelivers(backend: Backend) -> None:
    q, src = backend.queues, backend.source
    send(q, src, message("m"))
    (first,) = q.receive(src, visibility_timeout=1)
    assert first.receive_count == 1
    assert q.receive(src) == []
    time.sleep(1.3)
    (second,) = q.receive(src)
    assert (second.message_id, second.body, second.receive_count) == (first.message_id, "m", 2)
    q.delete(src, [second.receipt])
    assert q.depth(src) == Depth(0, 0)


def test_a_stale_receipt_does_not_delete_the_redelivered_message(embedded: Backend) -> None:
    """Once a message is received again, only its new receipt deletes it or changes its visibility.

    Embedded only: moto honours every receipt a message ever had (it deletes with the stale one), and SQS only
    says a stale receipt's delete "succeeds, but the message might not be deleted". Embedded makes it never.
    """
    q, src = embedded.queues, embedded.source
    send(q, src, message("m"))
    (first,) = q.receive(src, visibility_timeout=1)
    time.sleep(1.3)
    (second,) = q.receive(src)
    q.delete(src, [first.receipt])
    q.change_visibility(src, first.receipt, 0)
    assert q.depth(src) == Depth(0, 1)
    assert q.receive(src) == []
    q.delete(src, [second.receipt])
    assert q.depth(src) == Depth(0, 0)


def test_change_visibility_to_zero_releases_at_once(backend: Backend) -> None:
    q, src = backend.queues, backend.source
    send(q, src, message("m"))
    (first,) = q.receive(src)
    assert q.receive(src) == []
    q.change_visibility(src, first.receipt, 0)
    (second,) = q.receive(src)
    assert (second.body, second.receive_count) == ("m", 2)


def test_change_visibility_shortens_the_timeout(backend: Backend) -> None:
    """What the pollers do with a failed message: retry it in a second rather than after the queue's timeout."""
    q, src = backend.queues, backend.source
    send(q, src, message("m"))
    (first,) = q.receive(src)
    q.change_visibility(src, first.receipt, 1)
    assert q.receive(src) == []
    time.sleep(1.3)
    assert [(m.body, m.receive_count) for m in q.receive(src)] == [("m", 2)]


def test_the_sixth_receive_moves_the_message_to_the_dlq_and_its_group_flows_on(backend: Backend) -> None:
    q, src, dlq = backend.queues, backend.source, backend.dlq
    send(q, src, message("a1", "a"), message("a2", "a"))
    for attempt in range(1, MAX_RECEIVE_COUNT + 1):
        (got,) = q.receive(src, 1)
        assert (got.body, got.receive_count) == ("a1", attempt)
        q.change_visibility(src, got.receipt, 0)  # failed
    # The 6th attempt moves a1 to the DLQ; a2, behind it in the group, is delivered next.
    assert [(m.body, m.receive_count) for m in receive_some(q, src, 1)] == [("a2", 1)]
    assert q.depth(dlq) == Depth(1, 0)
    (dead,) = q.receive(dlq)
    assert (dead.body, dead.group) == ("a1", "a")


def test_redrive_moves_messages_back_in_their_groups_and_order(backend: Backend) -> None:
    q, src, dlq = backend.queues, backend.source, backend.dlq
    send(q, src, message("a1", "a"), message("b1", "b"), message("a2", "a"))
    for attempt in range(1, MAX_RECEIVE_COUNT + 1):
        got = q.receive(src)
        assert sorted((m.body, m.receive_count) for m in got) == [("a1", attempt), ("a2", attempt), ("b1", attempt)]
        for m in got:
            q.change_visibility(src, m.receipt, 0)
    assert receive_some(q, src) == []  # every one moves on its 6th receive; none is handed out
    assert q.depth(src) == Depth(0, 0)
    assert q.depth(dlq) == Depth(3, 0)

    assert q.redrive(dlq, src) == 3
    assert q.depth(dlq) == Depth(0, 0)
    got = drain(q, src)
    assert by_group(got) == {"a": ["a1", "a2"], "b": ["b1"]}
    assert [m.receive_count for m in got] == [1, 1, 1]
    assert q.redrive(dlq, src) == 0


def test_batches_of_up_to_ten(backend: Backend) -> None:
    q, src = backend.queues, backend.source
    q.send(src, [message(f"m{i}") for i in range(10)])
    got = q.receive(src, 10)
    assert bodies(got) == [f"m{i}" for i in range(10)]
    q.delete(src, [m.receipt for m in got])
    with pytest.raises((ValueError, ClientError)):
        q.send(src, [message(f"n{i}") for i in range(11)])
    assert q.depth(src) == Depth(0, 0)  # none of the eleven went in


def test_message_attributes_round_trip(backend: Backend) -> None:
    q, src = backend.queues, backend.source
    attributes = {
        "kind": {"DataType": "String", "StringValue": "issue_updated"},
        "attempt": {"DataType": "Number", "StringValue": "3"},
        "note": {"DataType": "String", "StringValue": "ünïcödé ✓"},
    }
    q.send(src, [Outgoing("with", "g", "d1", attributes), Outgoing("without", "g", "d2")])
    first, second = q.receive(src)
    assert (first.attributes, second.attributes) == (attributes, {})
    assert (first.group, first.dedup_id) == ("g", "d1")


def test_depth_counts_waiting_and_in_flight(backend: Backend) -> None:
    q, src = backend.queues, backend.source
    assert q.depth(src) == Depth(0, 0)
    send(q, src, message("a1", "a"), message("a2", "a"), message("b1", "b"))
    assert q.depth(src) == Depth(3, 0)
    (a1,) = q.receive(src, 1)
    assert q.depth(src) == Depth(2, 1)  # a2 waits (held behind a1) and still counts as waiting
    q.delete(src, [a1.receipt])
    assert q.depth(src) == Depth(2, 0)
    assert q.depth(src).total == 2


def test_arn_and_lambda_record(backend: Backend) -> None:
    q, src = backend.queues, backend.source
    arn = q.arn(src)
    assert arn.startswith("arn:aws:sqs:") and arn.endswith(f":{src}")
    send(q, src, message("m"))
    record = q.receive(src)[0].lambda_record(arn)
    assert (record["body"], record["eventSourceARN"], record["attributes"]["MessageGroupId"]) == ("m", arn, "g")


def test_wait_returns(backend: Backend) -> None:
    started = time.monotonic()
    backend.queues.wait(backend.source, 0.2)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("operation", ["send", "receive"])
def test_a_queue_never_created_is_unavailable(backend: Backend, operation: str) -> None:
    """Callers answer 503 on UNAVAILABLE; a missing queue must be one of those errors on either backend."""
    with pytest.raises(UNAVAILABLE):
        if operation == "send":
            backend.queues.send("missing.fifo", [message("m")])
        else:
            backend.queues.receive("missing.fifo")


def test_closing_the_database_after_other_threads_used_it(tmp_path: Path) -> None:
    """The local stack closes its Database at shutdown from the main thread, after pollers used it in theirs.

    Embedded only: a property of the SQLite file handle, nothing AWS has."""
    db = Database(tmp_path / "other.db")
    objects = SqliteObjects(db)
    run_threads(3, lambda i: objects.put(f"k{i}", b"x"))
    db.close()


# === objects =========================================================================================================
def test_read_after_write_delete_and_missing(backend: Backend) -> None:
    o = backend.objects
    assert o.get("nope") is None
    etag = o.put("k/one.json", b'{"a": 1}')
    got = o.get("k/one.json")
    assert got is not None
    assert (got.body, got.etag, got.content_type) == (b'{"a": 1}', etag, "application/json")
    o.put("k/one.json", b"text", "text/plain")
    got = o.get("k/one.json")
    assert got is not None and (got.body, got.content_type) == (b"text", "text/plain")
    o.delete("k/one.json")
    assert o.get("k/one.json") is None
    o.delete("k/one.json")  # deleting what is gone is fine
    assert o.check() != ""


def test_etags_are_stable_for_the_same_bytes_and_change_with_content(backend: Backend) -> None:
    o = backend.objects
    first = o.put("e/1", b"same")
    assert o.put("e/1", b"same") == first
    assert o.put("e/2", b"same") == first
    changed = o.put("e/1", b"different")
    assert changed != first
    got = o.get("e/1")
    assert got is not None and got.etag == changed


def test_conditional_puts(backend: Backend) -> None:
    o = backend.objects
    created = o.put("c", b"1", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        o.put("c", b"2", if_none_match=True)
    updated = o.put("c", b"2", if_match=created)
    with pytest.raises(PreconditionFailed):
        o.put("c", b"3", if_match=created)  # stale
    with pytest.raises(PreconditionFailed):
        o.put("never-written", b"x", if_match=updated)
    got = o.get("c")
    assert got is not None and (got.body, got.etag) == (b"2", updated)
    assert o.get("never-written") is None


def test_conditional_puts_race_between_threads(backend: Backend) -> None:
    """Twelve threads race for 30 rounds, to create a key and to swap one version of another: each time exactly
    one wins and the others get PreconditionFailed. (15 rounds on moto, whose PUT takes some 12 ms: 360 racing
    writes instead of 720 keep the suite quick.)"""
    o = backend.objects
    threads, rounds = 12, (30 if backend.name == "embedded" else 15)
    barrier = threading.Barrier(threads)
    wins: dict[tuple[str, int], list[int]] = defaultdict(list)
    lost: dict[tuple[str, int], int] = defaultdict(int)
    lock = threading.Lock()
    current = [o.put("race/swap", b"start")]  # the ETag every racer swaps from this round; the winner moves it on

    def racer(me: int) -> None:
        for r in range(rounds):
            for phase in ("create", "swap"):
                etag = current[0]
                barrier.wait()
                try:
                    if phase == "create":
                        o.put(f"race/create/{r}", f"{me}".encode(), if_none_match=True)
                    else:
                        new = o.put("race/swap", f"{r}:{me}".encode(), if_match=etag)
                except PreconditionFailed:
                    with lock:
                        lost[phase, r] += 1
                else:
                    with lock:
                        wins[phase, r].append(me)
                        if phase == "swap":
                            current[0] = new
                barrier.wait()  # the round is over for everyone before the next one reads `current`

    run_threads(threads, racer)
    for r in range(rounds):
        for phase in ("create", "swap"):
            assert len(wins[phase, r]) == 1, (phase, r, wins[phase, r])
            assert lost[phase, r] == threads - 1
        created = o.get(f"race/create/{r}")
        assert created is not None and created.body == f"{wins['create', r][0]}".encode()
    final = o.get("race/swap")
    assert final is not None
    assert (final.body, final.etag) == (f"{rounds - 1}:{wins['swap', rounds - 1][0]}".encode(), current[0])


_RACER = """
import json, sys, time
from pathlib import Path
from pipeline.backends import PreconditionFailed
from pipeline.backends.embedded import Database, SqliteObjects

path, start, attempts, me = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
objects = SqliteObjects(Database(Path(path)))
while time.time() < start:
    time.sleep(0.001)
swaps, claims = 0, []
for i in range(attempts):
    current = objects.get("counter")
    try:
        objects.put("counter", str(int(current.body) + 1).encode(), if_match=current.etag)
        swaps += 1
    except PreconditionFailed:
        pass
    try:
        objects.put(f"claim/{i}", me.encode(), if_none_match=True)
        claims.append(i)
    except PreconditionFailed:
        pass
print(json.dumps({"swaps": swaps, "claims": claims}))
"""


def test_conditional_puts_race_between_processes(embedded: Backend, tmp_path: Path) -> None:
    """Processes, each with its own Database on one file, race compare-and-swap increments of a counter and
    create-only claims: the counter ends at the number of swaps that won (no lost update), each claim has one owner.

    Embedded only: several processes on one file is the embedded backend's own concern (the API, the pollers
    and `make` commands each open it); on AWS every writer is a client of the same S3, as the thread race covers.
    """
    processes, attempts = 4, 40
    assert embedded.database is not None
    path = embedded.database.path
    embedded.objects.put("counter", b"0", if_none_match=True)
    start = time.time() + 1.5  # all started (and their imports done) before any races
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(path), str(start), str(attempts), f"p{n}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
        results.append(json.loads(out))
    swaps = sum(r["swaps"] for r in results)
    counter = SqliteObjects(Database(path)).get("counter")
    assert counter is not None and int(counter.body) == swaps
    assert swaps >= attempts  # at least one writer wins each time round
    claimed = sorted(i for r in results for i in r["claims"])
    assert claimed == list(range(attempts))


KEYS = [
    "p/a",
    "p/a b",
    "p/a-b",
    "p/a/b",
    "p/a/c/d",
    "p/B",
    "p/z",
    "p/é",
    "p/日本/語",
    "p/\U0001f600",
    "p/\ufb01",
    "p//double",
    "p",
    "pq",
    "o/p/a",
]


def test_list_keys_by_prefix_in_byte_order_with_pagination(backend: Backend) -> None:
    o = backend.objects
    for key in KEYS:
        o.put(key, key.encode())
    under = sorted((k for k in KEYS if k.startswith("p/")), key=lambda k: k.encode())
    assert o.list_keys("p/") == (under, False)

    pages: list[list[str]] = []
    after: str | None = None
    while True:
        keys, more = o.list_keys("p/", start_after=after, limit=3)
        pages.append(keys)
        if not more:
            break
        after = keys[-1]
    assert [k for page in pages for k in page] == under
    assert all(len(page) == 3 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 3

    assert o.list_keys("p/", limit=len(under)) == (under, False)  # exactly all: nothing more
    assert o.list_keys("p/", limit=len(under) - 1) == (under[:-1], True)
    assert o.list_keys("p/", start_after="p/a.") == ([k for k in under if k.encode() > b"p/a."], False)
    assert o.list_keys("p/", start_after="a") == (under, False)  # before the prefix: all of it
    assert o.list_keys("p/", start_after=under[-1]) == ([], False)
    assert o.list_keys("none/") == ([], False)
    assert o.list_keys("p/a") == (["p/a", "p/a b", "p/a-b", "p/a/b", "p/a/c/d"], False)


def test_folders(backend: Backend) -> None:
    o = backend.objects
    for key in KEYS:
        o.put(key, b"x")
    assert o.folders("p/") == ["p//", "p/a/", "p/日本/"]
    assert o.folders("p/a/") == ["p/a/c/"]
    assert o.folders("") == ["o/", "p/"]
    assert o.folders("none/") == []


# === property =========================================================================================================
_sends = st.lists(
    st.tuples(st.sampled_from("abc"), st.one_of(st.none(), st.integers(0, 3))),  # group; None or a shared dedup id
    min_size=1,
    max_size=10,
)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("send"), _sends),
        st.tuples(st.just("receive"), st.integers(1, 10), st.sampled_from(["delete", "fail", "half"])),
    ),
    max_size=20,
)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_steps)
def test_property_each_group_is_delivered_once_in_order(backend: Backend, steps: list[tuple]) -> None:  # type: ignore[type-arg]
    """Random sends (some repeating a dedup id) interleaved with receives that delete their batch, fail it, or do
    the first half of each group and fail the rest. Per group, what is deleted is what was sent with repeats
    dropped, in order; nothing is lost; nothing comes back once deleted.

    Failures are capped below the receive count that dead-letters a message, so nothing leaves the queue that way.
    On moto a dedup id is not resent once its message is deleted (moto forgets it then, see above)."""
    q = backend.queues
    src, _dlq = backend.new_pair(False)
    expected: dict[str, list[str]] = defaultdict(list)
    delivered: dict[str, list[str]] = defaultdict(list)
    first_copy: dict[str, str] = {}  # dedup id -> the body that holds it
    deleted: set[str] = set()
    fails_left = MAX_RECEIVE_COUNT - 1
    n = 0

    def done(batch: list[Received]) -> None:
        q.delete(src, [m.receipt for m in batch])
        for m in batch:
            delivered[m.group].append(m.body)
            deleted.add(m.body)

    for step in steps:
        if step[0] == "send":
            batch = []
            for group, shared in step[1]:
                n += 1
                body = f"{group}{n}"
                dedup = body if shared is None else f"d{shared}"
                if dedup in first_copy:
                    if first_copy[dedup] in deleted and backend.name == "aws":
                        continue
                else:
                    first_copy[dedup] = body
                    expected[group].append(body)
                batch.append(Outgoing(body, group, dedup))
            if batch:
                q.send(src, batch)
            continue
        _, max_messages, action = step
        got = q.receive(src, max_messages)
        assert not deleted & set(bodies(got)), "delivered again after it was deleted"
        for group, received in by_group(got).items():
            left = expected[group][len(delivered[group]) :]
            assert received == left[: len(received)], f"group {group} out of order"
        if action != "delete" and fails_left and got:
            fails_left -= 1
            keep = []
            for group_bodies in by_group(got).values():
                keep += group_bodies[: len(group_bodies) // 2] if action == "half" else []
            done([m for m in got if m.body in keep])
            for m in got:
                if m.body not in keep:
                    q.change_visibility(src, m.receipt, 0)
        else:
            done(got)

    rest = drain(q, src)
    assert not deleted & set(bodies(rest)), "delivered again after it was deleted"
    for m in rest:
        delivered[m.group].append(m.body)
    assert {g: v for g, v in delivered.items() if v} == {g: v for g, v in expected.items() if v}
    assert q.depth(src) == Depth(0, 0)


def test_redrive_keeps_message_attributes(backend: Backend) -> None:
    q, src, dlq = backend.queues, backend.source, backend.dlq
    attributes = {"kind": {"DataType": "String", "StringValue": "issue_updated"}}
    # Given a dead letter carrying attributes, and one without
    q.send(dlq, [Outgoing("with", "a", "d1", attributes), Outgoing("without", "b", "d2")])
    # When it is redriven
    assert q.redrive(dlq, src) == 2
    # Then each comes back to its source with its attributes as they were, and nothing more
    got = {m.body: m for m in drain(q, src)}
    assert (got["with"].attributes, got["without"].attributes) == (attributes, {})
    assert (got["with"].group, got["without"].group) == ("a", "b")


# --- streamed writes and download URLs (attachments) -----------------------------------------------------------------


class _Chunks:
    """A stream that hands out `data` in small reads, then raises `fail` instead of ending, if given."""

    def __init__(self, data: bytes, fail: Exception | None = None) -> None:
        self.data, self.fail, self.offset = data, fail, 0

    def read(self, amount: int = -1, /) -> bytes:
        if self.offset >= len(self.data) and self.fail is not None:
            raise self.fail
        size = len(self.data) if amount is None or amount < 0 else min(amount, 65536)
        chunk = self.data[self.offset : self.offset + size]
        self.offset += len(chunk)
        return chunk


def test_put_stream_stores_every_byte_the_stream_yields(backend: Backend) -> None:
    # Over S3's 8 MiB multipart threshold, so the AWS backend uploads in parts.
    data = bytes(range(256)) * (9 * 4096 + 7)
    backend.objects.put_stream("attachments/1/2", _Chunks(data), "video/mp4")
    stored = backend.objects.get("attachments/1/2")
    assert stored is not None and stored.body == data and stored.content_type == "video/mp4"


def test_a_stream_that_fails_stores_nothing(backend: Backend) -> None:
    with pytest.raises(OSError, match="cut off"):
        backend.objects.put_stream("attachments/1/3", _Chunks(b"x" * 9_000_000, OSError("cut off")), "text/plain")
    assert backend.objects.get("attachments/1/3") is None


def test_presign_gives_a_url_that_fetches_the_object_or_none(backend: Backend) -> None:
    backend.objects.put("attachments/1/4", b"hello attachment", "text/plain")
    url = backend.objects.presign("attachments/1/4", "trace 1.log", "text/plain", 300)
    if backend.name == "embedded":
        assert url is None  # the API serves the bytes itself
        return
    assert url is not None and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as answer:  # no credentials: the URL is the permission
        assert answer.read() == b"hello attachment"
        assert "trace%201.log" in answer.headers["Content-Disposition"]
