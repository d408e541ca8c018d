"""The embedded backend: objects and FIFO queues in one SQLite file under `$JSYNC_HOME`, no server.

What it guarantees, the same as S3 and SQS do for the pipeline:
- Every call is one SQLite transaction in WAL mode: a transaction cut short by a crash leaves nothing behind, and
  a committed one survives the process being killed (kill -9) the moment the call returns.
- A send is also fsynced before it returns (`synchronous=FULL` for that commit), so a 202 sent after it survives a
  power cut too. Other writes are fsynced with the next send (`synchronous=NORMAL`): the WAL is one sequence, so
  a power cut can only lose the newest writes as a whole, never an older one behind a newer; that is the same as
  having stopped a little earlier, which every handler already survives, because each hand-off (the writer's
  change to the committer, a redrive) is a send and fsyncs everything written before it.
- Conditional puts and receives run under `BEGIN IMMEDIATE`, SQLite's write lock across threads and processes:
  exactly one of racing writers wins a compare-and-swap, and no two receivers ever hold one message group.
- Queues: order within a group; a group with a message in flight is held; a deduplication id drops a repeat for
  5 minutes (also after the first copy is deleted); a message received a 6th time moves to the dead-letter queue
  with its group; redrive moves it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from pipeline.backends import Depth, Outgoing, PreconditionFailed, Readable, Received, RedriveError, StoredObject

DEDUP_WINDOW_MS = 5 * 60 * 1000
MAX_RECEIVE_COUNT = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY, body BLOB NOT NULL, etag TEXT NOT NULL, content_type TEXT NOT NULL, modified_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, dlq TEXT, visibility_timeout INTEGER NOT NULL, content_dedup INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL, message_id TEXT NOT NULL, grp TEXT NOT NULL, dedup_id TEXT NOT NULL, body TEXT NOT NULL,
    attributes TEXT NOT NULL, sent_ms INTEGER NOT NULL, visible_at_ms INTEGER NOT NULL DEFAULT 0,
    receipt TEXT, receive_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, seq);
CREATE INDEX IF NOT EXISTS messages_in_flight ON messages (queue, visible_at_ms);
CREATE INDEX IF NOT EXISTS messages_by_receipt ON messages (receipt) WHERE receipt IS NOT NULL;
CREATE TABLE IF NOT EXISTS dedup (
    queue TEXT NOT NULL, dedup_id TEXT NOT NULL, expires_ms INTEGER NOT NULL, PRIMARY KEY (queue, dedup_id)
) WITHOUT ROWID;
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class Database:
    """One SQLite file; a connection per thread (sqlite3 connections are not shared between threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # Every thread's connection, so that close() reaches them and a finished thread's is closed (health and
        # the API read from short-lived pool threads; their connections would otherwise hold files open).
        self._opened: dict[threading.Thread, sqlite3.Connection] = {}
        self._opened_lock = threading.Lock()
        self._generation = 0  # bumped by close(): a thread's connection from before is opened again
        # Writers of this process take turns here: SQLite's own lock makes a loser sleep and poll (up to 100 ms a
        # try), which under load cost more than the writes; across processes SQLite's lock still decides.
        self.write_turn = threading.Lock()
        self.connection().executescript(_SCHEMA)
        self.changed = threading.Condition()  # notified after each send in this process, so pollers wake at once

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", -1) == self._generation:
            return conn
        # check_same_thread off only so that close() may close a finished thread's connection; each is still used
        # by its own thread alone.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=LOCK_TIMEOUT_S, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._opened_lock:
            for thread in [t for t in self._opened if not t.is_alive()]:
                self._opened.pop(thread).close()
            previous = self._opened.pop(threading.current_thread(), None)
            if previous is not None:
                previous.close()
            self._opened[threading.current_thread()] = conn
            self._local.conn, self._local.generation = conn, self._generation
        return conn

    def forget_connection(self) -> None:
        """Drop this thread's connection (left mid-transaction by a failure): the next call opens a new one."""
        with self._opened_lock:
            conn = self._opened.pop(threading.current_thread(), None)
            self._local.conn = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def run(self, sql: str, params: tuple[object, ...]) -> int:
        """One write statement in its own implicit transaction (atomic, like any SQLite statement); returns how many
        rows it changed."""
        if not self.write_turn.acquire(timeout=LOCK_TIMEOUT_S):
            raise sqlite3.OperationalError("database is locked (another writer held it for a minute)")
        try:
            return self.connection().execute(sql, params).rowcount
        finally:
            self.write_turn.release()

    def write(self, fsync: bool = False) -> _Transaction:
        """A write transaction; `fsync`: on disk, with everything committed before it, when it returns."""
        return _Transaction(self, fsync)

    def close(self) -> None:
        """Close this thread's connection and those of finished threads; a thread still running keeps its own
        until it ends (closing it under a running statement could crash the interpreter), and any thread using
        the database afterwards opens a new one."""
        with self._opened_lock:
            self._generation += 1
            for thread in list(self._opened):
                if thread is threading.current_thread() or not thread.is_alive():
                    self._opened.pop(thread).close()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and fsync it: every write so far survives a power cut."""
        self.connection().execute("PRAGMA wal_checkpoint(FULL)").fetchall()


LOCK_TIMEOUT_S = 60


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` on an exception: the write lock for the whole block."""

    def __init__(self, db: Database, fsync: bool) -> None:
        self.db = db
        self.conn = db.connection()
        self.fsync = fsync

    def __enter__(self) -> sqlite3.Connection:
        if not self.db.write_turn.acquire(timeout=LOCK_TIMEOUT_S):
            raise sqlite3.OperationalError("database is locked (another writer held it for a minute)")
        try:
            if self.fsync:
                self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._end(rollback=True)
            raise
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._end(rollback=exc_type is not None)

    def _end(self, rollback: bool) -> None:
        """Commit or roll back, and leave the connection outside any transaction whatever fails: a transaction
        left open would hold SQLite's write lock against every other writer."""
        try:
            try:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK" if rollback else "COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
            finally:
                if self.conn.in_transaction:
                    self.db.forget_connection()
                elif self.fsync:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("PRAGMA synchronous=NORMAL")
        finally:
            self.db.write_turn.release()


def _past(prefix: str) -> str:
    """The smallest string above every string that starts with `prefix` (SQLite compares UTF-8 bytes, which
    orders as code points, as S3 does)."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:
            code = 0xE000  # no key holds a surrogate
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return "\U0010ffff" * 2  # an empty prefix: above any key a JSync path can be


def _etag(body: bytes) -> str:
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


class SqliteObjects:
    """The object store on the `objects` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(
        self,
        key: str,
        body: bytes,
        content_type: str = "application/json",
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        etag, now = _etag(body), _now_ms()
        # One statement each, so one implicit transaction: the condition and the write are atomic together.
        if if_none_match:
            written = self.db.run(
                "INSERT INTO objects (key, body, etag, content_type, modified_ms) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                (key, body, etag, content_type, now),
            )
        elif if_match is not None:
            written = self.db.run(
                "UPDATE objects SET body = ?, etag = ?, content_type = ?, modified_ms = ? WHERE key = ? AND etag = ?",
                (body, etag, content_type, now, key, if_match),
            )
        else:
            written = self.db.run(
                "INSERT OR REPLACE INTO objects (key, body, etag, content_type, modified_ms) VALUES (?, ?, ?, ?, ?)",
                (key, body, etag, content_type, now),
            )
        if not written:
            raise PreconditionFailed(key)
        return etag

    def get(self, key: str) -> StoredObject | None:
        row = (
            self.db.connection()
            .execute("SELECT body, etag, content_type FROM objects WHERE key = ?", (key,))
            .fetchone()
        )
        return StoredObject(bytes(row[0]), row[1], row[2]) if row else None

    def put_stream(self, key: str, stream: Readable, content_type: str) -> None:
        # SQLite takes a blob whole; the attachment limit (100 MB by default) bounds what this holds in memory.
        body = bytearray()
        while chunk := stream.read(1024 * 1024):
            body += chunk
        self.put(key, bytes(body), content_type)

    def presign(self, key: str, filename: str, content_type: str, seconds: int) -> str | None:
        return None  # no URL reaches the embedded store; the API serves the bytes

    def delete(self, key: str) -> None:
        self.db.run("DELETE FROM objects WHERE key = ?", (key,))

    def list_keys(self, prefix: str, start_after: str | None = None, limit: int = 1000) -> tuple[list[str], bool]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT key FROM objects WHERE key >= ? AND key > ? AND key < ? ORDER BY key LIMIT ?",
                (prefix, start_after or "", _past(prefix), limit + 1),
            )
            .fetchall()
        )
        keys = [r[0] for r in rows]
        return keys[:limit], len(keys) > limit

    def folders(self, prefix: str) -> list[str]:
        # Skip from one folder to the next instead of reading every key below them.
        found: list[str] = []
        conn = self.db.connection()
        low, end = prefix, _past(prefix)
        while True:
            row = conn.execute(
                "SELECT key FROM objects WHERE key >= ? AND key < ? ORDER BY key LIMIT 1", (low, end)
            ).fetchone()
            if row is None:
                return found
            rest = row[0][len(prefix) :]
            if "/" not in rest:
                low = row[0] + "\x00"  # the next key after this one
                continue
            folder = prefix + rest.split("/", 1)[0] + "/"
            found.append(folder)
            low = _past(folder)

    def check(self) -> str:
        self.db.connection().execute("SELECT 1 FROM objects LIMIT 1").fetchall()
        return f"embedded store {self.db.path}"


