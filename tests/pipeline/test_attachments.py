"""Attachments: which a capture adds, copying each once (whatever the repeats and order of requests), the size
limit, an attachment Jira lost, and the index the API reads."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.attachments import (
    AttachmentGone,
    AttachmentRef,
    added,
    content_key,
    copy,
    index_key,
    records,
    views,
)
from pipeline.backends.embedded import Database, SqliteObjects
from pipeline.store import Store


def doc(*attachments: tuple[str, int]) -> dict[str, Any]:
    return {
        "id": "10042",
        "fields": {
            "attachment": [
                {"id": i, "filename": f"file-{i}.bin", "size": size, "mimeType": "application/pdf"}
                for i, size in attachments
            ]
        },
    }


def ref(attachment_id: str, size: int | None = 10, version: str = "1764000200789-abc") -> AttachmentRef:
    return AttachmentRef("10042", attachment_id, f"file-{attachment_id}.bin", size, "application/pdf", version)


class FakeDownloads:
    """Jira's attachment contents by id, counting every download; an id missing from `contents` is gone."""

    def __init__(self, contents: dict[str, bytes]) -> None:
        self.contents = contents
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    @contextmanager
    def __call__(self, attachment_id: str) -> Iterator[BinaryIO]:
        with self.lock:
            self.calls[attachment_id] += 1
        if attachment_id not in self.contents:
            raise AttachmentGone(attachment_id)
        yield io.BytesIO(self.contents[attachment_id])


@pytest.fixture
def objects(tmp_path: Path) -> Iterator[SqliteObjects]:
    db = Database(tmp_path / "jsync.db")
    yield SqliteObjects(db)
    db.close()


# --- which attachments a capture adds -------------------------------------------------------------------------------


def test_added_lists_what_the_new_document_has_and_the_old_did_not() -> None:
    refs = added(doc(("7", 1)), doc(("7", 1), ("12", 5), ("9", 3)), "10042", "v1")
    assert [(r.attachment_id, r.size, r.version) for r in refs] == [("9", 3, "v1"), ("12", 5, "v1")]


def test_first_capture_adds_every_attachment_and_a_removal_adds_none() -> None:
    assert [r.attachment_id for r in added(None, doc(("7", 1)), "10042", "v")] == ["7"]
    assert added(doc(("7", 1)), doc(), "10042", "v") == []


@pytest.mark.parametrize(
    "value",
    [None, "x", 3, [None, "x", 4], [{"id": None}], [{"id": "../etc"}], [{"id": "12", "size": "big"}], {"id": "1"}],
)
def test_odd_attachment_fields_never_raise(value: Any) -> None:
    current = {"fields": {"attachment": value}}
    refs = added(None, current, "10042", "v")
    assert all(r.attachment_id.isdigit() for r in refs)
    assert all(r.size is None or isinstance(r.size, int) for r in refs)


def test_a_request_survives_its_queue_message() -> None:
    original = ref("10231", size=None)
    assert AttachmentRef.from_json(original.to_json()) == original
    with pytest.raises(ValueError):
        AttachmentRef.from_json('{"issue_id": "10042", "attachment_id": "../x"}')


# --- copying --------------------------------------------------------------------------------------------------------


def test_a_copy_stores_the_bytes_and_records_size_type_and_checksum(objects: SqliteObjects) -> None:
    store, jira = Store(objects), FakeDownloads({"5": b"%PDF-1.7 hello"})
    kept = copy(ref("5", size=14), store, objects, jira, max_bytes=1000)
    assert kept.state == "stored" and kept.copied_now
    stored = objects.get(content_key("10042", "5"))
    assert stored is not None and stored.body == b"%PDF-1.7 hello" and stored.content_type == "application/pdf"
    record = records(store, "10042")["5"]
    assert record["sha256"] == hashlib.sha256(b"%PDF-1.7 hello").hexdigest()
    assert record["size"] == 14 and record["version"] == "1764000200789-abc"


def test_a_second_request_finds_the_record_and_downloads_nothing(objects: SqliteObjects) -> None:
    store, jira = Store(objects), FakeDownloads({"5": b"abc"})
    copy(ref("5"), store, objects, jira, max_bytes=1000)
    again = copy(ref("5"), store, objects, jira, max_bytes=1000)
    assert again.state == "stored" and not again.copied_now
    assert jira.calls["5"] == 1


def test_an_attachment_over_the_limit_is_skipped_without_a_download(objects: SqliteObjects) -> None:
    store, jira = Store(objects), FakeDownloads({"6": b"x" * 50})
    kept = copy(ref("6", size=50), store, objects, jira, max_bytes=49)
    assert kept.state == "skipped" and "over JSync's limit of 49 bytes" in kept.record["reason"]
    assert jira.calls["6"] == 0 and objects.get(content_key("10042", "6")) is None


