"""The writer Lambda (functions/writer.py) against the SQS FIFO partial-batch contract.

The handler is called directly with hand-built, real-shaped SQS batch events (moto's queue cannot show partial
batches or ordering), and every answer is compared with the exact `batchItemFailures` Lambda must receive.
S3 and the commits queue are the moto-backed ones of the `settings` fixture.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from bench.writes import CountingObjects
from functions import writer
from local.poller import LocalContext
from pipeline import reader, services
from pipeline.capture import Captured, capture
from pipeline.errors import JSyncError
from pipeline.messages import Change, QueuedEvent
from pipeline.queues import change_dedup_id
from pipeline.settings import Settings
from pipeline.store import Store, changelog_marker_key, latest_key, raw_key, snapshot_key, unreadable_key
from tests.builders import event_record, fixture_bytes, fixture_json, queued_event, sqs_batch, sqs_record
from tests.harness import receive_all


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    return writer.lambda_handler(event, LocalContext("jsync-writer", str(uuid.uuid4())))


def failures(*records: dict[str, Any]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}


def issue_c_body() -> bytes:
    """A third issue (10077, OPS-19): the created fixture under another id and key."""
    data = fixture_json("issue_created.json")
    data["issue"]["id"] = "10077"
    data["issue"]["key"] = "OPS-19"
    data["issue"]["self"] = "https://example.atlassian.net/rest/api/2/issue/10077"
    return json.dumps(data).encode()


# --- reading what the writer left ----------------------------------------------------------------


def s3_keys(settings: Settings, prefix: str) -> list[str]:
    s3 = services.aws("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def latest_event(issue_id: str) -> str | None:
    found = services.store().latest(issue_id)
    return found.data["capture"]["event_id"] if found else None


def commit_messages(settings: Settings) -> list[dict[str, Any]]:
    """Everything on the commits queue, with attributes; received messages are deleted."""
    return receive_all(services.aws("sqs").get_queue_url(QueueName=settings.commits_queue)["QueueUrl"], delete=True)


# --- tests ---------------------------------------------------------------------------------------


def test_all_good_batch_reports_no_failures_and_stores_every_event(settings: Settings) -> None:
    # Given a batch of three events over two issues
    created = queued_event("w-created", fixture_bytes("issue_created.json"))
    updated = queued_event("w-updated", fixture_bytes("issue_updated.json"))
    adf = queued_event("w-adf", fixture_bytes("issue_created_adf.json"))
    event = sqs_batch(
        event_record(settings, created, "10042"),
        event_record(settings, adf, "10050"),
        event_record(settings, updated, "10042"),
    )

    # When the writer handles it
    response = invoke(event)

    # Then nothing failed, and raw, snapshot and latest exist for each event
    assert response == {"batchItemFailures": []}
    for q in (created, updated, adf):
        assert s3_keys(settings, q.raw_key) == [q.raw_key]
    assert s3_keys(settings, "snapshots/") == [
        snapshot_key("10042", 1764000000123, "w-created"),
        snapshot_key("10042", 1764000100456, "w-updated"),
        snapshot_key("10050", 1764000050000, "w-adf"),
    ]
    assert s3_keys(settings, "latest/") == [latest_key("10042"), latest_key("10050")]
    assert latest_event("10042") == "w-updated"
    assert latest_event("10050") == "w-adf"
    snapshot = json.loads(services.store().get_bytes(snapshot_key("10042", 1764000100456, "w-updated")))
    assert snapshot["issue"]["key"] == "OPS-17"
    assert snapshot["capture"]["event_id"] == "w-updated"


def test_an_event_the_writer_cannot_interpret_is_set_aside_and_its_issue_goes_on(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Given [m0: A ok, m1: B unreadable, m2: A ok, m3: B ok]; m1's webhook body is not JSON (ingest never queues
    # one, but a redrive or an older ingest's rule can), and m3 of the same issue waits behind it
    m0 = event_record(settings, queued_event("a-0", fixture_bytes("issue_created.json")), "10042")
    bad = queued_event("b-unreadable", b'{"webhookEvent": "jira:issue_upd')
    m1 = event_record(settings, bad, "10050")
    m2 = event_record(settings, queued_event("a-1", fixture_bytes("issue_updated.json")), "10042")
    m3 = event_record(settings, queued_event("b-0", fixture_bytes("issue_created_adf.json")), "10050")

    # When the writer handles the batch
    response = invoke(sqs_batch(m0, m1, m2, m3))

    # Then nothing comes back to go round the queue and, five failures later, the dead-letter queue
    assert response == {"batchItemFailures": []}
    # and issue B went on past it
    assert latest_event("10042") == "a-1"
    assert latest_event("10050") == "b-0"
    # while the unreadable event is kept as received, and recorded where health and an operator find it
    assert services.store().get_bytes(bad.raw_key) == bad.body
    record = services.store().read_json(unreadable_key("b-unreadable"))
    assert record is not None
    assert record.data["reason"] == "invalid_json"
    assert record.data["event"]["raw_key"] == bad.raw_key
    assert "body" not in record.data["event"]
    assert any("set aside" in r.getMessage() and getattr(r, "event_id", None) == "b-unreadable" for r in caplog.records)


def test_corrupt_sqs_body_fails_only_its_own_group(settings: Settings) -> None:
    # Given a record whose SQS body is not a QueuedEvent at all, between two good ones of another issue
    good = event_record(settings, queued_event("a-0", fixture_bytes("issue_created.json")), "10042")
    corrupt = sqs_record(settings, "not json", "10050")
    later = event_record(settings, queued_event("b-0", fixture_bytes("issue_created_adf.json")), "10050")

    # When / Then only the corrupt record and the one behind it in its group fail
    assert invoke(sqs_batch(corrupt, good, later)) == failures(corrupt, later)
    assert latest_event("10042") == "a-0"
    assert latest_event("10050") is None


def test_transient_s3_failure_fails_that_group_only_and_a_retry_recovers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given S3 refuses the raw copy of issue B's first event (503 SlowDown)
    a0 = queued_event("a-0", fixture_bytes("issue_created.json"))
    b0 = queued_event("b-0", fixture_bytes("issue_created_adf.json"))
    c0 = queued_event("c-0", issue_c_body())
    a1 = queued_event("a-1", fixture_bytes("issue_updated.json"))
    real_put_raw = Store.put_raw
    refused: list[str] = []

    def flaky_put_raw(self: Store, key: str, body: bytes, content_type: str) -> None:
        if key == b0.raw_key:
            refused.append(key)
            raise ClientError(
                {
                    "Error": {"Code": "SlowDown", "Message": "Reduce your request rate."},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "PutObject",
            )
        real_put_raw(self, key, body, content_type)

    monkeypatch.setattr(Store, "put_raw", flaky_put_raw)
    r_a0 = event_record(settings, a0, "10042")
    r_b0 = event_record(settings, b0, "10050")
    r_c0 = event_record(settings, c0, "10077")
    r_a1 = event_record(settings, a1, "10042")
    # A second event of B, behind the failing one (a retry of the same delivery: same raw body, new id)
    b1 = queued_event("b-1", fixture_bytes("issue_created_adf.json"))
    r_b1 = event_record(settings, b1, "10050")

    # When the writer handles [a0, b0, c0, b1, a1]
    response = invoke(sqs_batch(r_a0, r_b0, r_c0, r_b1, r_a1))

    # Then only group B's records fail; the others were captured
    assert response == failures(r_b0, r_b1)
    assert refused == [b0.raw_key]
    assert latest_event("10042") == "a-1"
    assert latest_event("10077") == "c-0"
    assert latest_event("10050") is None
    assert s3_keys(settings, "raw/") == sorted([a0.raw_key, c0.raw_key, a1.raw_key])

    # When S3 is back and Lambda retries the failed records
    monkeypatch.setattr(Store, "put_raw", real_put_raw)
    assert invoke(sqs_batch(r_b0, r_b1)) == {"batchItemFailures": []}

    # Then issue B is captured too, once: b-1 is the same creation under another delivery id
    assert latest_event("10050") == "b-0"
    assert s3_keys(settings, "snapshots/10050/") == [snapshot_key("10050", 1764000050000, "b-0")]


def test_every_record_failing_raises_so_the_whole_batch_is_retried(settings: Settings) -> None:
    # Given a batch in which every record fails (a record that is no queued event at all, and one behind it)
    poison = sqs_record(settings, "<<not json>>", "10050")
    behind = event_record(settings, queued_event("b-0", fixture_bytes("issue_created_adf.json")), "10050")

    # When / Then Powertools raises BatchProcessingError instead of returning a response
    with pytest.raises(BatchProcessingError):
        invoke(sqs_batch(poison, behind))
    with pytest.raises(BatchProcessingError):
        invoke(sqs_batch(sqs_record(settings, "not json", "10042")))
    # and nothing of the issue was captured
    assert latest_event("10050") is None
    assert s3_keys(settings, "snapshots/") == []


def test_advancing_changes_go_to_the_commits_group_and_older_events_send_nothing(settings: Settings) -> None:
    # Given two state-advancing events of OPS-17
    created = queued_event("s-created", fixture_bytes("issue_created.json"))
    assignee = queued_event("s-assignee", fixture_bytes("issue_updated_assignee.json"))

    # When the writer captures them
    assert invoke(sqs_batch(event_record(settings, created, "10042"), event_record(settings, assignee, "10042"))) == {
        "batchItemFailures": []
    }

    # Then each became one message on the commits queue, in the single "commits" group
    sent = commit_messages(settings)
    assert len(sent) == 2
    changes = [Change.from_json(m["Body"]) for m in sent]
    assert [c.event_id for c in changes] == ["s-created", "s-assignee"]
    for message, change in zip(sent, changes, strict=True):
        assert message["Attributes"]["MessageGroupId"] == change.issue_id  # one group per issue: its order kept
        assert message["Attributes"]["MessageDeduplicationId"] == change_dedup_id(change)
        assert change.issue_id == "10042"
        assert change.key == "OPS-17"
        assert change.deleted is False
        assert change.document is not None and change.document["key"] == "OPS-17"
    assert changes[0].event_name == "jira:issue_created"
    assert (changes[1].order.time_ms, changes[1].order.changelog_id) == (1764000200789, 10790)
    assert changes[1].snapshot_key == snapshot_key("10042", 1764000200789, "s-assignee")

    # When an older event of the same issue arrives late (a delayed delivery)
    stale = queued_event("s-stale", fixture_bytes("issue_updated_stale.json"))
    assert invoke(sqs_batch(event_record(settings, stale, "10042"))) == {"batchItemFailures": []}

    # Then it is kept as a snapshot, latest/ does not go back, and nothing is sent for git
    assert snapshot_key("10042", 1764000150000, "s-stale") in s3_keys(settings, "snapshots/10042/")
    assert latest_event("10042") == "s-assignee"
    assert commit_messages(settings) == []


def test_replayed_event_is_sent_again_with_the_same_dedup_id(settings: Settings) -> None:
    # Given an event already captured and sent
    created = queued_event("r-created", fixture_bytes("issue_created.json"))
    assert invoke(sqs_batch(event_record(settings, created, "10042"))) == {"batchItemFailures": []}
    first = commit_messages(settings)

    # When SQS delivers the same event again (at-least-once)
    assert invoke(sqs_batch(event_record(settings, created, "10042"))) == {"batchItemFailures": []}
    again = commit_messages(settings)

    # Then the resend carries the same dedup id, so SQS (within 5 min) or the committer drops it
    assert len(first) == 1
    assert len(again) <= 1
    for m in again:
        assert m["Attributes"]["MessageDeduplicationId"] == first[0]["Attributes"]["MessageDeduplicationId"]
        assert Change.from_json(m["Body"]).event_id == "r-created"
    assert s3_keys(settings, "snapshots/10042/") == [snapshot_key("10042", 1764000000123, "r-created")]


# --- what an event writes, and what the reads still serve --------------------------------------------------------


def counted_store() -> tuple[Store, CountingObjects]:
    """The test's store with every object-store call counted by key prefix."""
    counting = CountingObjects(services.objects())
    return Store(counting), counting


