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


def test_a_writer_held_up_past_the_lock_timeout_gets_an_error_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.backends import embedded

    monkeypatch.setattr(embedded, "LOCK_TIMEOUT_S", 0.2)
    db = Database(tmp_path / "jsync.db")
    objects = SqliteObjects(db)
    # Given another thread of this process holds the write turn (a stuck write)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        # When this thread writes, by a single statement or a transaction
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            objects.put("k", b"1")
        with pytest.raises(sqlite3.OperationalError, match="database is locked"), db.write():
            pass
    finally:
        release.set()
        holder.join(10)
    # Then, once the other write is done, writes go on
    objects.put("k", b"2")
    found = objects.get("k")
    assert found is not None and found.body == b"2"
    db.close()


def test_the_write_lock_held_by_another_process_is_an_error_that_leaves_nothing_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.backends import Outgoing, embedded
    from pipeline.backends.embedded import SqliteQueues

    monkeypatch.setattr(embedded, "LOCK_TIMEOUT_S", 0.2)
    path = tmp_path / "jsync.db"
    db = Database(path)
    queues = SqliteQueues(db)
    queues.create("q.fifo", None, 30)
    # Given another process holds SQLite's write lock on the file
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    # When this process sends (a transaction): SQLite gives up after the timeout
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        queues.send("q.fifo", [Outgoing("m", "g", "d")])
    # Then it is left outside any transaction, and its write turn is free: once the other is done, writes go on
    assert not db.connection().in_transaction
    other.execute("COMMIT")
    other.close()
    queues.send("q.fifo", [Outgoing("m", "g", "d")])
    assert queues.depth("q.fifo").waiting == 1
    db.close()


class _DiskGoneAtTheEnd:
    """A connection whose COMMIT and ROLLBACK both fail (the disk went away mid-write); all else passed through."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql in ("COMMIT", "ROLLBACK"):
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


def test_a_connection_stuck_in_its_transaction_is_closed_so_its_lock_is_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jsync.db"
    db = Database(path)
    monkeypatch.setattr(db, "connection", lambda: _DiskGoneAtTheEnd(Database.connection(db)))
    # When a write can neither commit nor roll back
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"), db.write() as tx:
        tx.execute("INSERT INTO objects (key, body, etag, content_type) VALUES ('x', x'00', 'e', 't')")
    monkeypatch.undo()
    # Then its connection was dropped, which ends the transaction: another process takes the lock at once
    other = sqlite3.connect(path, isolation_level=None, timeout=0.5)
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    # and this thread writes again on a new connection; the unfinished write left nothing
    objects = SqliteObjects(db)
    assert objects.get("x") is None
    objects.put("y", b"1")
    assert objects.get("y") is not None
    db.close()


def test_after_a_checkpoint_the_database_file_alone_holds_every_write(tmp_path: Path) -> None:
    import shutil

    db = Database(tmp_path / "jsync.db")
    SqliteObjects(db).put("latest/10042.json", b"{}")
    # When the WAL is checkpointed (as the import of an old local state does before it renames the old copy)
    db.checkpoint()
    # Then a copy of the database file without its WAL (what a power cut could leave) holds the write
    copy = tmp_path / "copy" / "jsync.db"
    copy.parent.mkdir()
    shutil.copyfile(tmp_path / "jsync.db", copy)
    db.close()
    found = SqliteObjects(Database(copy)).get("latest/10042.json")
    assert found is not None and found.body == b"{}"


def test_prefixes_at_the_edges_of_unicode_list_their_own_keys_only(tmp_path: Path) -> None:
    objects = SqliteObjects(Database(tmp_path / "jsync.db"))
    for key in ("k\ud7ffa", "k\ue000", "z\U0010ffffa", "{"):
        objects.put(key, b"1")
    # The next code point after U+D7FF is a surrogate, which no key holds; after U+10FFFF there is none
    assert objects.list_keys("k\ud7ff") == (["k\ud7ffa"], False)
    assert objects.list_keys("z\U0010ffff") == (["z\U0010ffffa"], False)


def test_what_sqs_refuses_the_embedded_queues_refuse_too(tmp_path: Path) -> None:
    from pipeline.backends import Outgoing, RedriveError
    from pipeline.backends.embedded import SqliteQueues

    queues = SqliteQueues(Database(tmp_path / "jsync.db"))
    queues.create("q.fifo", None, 30)
    with pytest.raises(ValueError, match="message group"):
        queues.send("q.fifo", [Outgoing("m", "", "d")])
    for count in (0, 11):
        with pytest.raises(ValueError, match="1 to 10"):
            queues.receive("q.fifo", count)
    assert queues.depth("q.fifo").total == 0
    # and a redrive to or from a queue `make run` never created says how to create it
    with pytest.raises(RedriveError, match="queue missing-dlq.fifo does not exist; start `make run` once"):
        queues.redrive("missing-dlq.fifo", "q.fifo")