def test_metadata_that_understates_the_size_is_caught_while_reading(objects: SqliteObjects) -> None:
    store, jira = Store(objects), FakeDownloads({"6": b"x" * 5000})
    kept = copy(ref("6", size=10), store, objects, jira, max_bytes=1000)
    assert kept.state == "skipped"
    assert objects.get(content_key("10042", "6")) is None  # nothing half-stored


def test_an_attachment_jira_lost_is_recorded_gone(objects: SqliteObjects) -> None:
    store = Store(objects)
    kept = copy(ref("8"), store, objects, FakeDownloads({}), max_bytes=1000)
    assert kept.state == "gone" and records(store, "10042")["8"]["reason"] == "Jira no longer has this attachment."


def test_a_failed_download_records_nothing_so_the_retry_copies_it(objects: SqliteObjects) -> None:
    store = Store(objects)

    @contextmanager
    def jira_down(attachment_id: str) -> Iterator[BinaryIO]:
        raise ConnectionError("Jira is down")
        yield io.BytesIO()  # pragma: no cover

    with pytest.raises(ConnectionError):
        copy(ref("9"), store, objects, jira_down, max_bytes=1000)
    assert records(store, "10042") == {}
    assert copy(ref("9"), store, objects, FakeDownloads({"9": b"ok"}), max_bytes=1000).state == "stored"


def test_copies_of_one_issue_racing_on_its_index_all_land(objects: SqliteObjects) -> None:
    store = Store(objects)
    ids = [str(n) for n in range(1, 13)]
    jira = FakeDownloads({i: i.encode() * 3 for i in ids})
    threads = [threading.Thread(target=copy, args=(ref(i), store, objects, jira, 1000)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(records(store, "10042"), key=int) == ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(st.sampled_from(["1", "2", "3", "4"]), min_size=1, max_size=20),
    sizes=st.fixed_dictionaries({i: st.integers(0, 40) for i in ("1", "2", "3", "4")}),
    crash_after=st.sets(st.integers(0, 19)),
)
def test_any_repeats_order_and_crashes_give_one_record_and_one_stored_copy_each(
    tmp_path_factory: pytest.TempPathFactory,
    requests: list[str],
    sizes: dict[str, int],
    crash_after: set[int],
) -> None:
    """Requests repeat (a redrive, the 5-minute dedup window passed) and come in any order; a copy may die after
    its upload and before its record. Each attachment ends with exactly one record, the right bytes if stored, and
    no attachment over the limit is ever downloaded."""
    db = Database(tmp_path_factory.mktemp("att") / "jsync.db")
    objects = SqliteObjects(db)
    store = Store(objects)
    contents = {i: bytes([int(i)]) * sizes[i] for i in sizes}
    jira = FakeDownloads(contents)
    limit = 20
    for n, attachment_id in enumerate(requests):
        if n in crash_after and attachment_id not in records(store, "10042"):
            with pytest.raises(RuntimeError):
                copy(ref(attachment_id, size=sizes[attachment_id]), _Crashing(store), objects, jira, limit)
        copy(ref(attachment_id, size=sizes[attachment_id]), store, objects, jira, limit)
    kept = records(store, "10042")
    assert set(kept) == set(requests)
    for attachment_id, record in kept.items():
        stored = objects.get(content_key("10042", attachment_id))
        if sizes[attachment_id] > limit:
            assert record["state"] == "skipped" and jira.calls[attachment_id] == 0 and stored is None
        else:
            assert record["state"] == "stored" and stored is not None and stored.body == contents[attachment_id]
    db.close()


class _Crashing(Store):
    """A store whose index write dies: the crash between the upload and its record."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner.objects)

    def write_json(self, key: str, data: Any, expected: Any) -> None:
        if key == index_key("10042"):
            raise RuntimeError("killed before the record")
        super().write_json(key, data, expected)


# --- what the API shows ---------------------------------------------------------------------------------------------


def test_views_join_the_document_and_the_index() -> None:
    kept = {
        "5": {
            "state": "stored",
            "size": 3,
            "sha256": "ab",
            "filename": "file-5.bin",
            "mime_type": "x/y",
            "version": "v",
        },
        "4": {"state": "skipped", "size": 99, "reason": "too big", "filename": "old.bin", "version": "v0"},
    }
    shown = {v.id: v for v in views(doc(("5", 3), ("6", 1)), kept, copying=True)}
    assert shown["5"].state == "stored" and shown["5"].sha256 == "ab"
    assert shown["6"].state == "pending"
    assert shown["4"].state == "skipped" and shown["4"].filename == "old.bin"  # deleted in Jira, kept in JSync
    assert [v.state for v in views(doc(("6", 1)), {}, copying=False)] == ["metadata_only"]
