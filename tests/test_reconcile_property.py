"""Property: any subset of an issue set's webhooks, delivered in any order, plus one reconcile, leaves the same S3 and
git content as every webhook delivered in order (capture bookkeeping aside: event ids, sources, capture times)."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dulwich.repo import Repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import reader, services
from tests.environments import fresh_environment
from tests.fakejira import EMAIL, TOKEN, FakeJira, JiraModel
from tests.harness import Pipeline

SEEDS = range(4)
# The zone each seed's REST answers render times in (webhooks are always UTC): what JSync stores must not depend on it.
REST_ZONES = (
    UTC,
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=1)),
)
_baselines: dict[int, dict[str, Any]] = {}


def model(seed: int) -> JiraModel:
    return JiraModel(seed=seed, issues=3, max_changes=3, rest_zone=REST_ZONES[seed % len(REST_ZONES)])


def content(pipeline: Pipeline) -> dict[str, Any]:
    """What S3 and git hold, without what only says how and when it was captured."""
    store = services.store()
    latest = {}
    for key in pipeline.keys("latest/"):
        state = json.loads(store.get_bytes(key))
        latest[key] = {"issue": state["issue"], "deleted": state["deleted"]}
    snapshots: dict[str, list[Any]] = {}
    for key in pipeline.keys("snapshots/"):
        snap = json.loads(store.get_bytes(key))
        capture = snap["capture"]
        entry = (capture["changelog"] or {}).get("id") or capture["event_type"]
        item = [capture["event_time"], entry, capture["actor"], capture["changes"], snap["issue"]]
        snapshots.setdefault(key.split("/")[1], []).append(item)
    history: dict[str, list[Any]] = {}
    for key in pipeline.keys("latest/"):
        issue_id = key.split("/")[1].removesuffix(".json")
        cursor: str | None = None
        while True:  # as the read API pages through it, newest first
            page = reader.history(store, issue_id, 100, cursor)
            history.setdefault(issue_id, []).extend(
                # Without `name`: it is the catalogue's, which only the run with a reconcile has.
                [i["event"], i["event_time"], i["actor"], [_unnamed(c) for c in i["changes"]]]
                for i in page.items
            )
            cursor = page.next_cursor
            if not cursor:
                break
    return {
        "latest": latest,
        "snapshots": {k: sorted(v, key=lambda i: (i[0], str(i[1]))) for k, v in snapshots.items()},
        "history": history,  # listed newest first by key, so the order is part of what must match
        "git": git_tree(pipeline),
        "projects": {
            k: json.loads(store.get_bytes(k))["issue_count"]
            for k in pipeline.keys("index/projects/")
            if k.endswith("count.json")
        },
    }


def _unnamed(change: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in change.items() if k != "name"}


def git_tree(pipeline: Pipeline) -> dict[str, bytes]:
    repo = Repo(pipeline.settings.git_remote)
    try:
        tree = repo[repo.refs[f"refs/heads/{pipeline.settings.git_branch}".encode()]].tree
        # The issues' JSON. `fields.json` exists only where a reconcile ran, and each Markdown file is its JSON
        # rendered with the field names known when it was committed (tests/pipeline/git/test_markdown_in_git.py).
        return {
            entry.path.decode(): bytes(repo[entry.sha].data)
            for entry in repo.object_store.iter_tree_contents(tree)
            if entry.path.endswith(b".json") and entry.path != b"fields.json"
        }
    finally:
        repo.close()


def run(endpoint: str, seed: int, chosen: list[int] | None) -> dict[str, Any]:
    """All webhooks in order (chosen None), or the chosen ones in the given order and then a reconcile."""
    jira = model(seed)
    hooks = jira.webhooks()
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as root, FakeJira(jira) as fake:
        mp.setenv("JSYNC_JIRA_URL", fake.base_url)
        mp.setenv("JSYNC_JIRA_EMAIL", EMAIL)
        mp.setenv("JSYNC_JIRA_TOKEN", TOKEN)
        pipeline = Pipeline(fresh_environment(endpoint, Path(root), mp))
        for index in range(len(hooks)) if chosen is None else chosen:
            hook = hooks[index]
            assert pipeline.deliver(hook.body, identifier=hook.identifier)["statusCode"] == 202
        pipeline.drain()
        if chosen is not None:
            job = pipeline.sync()
            assert job.state == "succeeded", job
        found = content(pipeline)
        services.reset()
        return found


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[int]]:
    seed = draw(st.sampled_from(list(SEEDS)))
    count = len(model(seed).webhooks())
    subset = draw(st.lists(st.integers(0, count - 1), unique=True, max_size=count))
    return seed, draw(st.permutations(subset))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_any_subset_in_any_order_plus_a_reconcile_equals_every_webhook_in_order(
    moto_endpoint: str, case: tuple[int, list[int]]
) -> None:
    seed, chosen = case
    if seed not in _baselines:
        _baselines[seed] = run(moto_endpoint, seed, None)
    assert run(moto_endpoint, seed, list(chosen)) == _baselines[seed]
