"""Each function's metrics, as the deployed handlers print them: EMF lines CloudWatch reads from the log, namespace
JSync, dimension service, through the real handlers on S3 and SQS (a moto server) and a bare git remote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import metrics
from tests.builders import fixture_bytes
from tests.harness import Pipeline
from tests.pipeline.test_metrics import emf_lines, values


def by_service(out: str) -> dict[str, dict[str, list[Any]]]:
    """Each service's metrics (dimensions beyond the service folded into the name) and their values."""
    found: dict[str, dict[str, list[Any]]] = {}
    for line in emf_lines(out):
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "JSync"
        if "service" not in line:  # the refusal's log line, which carries WebhookRefused (stage, reason) itself
            found.setdefault("(log)", {}).setdefault(directive["Metrics"][0]["Name"], []).append(line["reason"])
            continue
        extra = [d for d in directive["Dimensions"][0] if d != "service"]
        for metric in directive["Metrics"]:
            name = metric["Name"] + "".join(f"{{{d}={line[d]}}}" for d in extra)
            found.setdefault(line["service"], {}).setdefault(name, []).extend(values(line, metric["Name"]))
    return found


def test_the_handlers_print_the_metrics_named_for_each_function(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two deliveries Jira makes, and one that is not a webhook
    assert pipeline.deliver(fixture_bytes("issue_created.json"), identifier="m-1")["statusCode"] == 202
    assert pipeline.deliver(fixture_bytes("issue_updated.json"), identifier="m-2")["statusCode"] == 202
    assert pipeline.deliver(b"{not json", identifier="m-3")["statusCode"] == 400
    # When the writer and the committer take them
    pipeline.drain()

    # Then each function printed its own metrics, under its own service
    seen = by_service(capsys.readouterr().out)
    assert seen["jsync-ingest"] == {"EventsAccepted": [1, 1], "EventsRefused{reason=shape}": [1]}
    assert seen["(log)"] == {"WebhookRefused": ["shape"]}  # the alarm's metric, as before
    assert sum(seen["jsync-writer"]["EventsCaptured"]) == 2
    committer = seen["jsync-committer"]
    assert sum(committer["ChangesCommitted"]) == 2 and sum(committer["EventsPublished"]) == 2
    assert committer["CommitLagMs"] and all(lag >= 0 for lag in committer["CommitLagMs"])
    assert "EventsPublishFailed" not in committer
    # ... and the process's tally holds the same counts
    counters = metrics.tally.snapshot()["counters"]
    assert counters["jsync-ingest"]["EventsAccepted"] >= 2


def test_off_lambda_without_a_bus_the_committer_writes_the_changes_as_ndjson(pipeline: Pipeline) -> None:
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="n-1")
    pipeline.deliver(fixture_bytes("issue_updated.json"), identifier="n-2")
    pipeline.drain()
    path = pipeline.settings.events_file
    assert path is not None and path == Path(pipeline.settings.home) / "events.ndjson"
    lines: list[dict[str, Any]] = [json.loads(line) for line in path.read_text().splitlines()]
    shas = [c.sha for c in reversed(pipeline.commits())]
    assert [(line["detail"]["key"], line["detail"]["commit"]) for line in lines] == [
        ("OPS-17", shas[0]),
        ("OPS-17", shas[1]),
    ]
    assert [line["detail"]["event"] for line in lines] == ["jira:issue_created", "jira:issue_updated"]


def test_on_lambda_without_a_bus_nothing_is_published(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import services

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "jsync-dev-committer")
    monkeypatch.setenv("JSYNC_BACKEND", "aws")
    services.reset()
    assert services.publisher().sink is None
