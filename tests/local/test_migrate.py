"""Importing the moto-era `$JSYNC_HOME/state/` into the embedded backend: once, completely, and safely rerun."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from local.migrate import MigrationError, MigrationReport, import_moto_state
from pipeline.backends import Outgoing, Received
from pipeline.backends.embedded import Database, SqliteObjects, SqliteQueues

BUCKET = "jsync-local"
EVENTS, EVENTS_DLQ = "jsync-events.fifo", "jsync-events-dlq.fifo"
COMMITS, COMMITS_DLQ = "jsync-commits.fifo", "jsync-commits-dlq.fifo"

OBJECTS: dict[str, tuple[bytes, str]] = {
    "issues/OPS-17/issue.json": (b'{"key": "OPS-17"}', "application/json"),
    "raw/2024 01/odd?name&.txt": (b"plain \xe2\x9c\x93", "text/plain; charset=utf-8"),
    "blobs/zero": (b"", "application/octet-stream"),
}


def _lines() -> list[dict[str, object]]:
    """12 events in two interleaved groups (two send batches), 3 commits, one of them without a dedup id."""
    lines: list[dict[str, object]] = []
    for n in range(12):
        group = "OPS-1" if n % 3 else "OPS-2"
        lines.append({"queue": EVENTS, "body": f"event-{n}", "group": group, "dedup": f"e-{n}", "receives": n % 2})
        if n in (2, 7):
            lines.append({"queue": COMMITS, "body": f"commit-{n}", "group": "main", "dedup": f"c-{n}", "receives": 0})
    lines.append({"queue": COMMITS, "body": "commit-last", "group": "main", "dedup": None, "receives": 0})
    return lines


def write_old_state(home: Path, *, manifest: bool = True, messages: bool = True) -> Path:
    """The layout local/persist.py wrote, built by hand."""
    state = home / "state"
    (state / "s3" / BUCKET).mkdir(parents=True)
    entries: dict[str, dict[str, str]] = {}
    for key, (body, content_type) in OBJECTS.items():
        (state / "s3" / BUCKET / quote(key, safe="")).write_bytes(body)
        entries[key] = {"etag": f'"{hashlib.md5(body).hexdigest()}"', "content_type": content_type}
    entries["gone/missing.json"] = {"etag": '"x"', "content_type": "application/json"}  # file deleted by hand
    if manifest:
        (state / "s3-manifest.json").write_text(json.dumps(entries))
    if messages:
        (state / "sqs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in _lines()), encoding="utf-8")
    return state


def fresh_backend(tmp_path: Path) -> tuple[SqliteObjects, SqliteQueues]:
    db = Database(tmp_path / "db" / "jsync.sqlite3")
    queues = SqliteQueues(db)
    for source, dlq in ((EVENTS, EVENTS_DLQ), (COMMITS, COMMITS_DLQ)):
        queues.create(dlq, None, 60)
        queues.create(source, dlq, 60)
    return SqliteObjects(db), queues


def drain(queues: SqliteQueues, queue: str) -> list[Received]:
    """Every message of `queue`, as receivers get them, each deleted once received."""
    out: list[Received] = []
    while batch := queues.receive(queue, 10):
        out.extend(batch)
        queues.delete(queue, [m.receipt for m in batch])
    return out


def by_group(received: list[Received]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for m in received:
        groups.setdefault(m.group, []).append(m.body)
    return groups


def expected(queue: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for line in _lines():
        if line["queue"] == queue:
            groups.setdefault(str(line["group"]), []).append(str(line["body"]))
    return groups


def assert_objects(objects: SqliteObjects) -> None:
    for key, (body, content_type) in OBJECTS.items():
        stored = objects.get(key)
        assert stored is not None, key
        assert (stored.body, stored.content_type) == (body, content_type)
    assert objects.get("gone/missing.json") is None
    assert sorted(objects.list_keys("")[0]) == sorted(OBJECTS)


def test_imports_objects_and_messages_in_group_order_then_retires_the_state_dir(tmp_path: Path) -> None:
    # Given the moto-era state and a fresh embedded store with the queues created
    home = tmp_path / "home"
    write_old_state(home)
    objects, queues = fresh_backend(tmp_path)

    # When it is imported
    report = import_moto_state(home, BUCKET, objects, queues)

    # Then every object with a file is there with its bytes and content type
    assert isinstance(report, MigrationReport)
    assert (report.objects, report.messages) == (len(OBJECTS), len(_lines()))
    assert_objects(objects)
    # And every message is on its queue, once, in order within its group, with its dedup id kept
    events, commits = drain(queues, EVENTS), drain(queues, COMMITS)
    assert by_group(events) == expected(EVENTS)
    assert by_group(commits) == expected(COMMITS)
    assert [m.dedup_id for m in events] == [f"e-{n}" for n in range(12)]
    assert commits[-1].dedup_id == hashlib.sha256(f"{COMMITS}commit-last".encode()).hexdigest()
    assert all(m.receive_count == 1 for m in events + commits)  # old receive counts are not carried over
    # And state/ was renamed out of the way, whole
    assert not (home / "state").exists()
    assert report.moved_to.parent == home and report.moved_to.name.startswith("state.imported-")
    assert (report.moved_to / "sqs.jsonl").exists() and (report.moved_to / "s3-manifest.json").exists()

    # When the stack starts again, nothing is imported a second time
    assert import_moto_state(home, BUCKET, objects, queues) is None
    assert drain(queues, EVENTS) == [] and drain(queues, COMMITS) == []


def test_no_state_dir_is_nothing_to_do(tmp_path: Path) -> None:
    objects, queues = fresh_backend(tmp_path)
    assert import_moto_state(tmp_path / "home", BUCKET, objects, queues) is None
    assert objects.list_keys("") == ([], False)


class CrashOnce:
    """The queue port, but its `nth` send raises (as a kill mid-import would stop it), once."""

    def __init__(self, inner: SqliteQueues, nth: int) -> None:
        self.inner, self.nth, self.calls = inner, nth, 0

    def send(self, queue: str, messages: list[Outgoing]) -> None:
        self.calls += 1
        if self.calls == self.nth:
            raise OSError("killed")
        self.inner.send(queue, messages)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_crash_after_some_sends_then_a_rerun_queues_each_message_once(tmp_path: Path) -> None:
    # Given an import killed after the objects and the first batch of messages went in
    home = tmp_path / "home"
    write_old_state(home)
    objects, queues = fresh_backend(tmp_path)
    crashing = CrashOnce(queues, nth=2)
    with pytest.raises(OSError, match="killed"):
        import_moto_state(home, BUCKET, objects, crashing)  # type: ignore[arg-type]
    assert (home / "state").is_dir()  # not retired: the next start imports again
    assert_objects(objects)
    assert queues.depth(EVENTS).total == 10  # the first batch was committed before the crash

    # When the next start imports again (within the 5-minute deduplication window)
    report = import_moto_state(home, BUCKET, objects, crashing)  # type: ignore[arg-type]

    # Then every message is queued exactly once, in group order, and state/ is retired
    assert report is not None and not (home / "state").exists()
    assert by_group(drain(queues, EVENTS)) == expected(EVENTS)
    assert by_group(drain(queues, COMMITS)) == expected(COMMITS)
    assert_objects(objects)


def test_a_missing_queue_is_a_clear_error_and_keeps_the_state_dir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_old_state(home)
    db = Database(tmp_path / "db" / "jsync.sqlite3")
    queues = SqliteQueues(db)
    queues.create(EVENTS, None, 60)  # the commits queue was never created

    with pytest.raises(MigrationError, match=r"queue 'jsync-commits\.fifo'.*create the queues"):
        import_moto_state(home, BUCKET, SqliteObjects(db), queues)
    assert (home / "state" / "sqs.jsonl").exists()


def test_only_objects_saved(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_old_state(home, messages=False)
    objects, queues = fresh_backend(tmp_path)

    report = import_moto_state(home, BUCKET, objects, queues)

    assert report is not None and (report.objects, report.messages) == (len(OBJECTS), 0)
    assert_objects(objects)
    assert queues.depth(EVENTS).total == 0 and not (home / "state").exists()


def test_only_messages_saved(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_old_state(home, manifest=False)
    objects, queues = fresh_backend(tmp_path)

    report = import_moto_state(home, BUCKET, objects, queues)

    # Without the manifest the files' content types are unknown: they are not imported (as the old restore did)
    assert report is not None and (report.objects, report.messages) == (0, len(_lines()))
    assert objects.list_keys("") == ([], False)
    assert by_group(drain(queues, EVENTS)) == expected(EVENTS)
    assert not (home / "state").exists()


def test_empty_state_dir_is_retired(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "state").mkdir(parents=True)
    objects, queues = fresh_backend(tmp_path)

    report = import_moto_state(home, BUCKET, objects, queues)

    assert report is not None and (report.objects, report.messages) == (0, 0) and report.moved_to.is_dir()


def test_a_partial_last_line_is_skipped_but_a_bad_line_inside_is_an_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = write_old_state(home, manifest=False)
    whole = (state / "sqs.jsonl").read_text()
    (state / "sqs.jsonl").write_text(whole + '{"queue": "jsync-events.fifo", "bo')
    objects, queues = fresh_backend(tmp_path)

    report = import_moto_state(home, BUCKET, objects, queues)
    assert report is not None and report.messages == len(_lines())

    (home / "state").mkdir()
    (home / "state" / "sqs.jsonl").write_text('{"queue": "x", "bo\n' + whole)
    with pytest.raises(MigrationError, match=r"sqs\.jsonl:1 is not a JSON object"):
        import_moto_state(home, BUCKET, objects, queues)
