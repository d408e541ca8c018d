"""What ingest accepts, the writer stores and the committer commits: hostile variations of real payloads.

Each example takes a real-shaped fixture, breaks it the way a buggy sender or a future Jira might (nulls, wrong
types, huge numbers, odd strings, missing or repeated parts), sends it as JSON or as XML, and asks ingest's own
check. Whatever that check accepts must go through the writer without an exception and without being set
aside as unreadable, and its change must reach git.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any

import pytest
import xmltodict
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from pipeline import services
from pipeline.capture import Captured, capture
from pipeline.errors import WebhookRejected
from pipeline.git.commits import commit_batch
from pipeline.ids import VERSION
from pipeline.messages import Change, QueuedEvent
from pipeline.payload import event_id_for, parse_event
from pipeline.settings import Settings
from pipeline.store import UNREADABLE_PREFIX, Store, raw_key
from tests.builders import FIXTURES

_FIXTURES = {path.name: json.loads(path.read_bytes()) for path in sorted(FIXTURES.glob("*.json"))}

# Values that break assumptions: every JSON type, numbers past 64 bits and floats, strings that are empty, huge,
# look like numbers, keys or dates, or hold NUL, a lone surrogate, right-to-left marks and emoji.
_HOSTILE: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**13, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1" * 31,
            "10042",
            "OPS-17",
            "A" * 300 + "-" + "9" * 40,
            "ops-1",
            "../../etc/passwd",
            "2026-10-26T04:07:02.225-0500",
            "\x00",
            "\ud800",
            "\u202eevil",
            "😀" * 50,
            "x" * 5000,
        ]
    ),
    st.text(max_size=20),
    st.just([]),
    st.just({}),
    st.lists(st.none() | st.integers() | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.none() | st.integers() | st.text(max_size=5), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document a value sits, the document's own root excluded."""
    found: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found += _paths(child, (*prefix, key))
    return found


def _set(doc: Any, path: tuple[Any, ...], value: Any, *, delete: bool) -> None:
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


_ids = itertools.count(30000)


