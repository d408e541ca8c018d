"""`python -m bench.writes [--issues N] [--updates M] [--json]`: object-store calls per webhook, writer and committer.

Drives N issue creations, then M updates of those issues (round robin, each newer than the last), through the real
writer handler (`functions/writer.py`, SQS-batch-shaped events of up to ten records) on the embedded backend in a
temporary `JSYNC_HOME`, with the object store wrapped in `CountingObjects`; then rings the committer's bell once
(`functions/committer.py` drains the phase's changes into a local bare remote) and takes a records checkpoint, as
if one came due. Prints, per phase, calls per event and PUTs per event by key prefix (raw/, snapshots/, latest/,
gitstate/, ...), the writer's and the committer's apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dulwich.repo import Repo

from bench.repos import issue_id, webhook
from functions import committer, writer
from local.poller import LocalContext
from local.resources import create_resources
from pipeline import services
from pipeline.backends import ObjectStore, Readable, StoredObject
from pipeline.messages import QueuedEvent
from pipeline.settings import get_settings
from pipeline.store import raw_key

BATCH = 10  # records in one SQS batch, Lambda's default for a FIFO event source
_BASE_MS = 1_764_000_000_000


def prefix_of(key: str) -> str:
    """What a key is counted under: its first folder, and for index/ the kind of index too (index/keys/)."""
    parts = key.split("/")
    depth = 2 if parts[0] in ("index", "ops", "sync") and len(parts) > 2 else 1
    return "/".join(parts[:depth]) + "/"


class CountingObjects:
    """An ObjectStore that counts every call by operation and key prefix, then makes it on the store it wraps."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.calls: Counter[tuple[str, str]] = Counter()  # (operation, prefix) -> calls

    def count(self, operation: str) -> Counter[str]:
        """Calls of one operation (put, get, delete, list, folders) by prefix."""
        return Counter({prefix: n for (op, prefix), n in self.calls.items() if op == operation})

    @property
    def puts(self) -> Counter[str]:
        return self.count("put")

    def reset(self) -> None:
        self.calls.clear()

    def put(
        self,
        key: str,
        body: bytes,
        content_type: str = "application/json",
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        self.calls["put", prefix_of(key)] += 1
        return self.inner.put(key, body, content_type, if_match=if_match, if_none_match=if_none_match)

    def get(self, key: str) -> StoredObject | None:
        self.calls["get", prefix_of(key)] += 1
        return self.inner.get(key)

    def put_stream(self, key: str, stream: Readable, content_type: str) -> None:
        self.calls["put", prefix_of(key)] += 1
        self.inner.put_stream(key, stream, content_type)

    def presign(self, key: str, filename: str, content_type: str, seconds: int) -> str | None:
        return self.inner.presign(key, filename, content_type, seconds)

    def delete(self, key: str) -> None:
        self.calls["delete", prefix_of(key)] += 1
        self.inner.delete(key)

    def list_keys(self, prefix: str, start_after: str | None = None, limit: int = 1000) -> tuple[list[str], bool]:
        self.calls["list", prefix_of(prefix)] += 1
        return self.inner.list_keys(prefix, start_after, limit)

    def folders(self, prefix: str) -> list[str]:
        self.calls["folders", prefix_of(prefix)] += 1
        return self.inner.folders(prefix)

    def check(self) -> str:
        return self.inner.check()


@contextmanager
def embedded_writer(home: Path) -> Iterator[CountingObjects]:
    """The embedded backend under `home`, as the process's services, its object store counted."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("JSYNC_", "AWS_ENDPOINT")):
            del os.environ[name]
    os.environ.update(JSYNC_BACKEND="embedded", JSYNC_HOME=str(home), JSYNC_GIT_REMOTE=str(home / "remote.git"))
    services.reset()
    Repo.init_bare(str(home / "remote.git"), mkdir=True).close()
    try:
        create_resources(get_settings())
        store = services.store()
        counting = CountingObjects(store.objects)
        store.objects = counting
        yield counting
    finally:
        services.reset()
        os.environ.clear()
        os.environ.update(saved)


def sqs_event(events: list[tuple[str, QueuedEvent]]) -> dict[str, Any]:
    """A Lambda SQS FIFO event of (message group, queued event) records, as the event source mapping delivers it."""
    arn = f"arn:aws:sqs:us-east-1:123456789012:{get_settings().events_queue}"
    records = []
    for n, (group, queued) in enumerate(events):
        body = queued.to_json()
        message_id = str(uuid.uuid4())
        now = str(int(time.time() * 1000))
        records.append(
            {
                "messageId": message_id,
                "receiptHandle": message_id,
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": "jsync-ingest",
                    "ApproximateFirstReceiveTimestamp": now,
                    "SequenceNumber": f"{n:020d}",
                    "MessageGroupId": group,
                    "MessageDeduplicationId": hashlib.sha256(body.encode()).hexdigest(),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def queued_webhook(i: int, version: int) -> tuple[str, QueuedEvent]:
    """Version `version` of issue `i` (0: its creation) as ingest queues it, with its message group."""
    event_id = f"bw-{i}-{version}"
    received_ms = int(time.time() * 1000)
    body = json.dumps(webhook(i, version, _BASE_MS + version * 60_000 + i)).encode()
    return issue_id(i), QueuedEvent(
        event_id, received_ms, "application/json", raw_key(event_id, received_ms, "json"), body
    )


def drive(events: list[tuple[str, QueuedEvent]]) -> None:
    """Every event through the writer handler, ten to a batch; any failure is a failed benchmark."""
    for start in range(0, len(events), BATCH):
        response = writer.lambda_handler(
            sqs_event(events[start : start + BATCH]), LocalContext("jsync-writer", "bench")
        )
        if response.get("batchItemFailures"):
            raise RuntimeError(f"the writer failed records: {response['batchItemFailures']}")


def phase(counting: CountingObjects, events: list[tuple[str, QueuedEvent]]) -> dict[str, Any]:
    """Drive `events` and report the object-store calls they took, per event."""
    counting.reset()
    started = time.perf_counter()
    drive(events)
    seconds = time.perf_counter() - started
    n = max(1, len(events))
    operations = sorted({op for op, _ in counting.calls})
    writer_figures = {
        "per_event": {op: round(sum(counting.count(op).values()) / n, 3) for op in operations},
        "puts_by_prefix": {p: round(c / n, 3) for p, c in sorted(counting.puts.items())},
    }
    counting.reset()
    bell = {"messageId": str(uuid.uuid4()), "body": '{"ring":true}', "attributes": {"MessageGroupId": "committer"}}
    committer.lambda_handler({"Records": [bell]}, LocalContext("jsync-committer", "bench"))
    services.git_records().checkpoint()
    committer_puts = {p: round(c / n, 4) for p, c in sorted(counting.puts.items())}
    return {
        "events": len(events),
        "seconds": round(seconds, 3),
        **writer_figures,
        "committer_puts_by_prefix": committer_puts,
        "puts_per_event_total": round(sum(writer_figures["puts_by_prefix"].values()) + sum(committer_puts.values()), 3),
    }


def run(issues: int = 200, updates: int = 1000) -> dict[str, Any]:
    """`issues` creations, then `updates` in-order updates of them (same key and project), through the writer."""
    with tempfile.TemporaryDirectory(prefix="jsync-bench-writes-") as home, embedded_writer(Path(home)) as counting:
        creations = [queued_webhook(i, 0) for i in range(issues)]
        edits = [queued_webhook(n % issues, n // issues + 1) for n in range(updates)]
        return {
            "backend": "embedded",
            "issues": issues,
            "updates": updates,
            "create": phase(counting, creations),
            "update": phase(counting, edits),
        }


def render(result: dict[str, Any]) -> str:
    lines = [f"writer object-store calls per event, {result['backend']} ({result['issues']} issues)"]
    for name in ("create", "update"):
        figures = result[name]
        calls = ", ".join(f"{op} {n:g}" for op, n in figures["per_event"].items())
        lines.append(f"  {name} x{figures['events']} ({figures['seconds']:.1f}s): {calls}")
        for prefix, n in figures["puts_by_prefix"].items():
            lines.append(f"    PUT {prefix:<22} {n:g}")
        for prefix, n in figures["committer_puts_by_prefix"].items():
            lines.append(f"    PUT {prefix:<22} {n:g} (committer: one push of the phase, one records checkpoint)")
        lines.append(f"    PUTs per event, writer and committer: {figures['puts_per_event_total']:g}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=200)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args()
    writer.logger.setLevel("WARNING")  # a line per captured event would bury the figures
    committer.logger.setLevel("WARNING")
    result = run(args.issues, args.updates)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
