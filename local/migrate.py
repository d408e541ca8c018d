"""Import what the old moto-based local stack saved under `$JSYNC_HOME/state/` into the embedded backend, once.

The old format, read here without the module that wrote it:

- `state/s3-manifest.json`: `{key: {"etag": ..., "content_type": ...}}` for the one bucket;
- `state/s3/<bucket>/<key quoted with urllib.parse.quote(key, safe="")>`: each object's bytes;
- `state/sqs.jsonl`: one JSON object per queued message, `{"queue", "body", "group", "dedup", "receives"}`,
  in the order they were taken off their queues (so in order within each message group).

Safe to crash at any point and run again: objects go in first (a put of the same bytes twice is one object),
then messages, and renaming `state/` to `state.imported-<UTC timestamp>/` is the last step, so an import
that finished is never repeated, and one cut short is repeated whole. A message sent again by such a rerun
carries the same deduplication id, so within 5 minutes the queue drops it; after that it is queued a second
time, which is harmless because every stage of the pipeline is idempotent (a repeated event, commit or
reconcile step finds its work done). Receive counts are not carried over: imported messages start afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipeline.backends import ObjectStore, Outgoing, QueueBus
from pipeline.backends.embedded import QueueMissing

log = logging.getLogger("jsync.local")

_BATCH = 10  # SendMessageBatch's limit, and the port's


class MigrationError(RuntimeError):
    """The old state cannot be imported as it is (a queue it names does not exist, or a line is not JSON)."""


@dataclass(frozen=True)
class MigrationReport:
    objects: int  # objects put into the store
    messages: int  # messages sent (a repeat the queue dropped as a duplicate is counted too)
    moved_to: Path  # where `state/` is now


def import_moto_state(
    home: Path, bucket: str, objects: ObjectStore, queues: QueueBus, flush: Callable[[], None] = lambda: None
) -> MigrationReport | None:
    """Import `home/state/` (objects, then queued messages) and rename it; None when there is no `state/`.

    The caller creates the queues first: a message for a queue that does not exist raises MigrationError and
    leaves `state/` in place, to be imported again once it does. `flush` puts everything imported on disk before
    the old copy is renamed (the embedded store fsyncs object writes lazily)."""
    state = home / "state"
    if not state.is_dir():
        return None
    imported_objects = _import_objects(state, bucket, objects)
    imported_messages = _import_messages(state, queues)
    flush()
    moved_to = _retire(state)
    log.info(
        "imported %d objects and %d queued messages from the moto-era %s; it is now %s",
        imported_objects,
        imported_messages,
        state,
        moved_to,
    )
    return MigrationReport(imported_objects, imported_messages, moved_to)


def _import_objects(state: Path, bucket: str, objects: ObjectStore) -> int:
    manifest_path = state / "s3-manifest.json"
    if not manifest_path.exists():
        return 0
    manifest: dict[str, dict[str, str]] = json.loads(manifest_path.read_text(encoding="utf-8"))
    folder = state / "s3" / bucket
    count = 0
    for key, entry in manifest.items():
        path = folder / quote(key, safe="")
        if not path.is_file():
            # The old restore skipped these too: the manifest outlived a file deleted by hand.
            log.warning("%s is in %s but its file %s is missing: not imported", key, manifest_path, path)
            continue
        objects.put(key, path.read_bytes(), entry.get("content_type") or "application/octet-stream")
        count += 1
    return count


def _import_messages(state: Path, queues: QueueBus) -> int:
    """Send in file order, up to 10 a call per queue; per-queue order keeps each group's order."""
    pending: dict[str, list[Outgoing]] = {}
    count = 0
    for queue, message in _read_messages(state / "sqs.jsonl"):
        batch = pending.setdefault(queue, [])
        batch.append(message)
        if len(batch) == _BATCH:
            count += _send(queues, queue, batch)
            pending[queue] = []
    for queue, batch in pending.items():
        if batch:
            count += _send(queues, queue, batch)
    return count


def _read_messages(path: Path) -> Iterator[tuple[str, Outgoing]]:
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            m: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not text.endswith("\n"):
                # A write cut short when the old stack died mid-save: that message never left moto's memory.
                log.warning("%s:%d is a partial line: skipped", path, number)
                return
            raise MigrationError(f"{path}:{number} is not a JSON object: {exc}") from exc
        queue, body = str(m["queue"]), str(m["body"])
        dedup = m.get("dedup") or hashlib.sha256((queue + body).encode()).hexdigest()
        yield queue, Outgoing(body=body, group=str(m.get("group") or ""), dedup_id=str(dedup))


def _send(queues: QueueBus, queue: str, batch: list[Outgoing]) -> int:
    try:
        queues.send(queue, batch)
    except QueueMissing as exc:
        raise MigrationError(
            f"the saved moto state has messages for queue {queue!r}, which does not exist in the embedded store:"
            " create the queues before importing (nothing is lost: state/ stays until an import completes)"
        ) from exc
    return len(batch)


def _retire(state: Path) -> Path:
    """Rename `state/` out of the way, atomically, and make the rename durable before returning."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = state.with_name(f"state.imported-{stamp}")
    os.rename(state, target)  # fails rather than merging if `target` exists
    fd = os.open(state.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target
