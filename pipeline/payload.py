"""Raw webhook bytes + content type -> a validated Jira webhook event (JSON or XML), plus its ids."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from pipeline.errors import WebhookRejected

JSON_TYPES = frozenset({"application/json"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
EVENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")  # safe in S3 keys, SQS ids and git trailers
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# Entities other than issues that events can be about, in the order we look for them.
_ENTITY_KEYS = ("project", "version", "sprint", "board", "user", "filter", "issueLink", "issueType", "attachment")


@dataclass(frozen=True)
class WebhookEvent:
    """One Jira webhook delivery, parsed."""

    event_name: str
    timestamp_ms: int
    data: dict[str, Any]
    issue_id: str | None
    issue_key: str | None

    @property
    def changelog_id(self) -> int:
        """The changelog id, the tie-breaker between events of one issue at the same millisecond."""
        changelog = self.data.get("changelog")
        if isinstance(changelog, dict):
            try:
                return int(changelog.get("id") or 0)
            except (TypeError, ValueError):
                return 0
        return 0


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def file_extension(content_type: str | None) -> str:
    return "xml" if media_type(content_type) in XML_TYPES else "json"


def is_issue_event(event_name: str) -> bool:
    return event_name.startswith(("jira:issue_", "comment_", "worklog_"))


def event_id_for(identifier: str | None, body: bytes) -> str:
    """The same delivery identifier always yields the same event id; without one, the body decides."""
    if identifier and EVENT_ID_PATTERN.fullmatch(identifier):
        return identifier
    if identifier:
        return hashlib.sha256(identifier.encode()).hexdigest()
    return hashlib.sha256(body).hexdigest()


def decode(body: bytes, content_type: str | None, *, full: bool = True) -> dict[str, Any]:
    """Parse the body by its content type into the JSON envelope shape.

    `full=False` is ingest's check: for XML it proves the body well-formed and reads only the fields that
    route it, with the stdlib, so the ingest Lambda ships no XML library. The writer converts it whole.
    """
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting or numbers
            raise WebhookRejected(400, "invalid_json", f"The body is not valid UTF-8 JSON: {exc}.") from None
    elif kind in XML_TYPES:
        data = _decode_xml(body) if full else _scan_xml(body)
    else:
        shown = kind or "none"
        raise WebhookRejected(
            415,
            "unsupported_media_type",
            f"Content-Type {shown!r} is not accepted; send application/json, application/xml or text/xml.",
        )
    if not isinstance(data, dict):
        raise WebhookRejected(400, "not_a_webhook", "The body must be a JSON object (a Jira webhook payload).")
    return data


def _refuse_dtd(body: bytes) -> None:
    # A DTD is the only way to declare entities; refusing it up front makes entity bombs impossible.
    if _DOCTYPE.search(body):
        raise WebhookRejected(400, "invalid_xml", "XML with a DOCTYPE or entity declarations is not accepted.")


def _decode_xml(body: bytes) -> Any:
    import xmltodict  # the writer's converter; ingest never loads it

    _refuse_dtd(body)
    try:
        parsed = xmltodict.parse(body, disable_entities=True)
    except (expat.ExpatError, ValueError) as exc:
        raise WebhookRejected(400, "invalid_xml", f"The body is not well-formed XML: {exc}.") from None
    if not isinstance(parsed, dict) or len(parsed) != 1:
        raise WebhookRejected(400, "invalid_xml", "The XML must have a single root element.")
    root = next(iter(parsed.values()))
    return root if isinstance(root, dict) else None


# The XML fields ingest needs: the event name and time, the issue, and the entities that group other events.
_ROUTING_PATHS = frozenset(
    {("webhookEvent",), ("timestamp",), ("issue", "id"), ("issue", "key"), ("worklog", "issueId")}
    | {(entity, "id") for entity in _ENTITY_KEYS}
)


def _scan_xml(body: bytes) -> dict[str, Any]:
    """Check the XML is well-formed (expat, as xmltodict uses) and keep only the routing fields."""
    _refuse_dtd(body)
    parser = expat.ParserCreate()
    path: list[str] = []
    text: list[str] = []
    found: dict[tuple[str, ...], str] = {}

    def start(name: str, _attrs: Any) -> None:
        path.append(name)
        text.clear()

    def end(name: str) -> None:
        key = tuple(path[1:])
        if key in _ROUTING_PATHS and key not in found:
            found[key] = "".join(text).strip()
        path.pop()
        text.clear()

    def forbid(*_: Any) -> None:
        raise ValueError("entities are disabled")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    parser.EntityDeclHandler = forbid
    try:
        parser.Parse(body, True)
    except (expat.ExpatError, ValueError) as exc:
        raise WebhookRejected(400, "invalid_xml", f"The body is not well-formed XML: {exc}.") from None
    data: dict[str, Any] = {}
    for key, value in found.items():
        node = data
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return data


def parse_event(body: bytes, content_type: str | None, received_ms: int, *, full: bool = True) -> WebhookEvent:
    """Validate a webhook body; raise WebhookRejected (400/415) with a reason a person can act on."""
    data = decode(body, content_type, full=full)
    name = data.get("webhookEvent")
    if not isinstance(name, str) or not name:
        raise WebhookRejected(400, "not_a_webhook", "The payload has no 'webhookEvent'; it is not a Jira webhook.")
    issue_id, issue_key = _issue_identity(data)
    if is_issue_event(name) and issue_id is None:
        raise WebhookRejected(400, "missing_issue_id", f"The {name} event carries no numeric issue id.")
    return WebhookEvent(
        event_name=name,
        timestamp_ms=_timestamp(data.get("timestamp"), received_ms),
        data=data,
        issue_id=issue_id,
        issue_key=issue_key,
    )


def _issue_identity(data: dict[str, Any]) -> tuple[str | None, str | None]:
    issue = data.get("issue")
    raw_id: Any = None
    key: Any = None
    if isinstance(issue, dict):
        raw_id, key = issue.get("id"), issue.get("key")
    if raw_id is None and isinstance(data.get("worklog"), dict):
        raw_id = data["worklog"].get("issueId")
    issue_id = str(raw_id).strip() if raw_id is not None else None
    if not issue_id or not (issue_id.isascii() and issue_id.isdigit()):
        issue_id = None
    return issue_id, key if isinstance(key, str) and key else None


def _timestamp(value: Any, fallback_ms: int) -> int:
    try:
        ms = int(str(value).strip())
    except (TypeError, ValueError):
        return fallback_ms
    return ms if ms > 0 else fallback_ms


def message_group(event: WebhookEvent) -> str:
    """Events of one issue share a group (its id survives moves); others group by their entity."""
    if event.issue_id:
        return event.issue_id
    for key in _ENTITY_KEYS:
        entity = event.data.get(key)
        if isinstance(entity, dict) and entity.get("id") is not None:
            return _group_safe(f"{key.lower()}-{entity['id']}")
    return _group_safe(f"event-{event.event_name}")


def _group_safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]", "_", value)[:128]
