"""Reading a running local stack's state from the bench process, on either backend, without disturbing it.

embedded: the stack's SQLite file opened read-only (WAL lets a reader look while the stack writes; each query is
its own short transaction, so the reader never holds back the stack's checkpoints).
aws: S3 and SQS through boto3 against the moto server the bench started.
Also the git side: every commit's `Jira-Event-Id:` trailers on a bare repository's branch.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import boto3
from dulwich.repo import Repo

from bench.motoserver import AWS_ENV

_TRAILER = re.compile(rb"^Jira-Event-Id: (\S+)", re.MULTILINE)
_TOP = "\U0010ffff"


class StackState(Protocol):
    def keys(self, prefix: str) -> set[str]: ...

    def get(self, key: str) -> bytes | None: ...

    def depth(self, queue: str) -> int:
        """Messages waiting or in flight (received, not yet deleted)."""
        ...


class EmbeddedState:
    """`$JSYNC_HOME/jsync.db`, read-only; tables `objects(key, body, ...)` and `messages(queue, ...)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, isolation_level=None, timeout=30, check_same_thread=False
            )
        return self._conn

    def keys(self, prefix: str) -> set[str]:
        with self._lock:
            rows = (
                self._db()
                .execute("SELECT key FROM objects WHERE key >= ? AND key < ?", (prefix, prefix + _TOP))
                .fetchall()
            )
        return {r[0] for r in rows}

    def get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db().execute("SELECT body FROM objects WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def depth(self, queue: str) -> int:
        with self._lock:
            (count,) = self._db().execute("SELECT COUNT(*) FROM messages WHERE queue = ?", (queue,)).fetchone()
        return int(count)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class AwsState:
    """The stack's bucket and queues on the moto server at `endpoint`."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        from pipeline.backends.aws import SqsQueues

        self.bucket = bucket
        self.s3 = self.client("s3", endpoint)
        self.queues = SqsQueues(self.client("sqs", endpoint), use_move_tasks=False)

    @staticmethod
    def client(service: str, endpoint: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=AWS_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, prefix: str) -> set[str]:
        found: set[str] = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found.update(item["Key"] for item in page.get("Contents", []))
        return found

    def get(self, key: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def depth(self, queue: str) -> int:
        return self.queues.depth(queue).total

    def close(self) -> None:
        pass


def commit_event_ids(repo_path: Path, branch: str = "main") -> tuple[Counter[str], int]:
    """How many times each event id appears in `Jira-Event-Id:` trailers on the branch, and the commit count."""
    ids: Counter[str] = Counter()
    commits = 0
    repo = Repo(str(repo_path))
    try:
        ref = f"refs/heads/{branch}".encode()
        sha: bytes | None = repo.refs[ref] if ref in repo.refs else None  # noqa: SIM401
        while sha is not None:
            commit = repo[sha]
            ids.update(m.decode() for m in _TRAILER.findall(commit.message))  # type: ignore[attr-defined]
            commits += 1
            parents = commit.parents  # type: ignore[attr-defined]
            sha = parents[0] if parents else None
    finally:
        repo.close()
    return ids, commits
