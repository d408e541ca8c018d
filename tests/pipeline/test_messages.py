"""The queue messages (pipeline/messages.py): a webhook body travels inline byte for byte, whatever its encoding."""

from __future__ import annotations

import re

from pipeline import services
from pipeline.messages import QueuedEvent
from tests.builders import fixture_bytes, queued_event
from tests.harness import Pipeline


def latin1_xml(summary: str) -> bytes:
    """issue_created.xml (OPS-19, issue 10060) as a server configured for ISO-8859-1 sends it."""
    text = fixture_bytes("issue_created.xml").decode("utf-8").replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    text = re.sub(r"<summary>[^<]*</summary>", f"<summary>{summary}</summary>", text, count=1)
    return text.encode("latin-1")


def test_a_body_that_is_not_utf8_round_trips_through_the_message_unchanged() -> None:
    body = latin1_xml("Café crème")
    queued = queued_event("l-1", body, "application/xml")
    text = queued.to_json()
    text.encode("ascii")  # what SQS is sure to take
    assert QueuedEvent.from_json(text) == queued


def test_an_iso_8859_1_xml_delivery_is_captured_with_its_accents(pipeline: Pipeline) -> None:
    body = latin1_xml("Café crème")
    # When Jira delivers it
    response = pipeline.deliver(body, identifier="l-1", content_type="application/xml")
    assert response["statusCode"] == 202, response
    pipeline.drain()
    # Then the raw copy is the bytes as sent, and the issue reads as written
    (raw,) = pipeline.keys("raw/")
    assert services.store().get_bytes(raw) == body
    latest = pipeline.latest("10060")
    assert latest is not None and latest["issue"]["fields"]["summary"] == "Café crème"