class SqliteQueues:
    """FIFO queues on the `messages` table; each queue's settings in `queues`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- set-up -----------------------------------------------------------------------------------------------
    def create(self, name: str, dlq: str | None, visibility_timeout: int, content_dedup: bool = False) -> None:
        with self.db.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO queues (name, dlq, visibility_timeout, content_dedup) VALUES (?, ?, ?, ?)",
                (name, dlq, visibility_timeout, int(content_dedup)),
            )

    def release_in_flight(self) -> int:
        """Make every received message visible again: called at start, when no other process can hold one
        (the local stack holds `$JSYNC_HOME`'s lock), so they are what a killed run left in hand.

        A receive the process was killed in is not counted towards the dead-letter queue: the message did not fail,
        the process stopped (Ctrl-C, kill -9), and the committer holds up to a thousand changes for seconds at a time.
        """
        with self.db.write() as db:
            db.execute(
                "UPDATE messages SET receive_count = MAX(receive_count - 1, 0) WHERE visible_at_ms > ?", (_now_ms(),)
            )
            return db.execute("UPDATE messages SET visible_at_ms = 0, receipt = NULL WHERE visible_at_ms > 0").rowcount

    # --- the port ---------------------------------------------------------------------------------------------
    def send(self, queue: str, messages: list[Outgoing]) -> None:
        if not 1 <= len(messages) <= 10:
            raise ValueError("send takes 1 to 10 messages, as SQS's SendMessageBatch")
        now = _now_ms()
        with self.db.write(fsync=True) as db:
            _, _, content_dedup = self._queue(db, queue)
            db.execute("DELETE FROM dedup WHERE queue = ? AND expires_ms <= ?", (queue, now))
            for m in messages:
                dedup = m.dedup_id or (hashlib.sha256(m.body.encode()).hexdigest() if content_dedup else None)
                if not dedup:
                    raise ValueError(f"queue {queue} needs a deduplication id (it does not deduplicate by content)")
                if not m.group:
                    raise ValueError("a FIFO message needs a message group")
                taken = db.execute(
                    "INSERT OR IGNORE INTO dedup (queue, dedup_id, expires_ms) VALUES (?, ?, ?)",
                    (queue, dedup, now + DEDUP_WINDOW_MS),
                ).rowcount
                if not taken:
                    continue  # a repeat within 5 minutes: accepted, and dropped, as SQS does
                db.execute(
                    "INSERT INTO messages (queue, message_id, grp, dedup_id, body, attributes, sent_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (queue, str(uuid.uuid4()), m.group, dedup, m.body, json.dumps(m.attributes), now),
                )
        with self.db.changed:
            self.db.changed.notify_all()

    def receive(self, queue: str, max_messages: int = 10, visibility_timeout: int | None = None) -> list[Received]:
        if not 1 <= max_messages <= 10:
            raise ValueError("receive takes 1 to 10 messages, as SQS")
        now = _now_ms()
        out: list[Received] = []
        with self.db.write() as db:
            dlq, timeout, _ = self._queue(db, queue)
            timeout = timeout if visibility_timeout is None else visibility_timeout
            # Groups with a message in flight are held; the rest give their oldest messages, in order.
            rows = db.execute(
                "SELECT seq, message_id, grp, dedup_id, body, attributes, sent_ms, receive_count FROM messages"
                " WHERE queue = ? AND grp NOT IN"
                " (SELECT grp FROM messages WHERE queue = ? AND visible_at_ms > ?)"
                " ORDER BY seq LIMIT ?",
                (queue, queue, now, max_messages),
            ).fetchall()
            moved_groups: set[str] = set()
            for seq, message_id, grp, dedup_id, body, attributes, sent_ms, count in rows:
                if grp in moved_groups:
                    continue  # the head of its group went to the DLQ: the rest waits for the next receive
                if dlq and count >= MAX_RECEIVE_COUNT:
                    _move(db, seq, dlq)
                    moved_groups.add(grp)
                    continue
                receipt = uuid.uuid4().hex
                db.execute(
                    "UPDATE messages SET visible_at_ms = ?, receipt = ?, receive_count = receive_count + 1"
                    " WHERE seq = ?",
                    (now + timeout * 1000, receipt, seq),
                )
                out.append(
                    Received(
                        message_id,
                        receipt,
                        body,
                        grp,
                        dedup_id,
                        count + 1,
                        sent_ms,
                        f"{seq:020d}",
                        json.loads(attributes),
                    )
                )
        return out

    def delete(self, queue: str, receipts: list[str]) -> None:
        # A receipt from before the message became visible again deletes nothing: its new holder owns it.
        with self.db.write() as db:
            db.executemany("DELETE FROM messages WHERE queue = ? AND receipt = ?", [(queue, r) for r in receipts])

    def change_visibility(self, queue: str, receipt: str, seconds: int) -> None:
        with self.db.write() as db:
            db.execute(
                "UPDATE messages SET visible_at_ms = ? WHERE queue = ? AND receipt = ?",
                (_now_ms() + seconds * 1000 if seconds else 0, queue, receipt),
            )
        if seconds == 0:
            with self.db.changed:
                self.db.changed.notify_all()

    def depth(self, queue: str) -> Depth:
        conn = self.db.connection()
        self._queue(conn, queue)
        now = _now_ms()
        waiting, in_flight = conn.execute(
            "SELECT COALESCE(SUM(visible_at_ms <= ?), 0), COALESCE(SUM(visible_at_ms > ?), 0)"
            " FROM messages WHERE queue = ?",
            (now, now, queue),
        ).fetchone()
        return Depth(int(waiting), int(in_flight))

    def arn(self, queue: str) -> str:
        return f"arn:aws:sqs:local:000000000000:{queue}"

    def redrive(self, dlq: str, source: str) -> int:
        with self.db.write(fsync=True) as db:
            for name in (dlq, source):
                if not db.execute("SELECT 1 FROM queues WHERE name = ?", (name,)).fetchone():
                    raise RedriveError(f"queue {name} does not exist; start `make run` once to create it")
            rows = db.execute("SELECT seq FROM messages WHERE queue = ? ORDER BY seq", (dlq,)).fetchall()
            for (seq,) in rows:
                _move(db, seq, source)
        with self.db.changed:
            self.db.changed.notify_all()
        return len(rows)

    def wait(self, queue: str, seconds: float) -> None:
        with self.db.changed:
            self.db.changed.wait(seconds)

    def _queue(self, db: sqlite3.Connection, name: str) -> tuple[str | None, int, bool]:
        row = db.execute("SELECT dlq, visibility_timeout, content_dedup FROM queues WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise QueueMissing(f"queue {name} does not exist")
        return row[0], int(row[1]), bool(row[2])


def _move(db: sqlite3.Connection, seq: int, queue: str) -> None:
    """Put a message at the back of `queue` (a new place in its order), visible, never received there."""
    db.execute(
        "INSERT INTO messages (queue, message_id, grp, dedup_id, body, attributes, sent_ms)"
        " SELECT ?, message_id, grp, dedup_id, body, attributes, sent_ms FROM messages WHERE seq = ?",
        (queue, seq),
    )
    db.execute("DELETE FROM messages WHERE seq = ?", (seq,))


class QueueMissing(sqlite3.Error):
    """Sent to or received from a queue never created (counts as unavailable, as SQS's NonExistentQueue)."""
