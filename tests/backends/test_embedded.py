"""What only the embedded backend has to get right itself: its connections and its transactions' endings."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.backends.embedded import Database, SqliteObjects


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    # Health and the API read from short-lived pool threads: each round used to leave its connections open.
    db = Database(tmp_path / "jsync.db")
    objects = SqliteObjects(db)
    objects.put("k", b"v")
    for _ in range(20):
        with ThreadPoolExecutor(6) as pool:
            assert all(found is not None for found in pool.map(objects.get, ["k"] * 12))
    # Each new thread's first call closes the finished threads' connections: at most one pool's worth stays open
    assert len(db._opened) <= 6 + 1


def test_a_commit_that_fails_leaves_no_transaction_and_no_lock_behind(tmp_path: Path) -> None:
    db = Database(tmp_path / "jsync.db")
    conn = db.connection()
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
    # A deferred foreign key fails at COMMIT, as a full disk or an I/O error can
    with pytest.raises(sqlite3.IntegrityError), db.write(fsync=True) as tx:
        tx.execute("INSERT INTO child VALUES (42)")
    # Then the real error was raised, nothing is held, and every writer, of any thread, goes on
    assert not db.connection().in_transaction
    SqliteObjects(db).put("after", b"1")
    other = threading.Thread(target=lambda: SqliteObjects(db).put("other", b"2"))
    other.start()
    other.join(10)
    assert SqliteObjects(db).get("other") is not None


def test_an_error_inside_a_write_rolls_it_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "jsync.db")
    with pytest.raises(RuntimeError), db.write() as tx:
        tx.execute("INSERT INTO objects (key, body, etag, content_type) VALUES ('x', x'00', 'e', 't')")
        raise RuntimeError("boom")
    assert SqliteObjects(db).get("x") is None
    assert not db.connection().in_transaction


def test_what_a_killed_run_held_comes_back_at_once_without_a_receive_counted(tmp_path: Path) -> None:
    from pipeline.backends import Outgoing
    from pipeline.backends.embedded import SqliteQueues

    queues = SqliteQueues(Database(tmp_path / "jsync.db"))
    queues.create("dlq.fifo", None, 60)
    queues.create("q.fifo", "dlq.fifo", 60)
    queues.send("q.fifo", [Outgoing("held", "g", "1"), Outgoing("expired", "h", "2")])
    held, expired = queues.receive("q.fifo", 10, 240)
    queues.change_visibility("q.fifo", expired.receipt, 0)  # its receive ended: it failed, and that counts
    # When a restart (the process was killed with `held` in hand) releases what was in flight, six times over
    for _ in range(6):
        assert queues.release_in_flight() >= 1
        got = {m.body: m for m in queues.receive("q.fifo", 10, 240)}
        assert got["held"].receive_count == 1  # the kill is not the message's failure
    # Then nothing reached the dead-letter queue, and the message whose receive ended kept its count
    assert queues.depth("dlq.fifo").total == 0
    assert got["expired"].receive_count >= 2