def _fresh(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy about an issue and a change nobody sent before, so no example is a replay of an earlier one."""
    doc = json.loads(json.dumps(doc))
    n = next(_ids)
    if isinstance(doc.get("issue"), dict):
        doc["issue"].update(id=str(n), key=f"FZ-{n}")
    if isinstance(doc.get("worklog"), dict):
        doc["worklog"]["issueId"] = str(n)
    if isinstance(doc.get("changelog"), dict):
        doc["changelog"]["id"] = str(n)
    return doc


# Where a break hurts most: what ingest and the writer read first. Drawn more often than a uniform pick would.
_HOT = [
    ("issue",),
    ("issue", "id"),
    ("issue", "key"),
    ("issue", "fields"),
    ("issue", "fields", "comment"),
    ("issue", "fields", "comment", "comments"),
    ("issue", "fields", "worklog"),
    ("issue", "fields", "summary"),
    ("issue", "fields", "project"),
    ("issue", "fields", "status"),
    ("issue", "fields", "updated"),
    ("changelog",),
    ("changelog", "id"),
    ("changelog", "items"),
    ("comment",),
    ("comment", "id"),
    ("comment", "author"),
    ("worklog",),
    ("worklog", "issueId"),
    ("user",),
    ("timestamp",),
]


@st.composite
def hostile_payloads(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(_FIXTURES)))
    doc = _fresh(_FIXTURES[name])
    for n in range(draw(st.integers(1, 4))):
        present = _paths(doc)
        hot = [p for p in _HOT if p in present]
        if not present:
            break
        # The first break lands where it hurts most; the others anywhere, deep inside lists and objects too.
        path = draw(st.sampled_from(hot)) if hot and n == 0 else draw(st.sampled_from(present))
        _set(doc, path, draw(_HOSTILE), delete=draw(st.integers(0, 5)) == 0)
    return name, doc


_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def _xml_ready(node: Any) -> Any:
    """The document without the keys XML cannot name (Jira's `48x48` avatar sizes), as JSync's XML mapping has."""
    if isinstance(node, dict):
        return {k: _xml_ready(v) for k, v in node.items() if _XML_NAME.fullmatch(k)}
    if isinstance(node, list):
        return [_xml_ready(v) for v in node]
    return node


def _as_body(doc: dict[str, Any], as_xml: bool) -> tuple[bytes, str]:
    if not as_xml:
        return json.dumps(doc).encode("utf-8", "surrogatepass"), "application/json"
    try:
        return xmltodict.unparse({"webhook": _xml_ready(doc)}).encode("utf-8", "surrogatepass"), "application/xml"
    except (ValueError, TypeError):  # no XML form (a key xmltodict cannot write as an element name)
        assume(False)
        raise


def _store_once(settings: Settings, body: bytes, content_type: str) -> tuple[QueuedEvent, Captured, list[Change]]:
    """Ingest's check, then the writer's work on what it accepted; WebhookRejected if ingest refused it."""
    received = int(time.time() * 1000)
    parse_event(body, content_type, received, full=False)
    event_id = event_id_for(None, body)
    queued = QueuedEvent(event_id, received, content_type, raw_key(event_id, received, "json"), body)
    sent: list[Change] = []
    captured = capture(queued, services.store(), sent.append)
    return queued, captured, sent


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=hostile_payloads(), as_xml=st.booleans())
def test_whatever_ingest_accepts_is_stored_and_committed(
    settings: Settings, case: tuple[str, dict[str, Any]], as_xml: bool
) -> None:
    name, doc = case
    body, content_type = _as_body(doc, as_xml)
    try:
        queued, captured, sent = _store_once(settings, body, content_type)
    except WebhookRejected as refused:
        # Refused at the door with the contract's shape: a status and a code, never a crash.
        assert refused.status in (400, 415) and refused.body()["error"]
        event(f"refused: {refused.body()['error']}")
        return
    event(f"accepted: {name} as {'xml' if as_xml else 'json'}")

    # Then the writer stored it, not set it aside
    store = services.store()
    assert _set_aside(store) == []
    assert store.get_bytes(queued.raw_key) == body
    # as a version the read API can name
    if captured.snapshot_key:
        assert VERSION.fullmatch(captured.snapshot_key.rsplit("/", 1)[1].removesuffix(".json"))
    # and the committer can write whatever change it passed on
    if sent:
        result = commit_batch(sent, services.git_store(), services.git_records(), _snapshot_document)
        assert result.left == []


def _set_aside(store: Store) -> list[str]:
    """Why the writer set events aside, if it did: the reason and detail it recorded."""
    records = [store.read_json(key) for key in store.all_keys(UNREADABLE_PREFIX)]
    return [f"{r.data['reason']}: {r.data['detail']}" for r in records if r is not None]


def _snapshot_document(change: Change) -> Any:
    return json.loads(services.store().get_bytes(change.snapshot_key))["issue"]


@pytest.mark.parametrize(
    ("issue", "code"),
    [
        ({"id": "1" * 31, "key": "OPS-1", "fields": {}}, "missing_issue_id"),
        ({"id": "10042", "key": "OPS-1", "fields": None}, "invalid_shape"),
        ({"id": "10042", "key": "OPS-1", "fields": "text"}, "invalid_shape"),
        ({"key": "OPS-1", "fields": {}}, "missing_issue_id"),
        ({"id": "12a", "fields": {}}, "missing_issue_id"),
    ],
)
@pytest.mark.parametrize("as_xml", [False, True])
def test_ingest_refuses_what_the_writer_could_not_store(issue: dict[str, Any], code: str, as_xml: bool) -> None:
    doc = {"webhookEvent": "jira:issue_updated", "timestamp": 1764000000000, "issue": issue}
    body, content_type = _as_body(doc, as_xml)
    for full in (False, True):  # ingest's scan and the writer's full parse say the same
        with pytest.raises(WebhookRejected) as refused:
            parse_event(body, content_type, 0, full=full)
        assert (refused.value.status, refused.value.code) == (400, code)


_ROUTING_NAMES = ["webhookEvent", "timestamp", "issue", "id", "key", "fields", "worklog", "issueId", "project", "x"]
_XMLISH = st.recursive(
    st.none() | st.text(max_size=8),
    lambda inner: (
        st.dictionaries(st.sampled_from(_ROUTING_NAMES), inner, max_size=4) | st.lists(inner, min_size=2, max_size=3)
    ),  # a list is a repeated element in XML
    max_leaves=12,
)


@given(doc=_XMLISH)
@settings(max_examples=300, deadline=None)
def test_ingest_scan_and_writer_parse_agree_on_any_xml(doc: Any) -> None:
    """The scan reads XML with the stdlib only; for the fields that route an event it must see what xmltodict does."""
    try:
        body = xmltodict.unparse({"webhook": doc}).encode()
    except (ValueError, TypeError):
        assume(False)
        return
    outcomes = []
    for full in (False, True):
        try:
            parsed = parse_event(body, "application/xml", 5, full=full)
            outcomes.append(("ok", parsed.event_name, parsed.issue_id, parsed.issue_key, parsed.timestamp_ms))
        except WebhookRejected as refused:
            outcomes.append(("refused", refused.code))
    assert outcomes[0] == outcomes[1]


_NASTY: list[Any] = [None, True, 1.5, -1, 10**30, "", "1" * 31, "A" * 300 + "-9", "\ud800", "x" * 5000, [], {}]


def test_every_hot_field_broken_every_way_is_refused_or_stored(settings: Settings) -> None:
    """The grid the fuzzer may miss: each field the writer reads first, set to each nasty value, one at a time."""
    store = services.store()
    for name in ("issue_updated.json", "comment_created.json", "worklog_created.json", "issue_deleted.json"):
        for path in [p for p in _HOT if p in _paths(_FIXTURES[name])]:
            for value in _NASTY:
                doc = _fresh(_FIXTURES[name])
                _set(doc, path, value, delete=False)
                body, content_type = _as_body(doc, as_xml=False)
                try:
                    _, captured, _ = _store_once(settings, body, content_type)
                except WebhookRejected:
                    continue
                where = f"{name} {'.'.join(map(str, path))}={str(value)[:20]!r}"
                assert _set_aside(store) == [], where
                if captured.snapshot_key:
                    assert VERSION.fullmatch(captured.snapshot_key.rsplit("/", 1)[1].removesuffix(".json")), where
