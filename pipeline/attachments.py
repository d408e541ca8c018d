"""Attachment contents: which attachments a capture added, copying each once from Jira to
`attachments/<issue_id>/<attachment_id>` (never into git), and the per-issue index of what was kept or skipped.

Webhooks carry an attachment's metadata only (`fields.attachment`: id, filename, size, mimeType). With Jira
credentials the writer asks for a copy of each attachment a capture adds (`added`) on the attachments queue; the
attachments function streams it from Jira into the object store (`copy`) and records the outcome in
`index/attachments/<issue_id>.json`. A copy is made once: a repeated or redriven request finds the record and stops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Literal

from pipeline.backends import ObjectStore
from pipeline.ids import ISSUE_ID
from pipeline.jiratime import iso_ms
from pipeline.settings import Settings
from pipeline.store import Store, StoreConflict

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
_ID = ISSUE_ID  # Jira's attachment ids are numeric like its issue ids
_CAS_ATTEMPTS = 20
State = Literal["stored", "skipped", "gone"]
ViewState = Literal["stored", "skipped", "gone", "pending", "metadata_only"]


class TooLarge(Exception):
    """The content turned out larger than the limit while it was being read (the metadata said less)."""


class AttachmentGone(Exception):
    """Jira no longer has the attachment (deleted before JSync copied it)."""


@dataclass(frozen=True)
class AttachmentRef:
    """One attachment as an issue document lists it, and the capture version that first listed it."""

    issue_id: str
    attachment_id: str
    filename: str
    size: int | None
    mime_type: str
    version: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> AttachmentRef:
        data = json.loads(text)
        if not isinstance(data, dict) or not _ID.fullmatch(str(data.get("attachment_id"))):
            raise ValueError("not an attachment copy request")
        if not _ID.fullmatch(str(data.get("issue_id"))):
            raise ValueError("not an attachment copy request")
        size = data.get("size")
        return cls(
            issue_id=str(data["issue_id"]),
            attachment_id=str(data["attachment_id"]),
            filename=str(data.get("filename") or ""),
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            mime_type=str(data.get("mime_type") or "application/octet-stream"),
            version=str(data.get("version") or ""),
        )


AskCopies = Callable[[list[AttachmentRef]], None]  # queues copies of attachment contents (with Jira credentials)


def content_key(issue_id: str, attachment_id: str) -> str:
    return f"attachments/{issue_id}/{attachment_id}"


def index_key(issue_id: str) -> str:
    return f"index/attachments/{issue_id}.json"


def listed(document: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The attachments a document lists, by id; entries without a numeric id are not attachments we can fetch."""
    fields = (document or {}).get("fields")
    items = fields.get("attachment") if isinstance(fields, dict) else None
    found: dict[str, dict[str, Any]] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and _ID.fullmatch(str(item.get("id"))):
            found[str(item["id"])] = item
    return found


def added(
    previous: dict[str, Any] | None, current: dict[str, Any] | None, issue_id: str, version: str
) -> list[AttachmentRef]:
    """The attachments `current` lists that `previous` did not, in id order."""
    before, now = listed(previous), listed(current)
    refs = []
    for attachment_id in sorted(set(now) - set(before), key=int):
        item = now[attachment_id]
        size = item.get("size")
        refs.append(
            AttachmentRef(
                issue_id=issue_id,
                attachment_id=attachment_id,
                filename=str(item.get("filename") or ""),
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                mime_type=str(item.get("mimeType") or "application/octet-stream"),
                version=version,
            )
        )
    return refs


def missing(store: Store, issue_id: str, document: dict[str, Any] | None) -> list[AttachmentRef]:
    """The attachments a document lists that the index holds no outcome for: a backfill of what was captured
    before JSync had Jira credentials, and a second chance for a request that never arrived. One GET, and only
    for an issue with attachments. Their version is unknown, so the history shows them nowhere; the listing does."""
    if not listed(document):
        return []
    kept = records(store, issue_id)
    return [ref for ref in added(None, document, issue_id, "") if ref.attachment_id not in kept]


# --- copying ------------------------------------------------------------------------------------------------

Download = Callable[[str], AbstractContextManager[BinaryIO]]  # attachment id -> its content, as a stream


@dataclass(frozen=True)
class Kept:
    """What the index says about one attachment."""

    state: State
    record: dict[str, Any]
    recorded_now: bool  # this call settled it (a repeat finds it settled)

    @property
    def copied_now(self) -> bool:
        return self.recorded_now and self.state == "stored"


