"""The S3 layout: raw/, snapshots/, latest/ and the committer's gitstate/ (the only module that knows keys)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.backends import ObjectStore, PreconditionFailed
from pipeline.ids import EVENT_ID, ISSUE_KEY, JOB_ID, MAX_EVENT_TIME_MS, PROJECT_KEY, VERSION, stored_json
from pipeline.ids import ISSUE_ID as _ISSUE_ID


class ObjectMissing(Exception):
    """An object that must exist (a raw payload queued by reference, a snapshot just claimed) is not there."""


class StoreConflict(Exception):
    """A conditional write lost a race; read again and retry."""


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not safe in an S3 key")
    return value


def raw_key(event_id: str, received_ms: int, extension: str) -> str:
    day = time.strftime("%Y/%m/%d", time.gmtime(received_ms / 1000))
    return f"raw/{day}/{_check(EVENT_ID, event_id, 'event id')}.{extension}"


def snapshot_key(issue_id: str, event_time_ms: int, event_id: str) -> str:
    issue = _check(_ISSUE_ID, issue_id, "issue id")
    return f"snapshots/{issue}/{int(event_time_ms)}-{_check(EVENT_ID, event_id, 'event id')}.json"


def version_of(snapshot_key: str) -> str:
    """The history version a snapshot key names (`version_key`'s inverse): `<event_time_ms>-<event_id>`."""
    return snapshot_key.rsplit("/", 1)[-1].removesuffix(".json")


def latest_key(issue_id: str) -> str:
    return f"latest/{_check(_ISSUE_ID, issue_id, 'issue id')}.json"


_FAR_FUTURE_MS = MAX_EVENT_TIME_MS  # history positions count down from here so ascending is newest first


def issue_key_index(key: str) -> str:
    """Every key an issue ever had points at its id, so an old key still finds a moved issue."""
    return f"index/keys/{_check(ISSUE_KEY, key, 'issue key')}.json"


PROJECTS_PREFIX = "index/projects/"


def project_prefix(project: str) -> str:
    return f"{PROJECTS_PREFIX}{_check(PROJECT_KEY, project, 'project key')}/"


def project_item_key(project: str, issue_id: str) -> str:
    """An issue's membership of a project; the listing reads the rest from its latest state."""
    # Zero-padded ids list in numeric order, which is what the listing's cursor walks.
    return f"{project_prefix(project)}issues/{int(_check(_ISSUE_ID, issue_id, 'issue id')):020d}.json"


def project_count_key(project: str) -> str:
    return f"{project_prefix(project)}count.json"


def history_prefix(issue_id: str) -> str:
    return f"index/history/{_check(_ISSUE_ID, issue_id, 'issue id')}/"


def history_position(issue_id: str, order: list[Any]) -> str:
    """Where a captured event stands in its issue's history, as a string that sorts newest first.

    Earlier versions stored one history item per event under this name; it is still the history cursor,
    so a cursor handed out then still works.
    """
    time_ms, changelog_id, event_id = int(order[0]), int(order[1]), str(order[2])
    countdown = f"{_FAR_FUTURE_MS - time_ms:013d}-{10**12 - 1 - min(changelog_id, 10**12 - 1):012d}"
    return f"{history_prefix(issue_id)}{countdown}-{_check(EVENT_ID, event_id, 'event id')}.json"


def history_position_time(position: str) -> int | None:
    """The event time a history position names, or None if it names none."""
    countdown = position.rsplit("/", 1)[-1].split("-", 1)[0]
    return _FAR_FUTURE_MS - int(countdown) if countdown.isdigit() else None


def snapshot_prefix(issue_id: str) -> str:
    return f"snapshots/{_check(_ISSUE_ID, issue_id, 'issue id')}/"


def version_key(issue_id: str, version: str) -> str:
    """A history version is its snapshot's name: `<event_time_ms>-<event_id>`."""
    return f"snapshots/{_check(_ISSUE_ID, issue_id, 'issue id')}/{_check(VERSION, version, 'version')}.json"


def changelog_marker_key(issue_id: str, entry: str) -> str:
    """Which event claimed one of an issue's changelog entries (by id, or `created`), as earlier versions
    recorded it; claims are now in the issue's latest state."""
    if entry != "created" and not entry.isdigit():
        raise ValueError(f"changelog entry {entry!r} is not safe in an S3 key")
    return f"{changelog_prefix(issue_id)}{entry}.json"


def changelog_prefix(issue_id: str) -> str:
    return f"index/changelogs/{_check(_ISSUE_ID, issue_id, 'issue id')}/"


def short_event_id(event_id: str) -> str:
    """How latest/ names an event in its claims: short, as an issue's latest state holds one per changelog entry."""
    return hashlib.sha256(event_id.encode()).hexdigest()[:12]


# Accepted events the writer could not interpret: kept raw, listed here for an operator (health shows them).
UNREADABLE_PREFIX = "index/unreadable/"


def unreadable_key(event_id: str) -> str:
    return f"{UNREADABLE_PREFIX}{_check(EVENT_ID, event_id, 'event id')}.json"


FIELD_CATALOGUE_KEY = "fields/catalogue.json"  # Jira's field catalogue, as `pipeline.fields` keeps it
SYNC_CURSOR = "sync/cursor.json"
PENDING_PREFIX = "sync/pending/"


def job_key(job_id: str) -> str:
    return f"sync/jobs/{_check(JOB_ID, job_id, 'job id')}.json"


def pending_key(issue_id: str) -> str:
    """An issue to reconcile on the next run, whatever its `updated` says (a refused webhook, a failed read)."""
    return f"{PENDING_PREFIX}{_check(_ISSUE_ID, issue_id, 'issue id')}.json"


_COMMITTED_TIP = "gitstate/_tip.json"  # the branch tip the per-issue records describe


def gitstate_key(issue_id: str) -> str:
    """Where the committer kept one issue's record before records were sharded (read, never written now)."""
    return f"gitstate/{_check(_ISSUE_ID, issue_id, 'issue id')}.json"


def record_shard_key(shard: int) -> str:
    """The committer's records of the issues whose id is `shard` modulo the number of shards."""
    return f"gitstate/records/{int(shard):02d}.json"


@dataclass(frozen=True)
class Versioned:
    """A JSON object read from S3 with the ETag that a conditional write must match."""

    data: dict[str, Any]
    etag: str


class Store:
    """Reads and writes JSync's objects through the object-store port (S3 or the embedded store)."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def put_raw(self, key: str, body: bytes, content_type: str) -> None:
        self.objects.put(key, body, content_type)

    def get_bytes(self, key: str) -> bytes:
        found = self.objects.get(key)
        if found is None:
            raise ObjectMissing(key)
        return found.body

    def put_snapshot(self, key: str, snapshot: Mapping[str, Any]) -> bool:
        """Write a snapshot once; a retry of the same event keeps the first copy. True if written now."""
        try:
            self.objects.put(key, stored_json(snapshot), if_none_match=True)
        except PreconditionFailed:
            return False
        return True

    def read_json(self, key: str) -> Versioned | None:
        found = self.objects.get(key)
        return Versioned(json.loads(found.body), found.etag) if found else None

    def write_json(self, key: str, data: Mapping[str, Any], expected: Versioned | None) -> None:
        """Compare-and-swap: create only if absent, or replace only the version we read."""
        try:
            if expected:
                self.objects.put(key, stored_json(data), if_match=expected.etag)
            else:
                self.objects.put(key, stored_json(data), if_none_match=True)
        except PreconditionFailed:
            raise StoreConflict(key) from None

    def put_json(self, key: str, data: Mapping[str, Any]) -> None:
        self.objects.put(key, stored_json(data))

    def delete(self, key: str) -> None:
        self.objects.delete(key)

    def list_keys(self, prefix: str, start_after: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to `limit` keys after `start_after`, and whether more follow."""
        return self.objects.list_keys(prefix, start_after, limit)

    def list_folders(self, prefix: str) -> list[str]:
        return self.objects.folders(prefix)

    def project_keys(self) -> list[str]:
        """Every project with captured issues, in key order: one LIST."""
        folders = self.list_folders(PROJECTS_PREFIX)
        keys = (folder.removeprefix(PROJECTS_PREFIX).rstrip("/") for folder in folders)
        return sorted(k for k in keys if PROJECT_KEY.fullmatch(k))

    def claim(self, key: str, data: dict[str, Any]) -> dict[str, Any]:
        """Write `data` unless the key exists; either way return what the key holds now (the first claim wins)."""
        try:
            self.write_json(key, data, None)
        except StoreConflict:
            found = self.read_json(key)
            if found is not None:
                return found.data
            self.put_json(key, data)  # deleted in between: nobody holds it, so we may
        return data

    def exists(self, key: str) -> bool:
        return self.objects.get(key) is not None

    def recorded_entries(self, issue_id: str) -> set[str]:
        """The changelog ids (and `created`) captured for an issue, by webhook or reconcile."""
        found = self.latest(issue_id)
        claimed = set((found.data.get("entries") or {}) if found else ())
        return claimed | self.changelog_markers(issue_id)

    def changelog_markers(self, issue_id: str) -> set[str]:
        """The entries claimed by marker objects, as earlier versions did."""
        prefix = changelog_prefix(issue_id)
        return {key[len(prefix) :].removesuffix(".json") for key in self.all_keys(prefix)}

    def all_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        while True:
            page, more = self.objects.list_keys(prefix, keys[-1] if keys else None, 1000)
            keys += page
            if not more:
                return keys

    def latest(self, issue_id: str) -> Versioned | None:
        return self.read_json(latest_key(issue_id))

    def gitstate(self, issue_id: str) -> dict[str, Any] | None:
        found = self.read_json(gitstate_key(issue_id))
        return found.data if found else None

    def committed_tip(self) -> str | None:
        found = self.read_json(_COMMITTED_TIP)
        return str(found.data["tip"]) if found else None

    def put_committed_tip(self, tip: str) -> None:
        self.put_json(_COMMITTED_TIP, {"tip": tip})

    def push_record(self) -> dict[str, Any] | None:
        found = self.read_json(PUSH_RECORD_KEY)
        return found.data if found else None

    def put_push_record(self, record: dict[str, Any]) -> None:
        self.put_json(PUSH_RECORD_KEY, record)


# --- operations records (issue 11): what health reports about deliveries and pushes --------------------------
WEBHOOK_REFUSED_PREFIX = "ops/webhook/refused/"  # <yyyymmddHHMM>/<instance>.json: one ingest instance's minute
WEBHOOK_ACCEPTED_KEY = "ops/webhook/last_accepted.json"  # the newest accepted delivery the writer has seen
PUSH_RECORD_KEY = "gitstate/_push.json"  # the committer's last push and last push error
EVENTS_OUTBOX_KEY = "gitstate/_events_outbox.json"  # committed changes' events not yet published (events_out.py)
_MINUTE = re.compile(r"^[0-9]{12}$")
_INSTANCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def webhook_refused_key(minute: str, instance: str) -> str:
    return f"{WEBHOOK_REFUSED_PREFIX}{_check(_MINUTE, minute, 'minute')}/{_check(_INSTANCE, instance, 'instance')}.json"
