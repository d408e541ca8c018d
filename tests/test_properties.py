"""Property: any interleaving, duplication and reordering of deliveries ends in the newest state,
one commit per state-advancing event and none for a replay."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.snapshot import issue_document
from tests.conftest import BACKENDS, fresh_environment
from tests.harness import Pipeline, fixture_json

BASE = fixture_json("issue_updated.json")


def make_event(issue: int, version: int) -> tuple[str, bytes]:
    """Version `version` of issue `issue`: later versions have later timestamps and new summaries."""
    payload = copy.deepcopy(BASE)
    payload["timestamp"] = 1764000000000 + version * 1000
    payload["issue"]["id"] = str(20000 + issue)
    payload["issue"]["key"] = f"OPS-{100 + issue}"
    payload["issue"]["fields"]["summary"] = f"issue {issue} version {version}"
    payload["changelog"] = {
        "id": str(50000 + version),
        "items": [
            {
                "field": "summary",
                "fieldtype": "jira",
                "fieldId": "summary",
                "from": None,
                "fromString": f"issue {issue} version {version - 1}",
                "to": None,
                "toString": f"issue {issue} version {version}",
            }
        ],
    }
    return f"wh-{issue}-{version}", json.dumps(payload).encode()


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[dict[int, int], list[tuple[int, int]], list[int]]:
    versions = {i: draw(st.integers(1, 4)) for i in range(draw(st.integers(1, 3)))}
    events = [(i, v) for i, n in versions.items() for v in range(n)]
    copies = [e for e in events for _ in range(draw(st.integers(1, 3)))]
    order = draw(st.permutations(copies))
    drain_after = draw(st.lists(st.integers(0, len(order) - 1), max_size=3))
    return versions, list(order), drain_after


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_any_delivery_order_converges(
    moto_endpoint: str, backend: str, case: tuple[dict[int, int], list[tuple[int, int]], list[int]]
) -> None:
    versions, order, drain_after = case
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as root:
        pipeline = Pipeline(fresh_environment(moto_endpoint, Path(root), mp, backend))
        # When every delivery arrives, in this order, with drains at arbitrary points
        for n, (issue, version) in enumerate(order):
            identifier, body = make_event(issue, version)
            assert pipeline.deliver(body, identifier=identifier)["statusCode"] == 202
            if n in drain_after:
                pipeline.drain()
        pipeline.drain()

        # Then each issue's newest version is in latest/ and in git
        for issue, count in versions.items():
            newest = json.loads(make_event(issue, count - 1)[1])["issue"]
            assert pipeline.latest(str(20000 + issue))["issue"] == issue_document(newest)
            stored = pipeline.git_file(f"issues/OPS/OPS-{100 + issue}.json")
            assert stored is not None and json.loads(stored) == issue_document(newest)

        # And exactly one commit per state-advancing event, in the order they advanced, none for replays
        advancing: list[str] = []
        best: dict[int, int] = {}
        for issue, version in order:  # each issue's events are processed in delivery order (one FIFO group)
            if version > best.get(issue, -1):
                best[issue] = version
                advancing.append(f"wh-{issue}-{version}")
        committed = [c.trailers["Jira-Event-Id"] for c in reversed(pipeline.commits())]
        assert sorted(committed) == sorted(advancing)
        for issue in versions:
            mine = [e for e in committed if e.startswith(f"wh-{issue}-")]
            assert mine == [e for e in advancing if e.startswith(f"wh-{issue}-")]