class _Measured:
    """A read-only stream that hashes and counts what passes through it, and stops past `limit` bytes."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        self.source, self.limit = source, limit
        self.size = 0
        self.digest = hashlib.sha256()

    def read(self, amount: int = -1, /) -> bytes:
        chunk = self.source.read(amount if amount is not None and amount >= 0 else self.limit + 1 - self.size)
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"more than {self.limit} bytes")
        self.digest.update(chunk)
        return chunk


def from_jira(settings: Settings) -> Download:
    """Downloads from the Jira site the settings name, with their credentials (raises SecretUnavailable without)."""
    from pipeline.reconcile.jira import IssueGone, JiraClient  # only the attachments function ships reconcile's client

    credentials = settings.jira_credentials()
    client = JiraClient(credentials.url, credentials.email, credentials.token, timeout=60)

    @contextmanager
    def download(attachment_id: str) -> Iterator[BinaryIO]:
        try:
            stream = client.download(attachment_id)
        except IssueGone:
            raise AttachmentGone(attachment_id) from None
        with stream:
            yield stream

    return download


def copy(
    ref: AttachmentRef,
    store: Store,
    objects: ObjectStore,
    download: Download,
    max_bytes: int,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> Kept:
    """Copy one attachment's content from Jira unless the index already holds its outcome; record the outcome.

    Safe to run again at any point: a crash after the upload and before the record copies the same bytes to the
    same key again. Jira and storage failures raise, so the request is retried and, after five, dead-lettered.
    """
    existing = records(store, ref.issue_id).get(ref.attachment_id)
    if existing is not None:
        return Kept(existing["state"], existing, recorded_now=False)
    base = {
        "id": ref.attachment_id,
        "filename": ref.filename,
        "mime_type": ref.mime_type,
        "version": ref.version,
        "recorded_at": iso_ms(now_ms()),
    }
    if ref.size is not None and ref.size > max_bytes:
        record = {**base, "state": "skipped", "size": ref.size, "reason": _too_large(ref.size, max_bytes)}
    else:
        try:
            with download(ref.attachment_id) as stream:
                measured = _Measured(stream, max_bytes)
                objects.put_stream(content_key(ref.issue_id, ref.attachment_id), measured, ref.mime_type)
            record = {**base, "state": "stored", "size": measured.size, "sha256": measured.digest.hexdigest()}
        except TooLarge:
            record = {**base, "state": "skipped", "size": ref.size, "reason": _too_large(None, max_bytes)}
        except AttachmentGone:
            record = {**base, "state": "gone", "size": ref.size, "reason": "Jira no longer has this attachment."}
    kept = _record(store, ref.issue_id, record)
    return Kept(kept["state"], kept, recorded_now=kept is record)


def records(store: Store, issue_id: str) -> dict[str, dict[str, Any]]:
    """The index's records of an issue's attachments, by attachment id."""
    found = store.read_json(index_key(issue_id))
    items = (found.data.get("attachments") if found else None) or {}
    return {k: v for k, v in items.items() if isinstance(v, dict) and v.get("state") in ("stored", "skipped", "gone")}


def _record(store: Store, issue_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """Add `record` to the issue's index by compare-and-swap; a record already there wins (the first copy)."""
    for _ in range(_CAS_ATTEMPTS):
        found = store.read_json(index_key(issue_id))
        items = dict((found.data.get("attachments") if found else None) or {})
        if isinstance(items.get(record["id"]), dict):
            return dict(items[record["id"]])
        items[record["id"]] = record
        try:
            store.write_json(index_key(issue_id), {"issue_id": issue_id, "attachments": items}, found)
        except StoreConflict:
            continue
        return record
    raise StoreConflict(index_key(issue_id))


def _too_large(size: int | None, max_bytes: int) -> str:
    what = f"{size:,} bytes" if size is not None else "Larger than that"
    return (
        f"{what}: over JSync's limit of {max_bytes:,} bytes per attachment (JSYNC_ATTACHMENT_MAX_BYTES); "
        "the metadata is kept, the content is not."
    )


# --- reading --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachmentView:
    """One attachment of an issue as the API shows it: the document's metadata and the index's outcome."""

    id: str
    filename: str
    size: int | None
    mime_type: str
    state: ViewState
    sha256: str | None
    reason: str | None
    version: str | None


def views(document: dict[str, Any] | None, kept: dict[str, dict[str, Any]], copying: bool) -> Iterator[AttachmentView]:
    """Every attachment the document lists or the index holds (an attachment deleted in Jira keeps its copy)."""
    now = listed(document)
    for attachment_id in sorted(set(now) | set(kept), key=int):
        item, record = now.get(attachment_id, {}), kept.get(attachment_id)
        size = (record or {}).get("size", item.get("size"))
        state: ViewState = record["state"] if record is not None else "pending" if copying else "metadata_only"
        yield AttachmentView(
            id=attachment_id,
            filename=str((record or {}).get("filename") or item.get("filename") or ""),
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            mime_type=str((record or {}).get("mime_type") or item.get("mimeType") or "application/octet-stream"),
            state=state,
            sha256=(record or {}).get("sha256"),
            reason=(record or {}).get("reason"),
            version=(record or {}).get("version"),
        )