def capture_now(store: Store, event: QueuedEvent) -> Captured:
    return capture(event, store, lambda _change: None)


def reconcile_feed(event_id: str, body: bytes) -> QueuedEvent:
    """The same change as a webhook, as reconcile feeds it: under its own event id."""
    received_ms = int(time.time() * 1000)
    return QueuedEvent(
        event_id, received_ms, "application/json", raw_key(event_id, received_ms, "json"), body, "reconcile"
    )


def versions(ref: str) -> list[str]:
    return [item["version"] for item in reader.history(services.store(), ref, 200, None).items]


def test_an_update_of_a_captured_issue_writes_raw_snapshot_and_latest_only(settings: Settings) -> None:
    # Given a captured issue
    store, counting = counted_store()
    capture_now(store, queued_event("u-0", fixture_bytes("issue_created.json")))
    counting.reset()

    # When an update arrives in order, keeping its key and project
    assert capture_now(store, queued_event("u-1", fixture_bytes("issue_updated.json"))).advanced

    # Then it writes the three objects the contract names, and reads only latest/
    assert counting.puts == {"raw/": 1, "snapshots/": 1, "latest/": 1}
    assert counting.count("get") == {"latest/": 1}
    assert counting.count("delete") == {} and counting.count("list") == {}
    # and every read sees it
    plain = services.store()
    assert reader.latest_issue(plain, "OPS-17").document["fields"]["status"]["name"] == "In Progress"
    updated = fixture_json("issue_updated.json")["issue"]["fields"]["updated"]
    item = {"key": "OPS-17", "id": "10042", "summary": "Rotate certificates", "status": "In Progress"}
    assert reader.project_issues(plain, "OPS", 50, None).items == [{**item, "updated": updated}]
    assert reader.projects(plain) == [{"key": "OPS", "name": "Operations", "issue_count": 1}]
    assert versions("OPS-17") == ["1764000100456-u-1", "1764000000123-u-0"]
    assert plain.recorded_entries("10042") == {"created", "10789"}

    # When the same update is delivered again
    counting.reset()
    capture_now(store, queued_event("u-1", fixture_bytes("issue_updated.json")))
    # Then only its raw copy is written again
    assert counting.puts == {"raw/": 1}


