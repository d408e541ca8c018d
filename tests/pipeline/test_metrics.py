"""Metrics (pipeline/metrics.py): what a metered handler records is one EMF line per set of dimensions on stdout,
by hand or through Powertools, and the process's tally."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline import metrics


def emf_lines(out: str) -> list[dict[str, Any]]:
    """The EMF lines among what was printed."""
    found = []
    for line in out.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "_aws" in data:
            found.append(data)
    return found


def values(line: dict[str, Any], name: str) -> list[float]:
    """A metric's values in a line: EMF takes one value or a list (Powertools always writes a list)."""
    value = line[name]
    return list(value) if isinstance(value, list) else [value]


def directive(line: dict[str, Any]) -> dict[str, Any]:
    [only] = line["_aws"]["CloudWatchMetrics"]
    return dict(only)


@pytest.mark.parametrize("powertools", [False, True])
def test_a_metered_handler_writes_its_metrics_as_emf_when_it_returns(
    powertools: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    @metrics.metered("jsync-test", powertools=powertools)
    def handler() -> str:
        metrics.count("Things")
        metrics.count("Things", 2)
        metrics.measure("LagMs", 120)
        metrics.measure("LagMs", 80)
        return "done"

    assert handler() == "done"
    [line] = emf_lines(capsys.readouterr().out)
    found = directive(line)
    assert found["Namespace"] == "JSync"
    assert found["Dimensions"] == [["service"]]
    assert {m["Name"]: m["Unit"] for m in found["Metrics"]} == {"Things": "Count", "LagMs": "Milliseconds"}
    assert line["service"] == "jsync-test"
    assert values(line, "Things") == [3]  # counts are summed; durations kept one value each
    assert values(line, "LagMs") == [120, 80]
    assert isinstance(line["_aws"]["Timestamp"], int)


@pytest.mark.parametrize("powertools", [False, True])
def test_a_dimension_stays_on_its_own_metric(powertools: bool, capsys: pytest.CaptureFixture[str]) -> None:
    @metrics.metered("jsync-test", powertools=powertools)
    def handler() -> None:
        metrics.count("Accepted")
        metrics.count("Refused", dimensions={"reason": "signature"})

    handler()
    lines = {frozenset(directive(line)["Dimensions"][0]): line for line in emf_lines(capsys.readouterr().out)}
    assert set(lines) == {frozenset({"service"}), frozenset({"service", "reason"})}
    refused = lines[frozenset({"service", "reason"})]
    assert refused["reason"] == "signature" and values(refused, "Refused") == [1] and "Accepted" not in refused
    assert "reason" not in lines[frozenset({"service"})]


def test_a_handler_that_raises_still_writes_what_it_counted(capsys: pytest.CaptureFixture[str]) -> None:
    @metrics.metered("jsync-test", powertools=False)
    def handler() -> None:
        metrics.count("Tried")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler()
    assert [line["Tried"] for line in emf_lines(capsys.readouterr().out)] == [1]


def test_nothing_counted_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.metered("jsync-test")(lambda: None)()
    assert emf_lines(capsys.readouterr().out) == []


def test_the_namespace_follows_powertools_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "JSyncStaging")
    metrics.metered("jsync-test", powertools=False)(lambda: metrics.count("Things"))()
    assert directive(emf_lines(capsys.readouterr().out)[0])["Namespace"] == "JSyncStaging"


def test_the_tally_sums_every_handler_s_metrics_since_its_reset() -> None:
    tally = metrics.Tally(clock=lambda: 1764000000.0)
    tally.add("jsync-ingest", "EventsAccepted", metrics.COUNT, 1)
    tally.add("jsync-ingest", "EventsAccepted", metrics.COUNT, 1)
    tally.add("jsync-ingest", "EventsRefused", metrics.COUNT, 1, (("reason", "shape"),))
    tally.add("jsync-committer", "CommitLagMs", metrics.MILLISECONDS, 300)
    tally.add("jsync-committer", "CommitLagMs", metrics.MILLISECONDS, 100)
    assert tally.snapshot() == {
        "since": "2025-11-24T16:00:00Z",
        "counters": {"jsync-ingest": {"EventsAccepted": 2, "EventsRefused{reason=shape}": 1}},
        "timings": {"jsync-committer": {"CommitLagMs": {"samples": 2, "max": 300, "last": 100}}},
    }
    tally.reset()
    assert tally.snapshot()["counters"] == {}


def test_a_count_outside_a_handler_reaches_the_tally_only(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.tally.reset()
    metrics.count("Loose")
    assert metrics.tally.snapshot()["counters"] == {metrics.UNMETERED: {"Loose": 1}}
    assert emf_lines(capsys.readouterr().out) == []


def test_metrics_that_cannot_be_written_never_fail_the_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> None:
        raise OSError("stdout closed")

    monkeypatch.setattr(metrics, "write_lines", broken)
    assert metrics.metered("jsync-test", powertools=False)(lambda: metrics.count("Things") or "ok")() == "ok"


@pytest.mark.parametrize("powertools", [False, True])
def test_a_deployed_stage_names_itself_on_every_metric(
    powertools: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stages in one account: each metric line carries `stage`, so their graphs and alarms stay apart."""
    monkeypatch.setenv("JSYNC_STAGE", "prod")

    @metrics.metered("jsync-test", powertools=powertools)
    def handler() -> None:
        metrics.count("Accepted")
        metrics.count("Refused", dimensions={"reason": "size"})

    handler()
    lines = {frozenset(directive(line)["Dimensions"][0]): line for line in emf_lines(capsys.readouterr().out)}
    assert set(lines) == {frozenset({"service", "stage"}), frozenset({"service", "stage", "reason"})}
    assert all(line["stage"] == "prod" for line in lines.values())
