"""The benchmarks still run: `python -m bench --quick` produces a figure in every section, on both backends (embedded
and aws against a moto server the bench starts), reconcile and the kill -9 run included (no timing asserted)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from numbers import Number
from pathlib import Path
from typing import Any

import pytest
from dulwich.client import HTTPUnauthorized

from bench.gitserver import GitServer, init_bare
from bench.reconcile import request_kind
from bench.report import render
from bench.state import EmbeddedState
from pipeline.git.store import GitStore, Person, RemoteUnavailable

ROOT = Path(__file__).resolve().parents[2]


def number(data: dict[str, Any], *path: str) -> float:
    value: Any = data
    for part in path:
        assert isinstance(value, dict) and part in value, f"{'.'.join(path)} missing"
        value = value[part]
    assert isinstance(value, Number) and not isinstance(value, bool), f"{'.'.join(path)} is {value!r}"
    return float(value)


def test_git_server_takes_pushes_and_fetches_with_a_token_and_refuses_without(tmp_path: Path) -> None:
    # Given a bare repository served by git http-backend behind a token
    init_bare(tmp_path / "served" / "r.git")
    with GitServer(tmp_path / "served", token="t0ken") as server:
        # When the committer pushes a commit with the token
        writer = GitStore(server.url("r.git"), "main", tmp_path / "a.git", token="t0ken")
        writer.fetch()
        writer.stage({"issues/OPS/OPS-1.json": b"{}\n"}, Person("Ada", "ada@example.invalid"), 1, "OPS-1: created\n")
        writer.push()
        # Then a fresh cache fetches it back, and a wrong token is refused
        reader = GitStore(server.url("r.git"), "main", tmp_path / "b.git", token="t0ken")
        assert reader.fetch() == writer.tip
        with pytest.raises((RemoteUnavailable, HTTPUnauthorized)):
            GitStore(server.url("r.git"), "main", tmp_path / "c.git", token="wrong").fetch()
        for store in (writer, reader):
            store.close()


def test_quick_benchmark_reports_a_figure_in_every_section(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {**os.environ, "JSYNC_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["errors"] == {}, results["errors"]
    for size in (str(n) for n in results["sizes"]):
        for key in ("commit_ms_per_event", "push_ms_per_batch", "push_cpu_ms", "ms_per_event_incl_push", "peak_rss_mb"):
            number(results, "committer", size, "jsync", key)
        jsync = results["committer"][size]["jsync"]
        assert jsync["remote_in_sync"] and jsync["committed"] == jsync["expected_commits"]
        number(results, "committer", size, "git_cli", "s_per_event")
        number(results, "committer", size, "ratio")
        number(results, "cold_start", size, "seconds")
        number(results, "cold_start", size, "peak_rss_mb")
    assert results["backends"] == ["embedded", "aws"]
    for backend in results["backends"]:
        e2e = results["e2e"][backend]
        for section in ("ack", "to_store", "to_git", "api_under_load"):
            for pct in ("p50_ms", "p95_ms", "p99_ms"):
                number(e2e, "latency", section, pct)
        assert e2e["latency"]["in_git"] == e2e["latency"]["sent"]
        steps = e2e["sustained"]["steps"]
        assert steps and all(isinstance(s["achieved_rate"], float) for s in steps)
        number(e2e, "api", "p50_ms")
        number(e2e, "api", "p95_ms")
        number(e2e, "bulk", "last_ack_to_all_in_git_s")
        assert e2e["bulk"]["in_git"] == e2e["bulk"]["events"]
        reconcile = results["reconcile"][backend]
        for job in ("backfill", "catchup", "idle"):
            for key in ("reconcile_s", "reconcile_own_s", "drain_s", "end_to_end_s", "fake_jira_serving_s"):
                number(reconcile, job, key)
            number(reconcile, job, "reconcile_calls", "queues", "seconds")
            number(reconcile, job, "requests", "total")
            assert reconcile[job]["state"] == "succeeded", reconcile[job]
        for key in ("reconcile_issues_per_s", "reconcile_changes_per_s", "end_to_end_issues_per_s"):
            number(reconcile, "backfill", key)
        assert number(reconcile, "backfill", "changes_fed") > 0
        copied = results["attachments"][backend]
        assert copied["state"] == "stored" and copied["size"] == 20 * 1024 * 1024
        number(copied, "mb_per_s")
        number(copied, "rss_growth_mb")
        assert number(reconcile, "backfill", "requests_per_issue", "total") > 0
        assert number(reconcile, "catchup", "changes_fed") > 0
    # The kill -9 run, on embedded only in a quick run (on aws it waits out SQS's visibility timeout)
    kill = results["e2e"]["embedded"]["kill"]
    assert number(kill, "kills") >= 1 and number(kill, "accepted") > 0
    for key in ("lost", "doubled_git", "drain_s"):
        number(kill, key)
    number(results, "ingest_import", "importtime_cumulative_ms")
    assert len(results["targets"]) == 7
    rows = results["issue12"]
    assert len(rows) == 7
    for row in rows:
        assert set(row["figures"]) == {"embedded", "aws"}
        assert isinstance(row["figures"]["embedded"], Number), row
    headings = ("1. Committer", "2. Committer cold start", "3. End to end", "4. Ingest and API", "5. Reconcile")
    for heading in (*headings, "Issue 12", "Targets"):
        assert heading in proc.stdout
    for backend in ("embedded", "aws"):
        assert f"3. End to end through the local stack on {backend}" in proc.stdout
        assert f"(issue 7) on {backend}" in proc.stdout
    # Issue 13: every change of each run reached the remote, and large batches took far fewer pushes
    batch = results["batches"]
    for run in ("burst_today", "burst_large", "paced_today", "paced_large"):
        assert batch[run]["commits_on_remote"] == batch[run]["changes"], batch[run]
        number(batch, run, "pushes")
    assert batch["burst_today"]["pushes"] == batch["burst_today"]["changes"] / 10
    assert batch["burst_large"]["pushes"] < batch["burst_large"]["changes"] / 10
    number(batch, "paced_large", "queued_to_pushed_p95_s")
    assert "Large commit batches (issue 13)" in proc.stdout
    # and an update of a captured issue costs the writer the three PUTs the layout needs: raw, snapshot, latest
    assert results["writes"]["update"]["puts_by_prefix"] == {"latest/": 1, "raw/": 1, "snapshots/": 1}
    assert "Object-store calls per webhook (issue 13)" in proc.stdout
    # What `--only reconcile` prints: that section alone
    alone = render({**results, "sections": ["reconcile"], "targets": [], "issue12": []})
    assert "5. Reconcile" in alone and not any(h in alone for h in (*headings[:4], "Targets", "Issue 12"))


def test_the_bench_reads_an_embedded_stacks_state_read_only(tmp_path: Path) -> None:
    # Given an embedded backend's database with an object and a queued message
    from pipeline.backends import Outgoing
    from pipeline.backends.embedded import Database, SqliteObjects, SqliteQueues

    db = Database(tmp_path / "jsync.db")
    SqliteObjects(db).put("snapshots/1/2-e.json", b"{}")
    queues = SqliteQueues(db)
    queues.create("q.fifo", None, 60)
    queues.send("q.fifo", [Outgoing("{}", "g", "d")])
    # When the bench reads it
    state = EmbeddedState(tmp_path / "jsync.db")
    # Then it sees both, and cannot write
    assert state.keys("snapshots/") == {"snapshots/1/2-e.json"}
    assert state.get("snapshots/1/2-e.json") == b"{}" and state.get("nope") is None
    assert state.depth("q.fifo") == 1
    with pytest.raises(sqlite3.OperationalError):
        state._db().execute("DELETE FROM objects")
    state.close()
    db.close()


def test_jira_requests_are_counted_by_what_they_are_for() -> None:
    assert request_kind("POST", "/rest/api/3/search/jql", {"jql": "x", "fields": ["key", "updated"]}) == "search"
    assert request_kind("POST", "/rest/api/3/search/jql", {"jql": "x", "fields": ["id"]}) == "census"
    assert request_kind("POST", "/rest/api/3/search/approximate-count", {"jql": "x"}) == "approximate_count"
    assert request_kind("POST", "/rest/api/3/changelog/bulkfetch", {}) == "bulk_changelog"
    assert request_kind("GET", "/rest/api/2/issue/10001", None) == "issue"
    assert request_kind("GET", "/rest/api/3/issue/10001/changelog", None) == "changelog"
    assert request_kind("GET", "/rest/api/2/status/3", None) == "lookup"
    assert request_kind("GET", "/rest/api/2/user", None) == "lookup"