def test_a_move_writes_its_new_key_and_membership_and_the_old_key_still_answers(settings: Settings) -> None:
    store, counting = counted_store()
    for n, name in enumerate(["issue_created.json", "issue_updated.json"]):
        capture_now(store, queued_event(f"m-{n}", fixture_bytes(name)))
    counting.reset()

    capture_now(store, queued_event("m-2", fixture_bytes("issue_moved.json")))

    assert counting.puts["index/keys/"] == 1  # PLAT-5, once
    assert counting.count("delete") == {"index/projects/": 1}  # its OPS membership
    plain = services.store()
    assert reader.latest_issue(plain, "OPS-17").document["key"] == "PLAT-5"
    assert reader.project_issues(plain, "OPS", 50, None).items == []
    assert [i["key"] for i in reader.project_issues(plain, "PLAT", 50, None).items] == ["PLAT-5"]
    counts = {p["key"]: p["issue_count"] for p in reader.projects(plain)}
    assert counts == {"OPS": 0, "PLAT": 1}


def test_an_older_event_claims_its_entry_in_latest_and_another_capture_of_it_adds_nothing(settings: Settings) -> None:
    store, counting = counted_store()
    for n, name in enumerate(["issue_created.json", "issue_updated_assignee.json"]):
        capture_now(store, queued_event(f"o-{n}", fixture_bytes(name)))
    counting.reset()

    # When an older change arrives late
    assert not capture_now(store, queued_event("o-stale", fixture_bytes("issue_updated_stale.json"))).advanced

    # Then its entry is claimed in latest/, which stays at the newer event, and its snapshot is kept
    assert counting.puts == {"raw/": 1, "latest/": 1, "snapshots/": 1}
    assert latest_event("10042") == "o-1"
    assert services.store().recorded_entries("10042") == {"created", "10790", "10788"}
    assert versions("10042") == ["1764000200789-o-1", "1764000150000-o-stale", "1764000000123-o-0"]

    # When reconcile feeds the same change under its own id
    counting.reset()
    fed = capture_now(store, reconcile_feed("rc-10042-10788", fixture_bytes("issue_updated_stale.json")))

    # Then it is the same change: no snapshot, no write but its raw copy
    assert fed.snapshot_key is None
    assert counting.puts == {"raw/": 1}
    assert len(s3_keys(settings, "snapshots/10042/")) == 3


