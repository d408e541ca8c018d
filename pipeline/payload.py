"""Raw webhook bytes + content type -> a validated Jira webhook event (JSON or XML), plus its ids."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from pipeline.errors import WebhookRejected
from pipeline.ids import EVENT_ID, MAX_EVENT_TIME_MS, is_issue_id

JSON_TYPES = frozenset({"application/json"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
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
                return max(0, int(changelog.get("id") or 0))
            except (TypeError, ValueError, OverflowError):  # OverflowError: a float like 1e400
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
    if identifier and EVENT_ID.fullmatch(identifier):
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


# The XML fields ingest needs: the event name and time, the issue, the entities that group other events, and
# the containers whose shape `parse_event` checks.
_ROUTING_PATHS = frozenset(
    {("webhookEvent",), ("timestamp",), ("issue", "id"), ("issue", "key"), ("issue", "fields"), ("worklog", "issueId")}
    | {(entity, "id") for entity in _ENTITY_KEYS}
)
_KEPT = frozenset(path[:n] for path in _ROUTING_PATHS for n in range(1, len(path) + 1))


@dataclass
class _Element:
    """An open element while scanning: what xmltodict would make of it, for the parts ingest keeps."""

    path: tuple[str, ...]
    has_structure: bool  # attributes or child elements: xmltodict makes it a dict
    text: list[str]
    kept: dict[str, Any]


def _scan_xml(body: bytes) -> dict[str, Any] | None:
    """Check the XML is well-formed (expat, as xmltodict uses) and keep only the routing fields.

    Each kept value is what xmltodict gives the writer for it (text, None when empty, a dict when it has
    attributes or children, a list when repeated), so `parse_event` judges ingest's scan and the writer's full
    parse alike: a body one accepts, the other accepts too.
    """
    _refuse_dtd(body)
    parser = expat.ParserCreate()
    open_elements: list[_Element] = []
    root: list[Any] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if open_elements:
            open_elements[-1].has_structure = True
        path = (*open_elements[-1].path, name) if open_elements else ()
        open_elements.append(_Element(path, bool(attrs), [], {}))

    def end(_name: str) -> None:
        element = open_elements.pop()
        if element.has_structure:
            value: Any = element.kept
        else:
            value = "".join(element.text).strip() or None
        if not open_elements:
            root.append(value)
            return
        name = element.path[-1]
        if element.path not in _KEPT:
            return
        siblings = open_elements[-1].kept
        if name in siblings:  # repeated: xmltodict lists them, and so must we
            earlier = siblings[name]
            siblings[name] = [*earlier, value] if isinstance(earlier, list) else [earlier, value]
        else:
            siblings[name] = value

    def characters(data: str) -> None:
        open_elements[-1].text.append(data)

    def forbid(*_: Any) -> None:
        raise ValueError("entities are disabled")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.EntityDeclHandler = forbid
    try:
        parser.Parse(body, True)
    except (expat.ExpatError, ValueError) as exc:
        raise WebhookRejected(400, "invalid_xml", f"The body is not well-formed XML: {exc}.") from None
    return root[0] if root and isinstance(root[0], dict) else None


def parse_event(body: bytes, content_type: str | None, received_ms: int, *, full: bool = True) -> WebhookEvent:
    """Validate a webhook body; raise WebhookRejected (400/415) with a reason a person can act on.

    The one rule for what JSync takes: ingest refuses what fails it, and the writer can store all that passes.
    """
    data = decode(body, content_type, full=full)
    name = data.get("webhookEvent")
    if not isinstance(name, str) or not name:
        raise WebhookRejected(400, "not_a_webhook", "The payload has no 'webhookEvent'; it is not a Jira webhook.")
    raw_id = _raw_issue_id(data)
    issue_id = _issue_id(raw_id)
    if is_issue_event(name):
        if issue_id is None:
            # One code for both, as before: what the sender must fix is the same, a numeric id in `issue.id`.
            sent = "" if raw_id is None else f" ({str(raw_id)[:40]!r} is not one: Jira's ids are 1 to 20 digits)"
            raise WebhookRejected(400, "missing_issue_id", f"The {name} event carries no numeric issue id{sent}.")
        _check_issue_shape(data, name)
    return WebhookEvent(
        event_name=name,
        timestamp_ms=_timestamp(data.get("timestamp"), received_ms),
        data=data,
        issue_id=issue_id,
        issue_key=_issue_key(data),
    )


def _raw_issue_id(data: dict[str, Any]) -> Any:
    """The issue's id as sent: the issue's own, else a worklog event's `issueId`; None when neither is given."""
    issue = data.get("issue")
    raw_id = issue.get("id") if isinstance(issue, dict) else None
    if raw_id is None and isinstance(data.get("worklog"), dict):
        raw_id = data["worklog"].get("issueId")
    return None if raw_id is None or str(raw_id).strip() == "" else raw_id


def _issue_id(raw_id: Any) -> str | None:
    if raw_id is None:
        return None
    issue_id = str(raw_id).strip()  # Jira sends a string; a JSON number with the same digits is the same id
    return issue_id if is_issue_id(issue_id) else None


def _issue_key(data: dict[str, Any]) -> str | None:
    issue = data.get("issue")
    key = issue.get("key") if isinstance(issue, dict) else None
    return key if isinstance(key, str) and key else None


def _check_issue_shape(data: dict[str, Any], name: str) -> None:
    """The issue and its fields are objects when sent: the writer builds the stored document on them, and a
    `null` in their place would read as an issue with no fields at all, erasing what JSync holds."""
    issue = data.get("issue")
    if issue is not None and not isinstance(issue, dict):
        raise WebhookRejected(400, "invalid_shape", f"The {name} event's 'issue' must be an object.")
    if isinstance(issue, dict) and "fields" in issue and not isinstance(issue["fields"], dict):
        raise WebhookRejected(400, "invalid_shape", f"The {name} event's 'issue.fields' must be an object.")


# Event times are epoch ms of 13 digits at most (until the year 2286): what history keys and versions hold.


def _timestamp(value: Any, fallback_ms: int) -> int:
    """Jira's `timestamp`; when it is missing or no time at all (a sender's bug), the time we received it."""
    try:
        ms = int(str(value).strip())
    except (TypeError, ValueError):
        return fallback_ms
    return ms if 0 < ms <= MAX_EVENT_TIME_MS else fallback_ms


def issue_group(issue_id: str) -> str:
    """The FIFO group of an issue's events, from ingest and reconcile alike: its id, which survives moves (keys do not).
    One group per issue keeps its events in order while other issues go past."""
    return issue_id


def message_group(event: WebhookEvent) -> str:
    """Events of one issue share a group (`issue_group`); others group by their entity."""
    if event.issue_id:
        return issue_group(event.issue_id)
    for key in _ENTITY_KEYS:
        entity = event.data.get(key)
        if isinstance(entity, dict) and entity.get("id") is not None:
            return _group_safe(f"{key.lower()}-{entity['id']}")
    return _group_safe(f"event-{event.event_name}")


def _group_safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]", "_", value)[:128]