def test_claims_that_earlier_versions_kept_as_marker_objects_still_hold(settings: Settings) -> None:
    # Given an issue captured by an earlier version: its latest state holds no claims, marker objects do
    store = services.store()
    capture_now(store, queued_event("l-0", fixture_bytes("issue_created.json")))
    current = store.latest("10042")
    assert current is not None
    store.write_json(latest_key("10042"), {k: v for k, v in current.data.items() if k != "entries"}, current)
    store.claim(changelog_marker_key("10042", "created"), {"event_id": "l-0", "source": "webhook"})
    # (a webhook that had claimed its change, and died before moving latest/)
    store.claim(changelog_marker_key("10042", "10789"), {"event_id": "l-1", "source": "webhook"})
    assert store.recorded_entries("10042") == {"created", "10789"}

    # When reconcile feeds that change under its own id, then the webhook is retried
    assert (
        capture_now(store, reconcile_feed("rc-10042-10789", fixture_bytes("issue_updated.json"))).snapshot_key is None
    )
    assert capture_now(store, queued_event("l-1", fixture_bytes("issue_updated.json"))).advanced

    # Then the webhook that claimed it first captured it, once, and latest/ now holds every claim
    assert versions("10042") == ["1764000100456-l-1", "1764000000123-l-0"]
    assert store.recorded_entries("10042") == {"created", "10789"}
    assert s3_keys(settings, "snapshots/10042/") == [
        snapshot_key("10042", 1764000000123, "l-0"),
        snapshot_key("10042", 1764000100456, "l-1"),
    ]


def test_a_snapshot_whose_entry_went_to_another_event_is_not_a_version(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services.store()
    capture_now(store, queued_event("x-0", fixture_bytes("issue_created.json")))
    # Given a webhook that wrote its snapshot and died before latest/, five times over (to the dead-letter queue)
    webhook = queued_event("x-1", fixture_bytes("issue_updated.json"))
    real_write = Store.write_json

    def dies_before_latest(self: Store, key: str, data: dict[str, Any], expected: Any) -> None:
        if key == latest_key("10042"):
            raise ConnectionError("killed")
        real_write(self, key, data, expected)

    monkeypatch.setattr(Store, "write_json", dies_before_latest)
    with pytest.raises(ConnectionError):
        capture_now(store, webhook)
    monkeypatch.setattr(Store, "write_json", real_write)
    # and reconcile captured the same change meanwhile
    assert capture_now(store, reconcile_feed("rc-10042-10789", fixture_bytes("issue_updated.json"))).advanced

    # When the webhook is redriven
    assert capture_now(store, webhook).snapshot_key is None

    # Then the change is one version in the history, reconcile's, though the webhook's snapshot stays stored
    assert versions("10042") == ["1764000100456-rc-10042-10789", "1764000000123-x-0"]
    assert snapshot_key("10042", 1764000100456, "x-1") in s3_keys(settings, "snapshots/10042/")
    assert latest_event("10042") == "rc-10042-10789"


def test_a_second_deletion_is_not_a_version(settings: Settings) -> None:
    store = services.store()
    capture_now(store, queued_event("d-0", fixture_bytes("issue_created.json")))
    capture_now(store, queued_event("d-1", fixture_bytes("issue_deleted.json")))
    # Reconcile found the issue gone before the webhook's deletion was captured, and fed one of its own
    capture_now(store, reconcile_feed("rc-10042-deleted", fixture_bytes("issue_deleted.json")))

    assert versions("10042") == ["1764000500000-d-1", "1764000000123-d-0"]
    assert len(s3_keys(settings, "snapshots/10042/")) == 3
    with pytest.raises(JSyncError) as gone:
        reader.latest_issue(store, "OPS-17")
    assert gone.value.status == 410


def test_a_note_for_health_that_cannot_be_written_never_holds_back_a_capture(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from pipeline.refusals import WEBHOOK_ACCEPTED_KEY

    real_put = Store.put_json

    def refuse_the_note(self: Store, key: str, data: dict[str, Any]) -> None:
        if key == WEBHOOK_ACCEPTED_KEY:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate."}}, "PutObject")
        real_put(self, key, data)

    monkeypatch.setattr(Store, "put_json", refuse_the_note)
    logged = io.StringIO()
    monkeypatch.setattr(writer.logger.registered_handler, "stream", logged)
    created = queued_event("n-created", fixture_bytes("issue_created.json"))
    # When the writer cannot note the newest accepted webhook for health
    response = invoke(sqs_batch(event_record(settings, created, "10042")))
    # Then the event is captured all the same, and the miss is logged
    assert response == {"batchItemFailures": []}
    assert latest_event("10042") == "n-created"
    assert services.store().read_json(WEBHOOK_ACCEPTED_KEY) is None
    assert "could not note the newest accepted webhook" in logged.getvalue()
