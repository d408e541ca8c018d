"""The machine, the issue's targets, and the printed table."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable
from typing import Any

from pipeline.reconcile import SEARCH_PAGE


def machine() -> dict[str, Any]:
    import dulwich

    def first(path: str, prefix: str) -> str | None:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(prefix):
                        return line.split(":", 1)[1].strip()
        except OSError:
            return None
        return None

    mem_kb = first("/proc/meminfo", "MemTotal")
    rust = []
    for name in ("_objects", "_pack", "_diff_tree"):
        try:
            __import__(f"dulwich.{name}")
            rust.append(name)
        except ImportError:
            pass
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "memory_gb": round(int(mem_kb.split()[0]) / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dulwich": ".".join(str(p) for p in dulwich.__version__),
        "dulwich_extensions": rust,
        "git": git.removeprefix("git version "),
    }


def _get(data: Any, *path: Any) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the figure it is judged on (None when that figure was not measured)."""
    big, small, mid = "100000", "1000", "10000"
    commit = lambda n: _get(results, "committer", n, "jsync", "commit_ms_per_event")  # noqa: E731
    growth = commit(big) / commit(small) if commit(big) and commit(small) else None
    e2e_p95 = _get(results, "e2e", "latency", "to_git", "p95_ms")
    e2e_complete = _get(results, "e2e", "latency", "in_git") == _get(results, "e2e", "latency", "sent")
    sustained = _get(results, "e2e", "sustained", "highest_sustained")
    rows = [
        ("committer work per event at 100k files", commit(big), "ms", "≤ 1 ms", lambda v: v <= 1),
        ("committer per-event growth 100k / 1k files", growth, "×", "≤ 2", lambda v: v <= 2),
        ("faster than clone per event, at 10k files", _get(results, "committer", mid, "ratio"), "×", "≥ 100×",
         lambda v: v >= 100),
        ("cold start at 100k files (GitStore + fetch)", _get(results, "cold_start", big, "seconds"), "s", "≤ 1 s",
         lambda v: v <= 1),
        ("cold start peak RSS at 100k files", _get(results, "cold_start", big, "peak_rss_mb"), "MB", "≤ 64 MB",
         lambda v: v <= 64),
        ("webhook -> commit p95 at 20 ev/s", e2e_p95, "ms", "≤ 1000 ms, none lost",
         lambda v: v <= 1000 and e2e_complete),
        ("highest rate sustained, nothing lost", sustained, "ev/s", "≥ 200 ev/s", lambda v: v >= 200),
    ]  # fmt: skip
    if sustained is None and _get(results, "e2e", "sustained", "steps"):
        rows[-1] = ("highest rate sustained, nothing lost", 0.0, "ev/s", "≥ 200 ev/s", lambda v: v >= 200)
    return [
        {"name": name, "figure": value, "unit": unit, "target": target, "met": None if value is None else check(value)}
        for name, value, unit, target, check in rows
    ]


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.{digits}f}"
    return str(value)


def _queued(data: dict[str, Any]) -> str:
    depths = data.get("queues_when_sending_stopped") or {}
    return f"{_fmt(depths.get('events'))} / {_fmt(depths.get('commits'))}"


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "NOT met")


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    m = results["machine"]
    sizes = [str(n) for n in results["sizes"]]
    add(f"JSync benchmarks ({results['mode']}), {results['started']}, {results.get('runtime_s', 0):.0f} s")
    add(
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB, Linux {m['kernel']}; Python {m['python']}, "
        f"dulwich {m['dulwich']} (Rust: {', '.join(m['dulwich_extensions']) or 'none'}), git {m['git']}"
    )
    if results.get("remote"):
        add(f"Git remote: {results['remote']}")
    add("")
    sections = results.get("sections") or ["committer", "e2e", "reconcile"]
    if "committer" in sections:
        _committer_sections(results, add, sizes)
    if "e2e" in sections:
        _e2e_sections(results, add)
    if "reconcile" in sections:
        _reconcile_section(results.get("reconcile") or {}, add)
    if results.get("targets"):
        add("Targets (issue 6); figures only, never a pass/fail exit")
        for t in results["targets"]:
            add(f"  {t['name']:46}{_fmt(t['figure']):>10} {t['unit']:5} {t['target']:22} {_verdict(t['met'])}")
    if results.get("errors"):
        add("")
        add("Errors")
        for where, error in results["errors"].items():
            add(f"  {where}: {error}")
    return "\n".join(lines)


def _committer_sections(results: dict[str, Any], add: Callable[[str], None], sizes: list[str]) -> None:
    def table(title: str, rows: list[tuple[str, list[Any], str]], footer: str = "") -> None:
        add(title)
        head = f"  {'':44}" + "".join(f"{int(n):>12,}" for n in sizes) + "   target"
        add(head)
        for label, values, target in rows:
            add(f"  {label:44}" + "".join(f"{_fmt(v):>12}" for v in values) + (f"   {target}" if target else ""))
        if footer:
            add(footer)
        add("")

    repo = lambda key: [_get(results, "repos", n, key) for n in sizes]  # noqa: E731
    table(
        "Generated repositories (issues/<20 projects>/<KEY>.json, one commit)",
        [
            ("issue file, average bytes", repo("doc_bytes"), ""),
            ("pack size, MB", repo("pack_mb"), ""),
            ("build seconds (– = from cache)", repo("build_s"), ""),
        ],
    )
    js = lambda key: [_get(results, "committer", n, "jsync", key) for n in sizes]  # noqa: E731
    cli = lambda key: [_get(results, "committer", n, "git_cli", key) for n in sizes]  # noqa: E731
    first = results["committer"].get(sizes[0], {}).get("jsync") or {}
    growth = next(t for t in results["targets"] if t["name"].startswith("committer per-event growth"))
    table(
        f"1. Committer, against git http-backend (medians of {first.get('events', '?')} events in batches of 10, "
        f"after {first.get('warmup_events', '?')} warm-up)",
        [
            ("JSync commit work per event, ms", js("commit_ms_per_event"), "≤ 1 ms at 100k"),
            ("  worst batch, ms per event", js("commit_ms_per_event_max"), ""),
            ("JSync push per batch of 10, ms", js("push_ms_per_batch"), ""),
            ("  client CPU per push, ms", js("push_cpu_ms"), ""),
            ("JSync per event incl. its share of push, ms", js("ms_per_event_incl_push"), ""),
            ("JSync peak RSS (incl. first fetch), MB", js("peak_rss_mb"), ""),
            ("JSync first fetch, s", js("first_fetch_s"), ""),
            ("git CLI clone+edit+commit+push per event, s", cli("s_per_event"), ""),
            ("  of which clone, s", cli("clone_s"), ""),
            ("  of which add+commit+push, s", cli("add_commit_push_s"), ""),
            ("git CLI / JSync per event, ×", [_get(results, "committer", n, "ratio") for n in sizes], "≥ 100× at 10k"),
        ],  # fmt: skip
        f"  commit work per event, 100k / 1k files: {_fmt(growth['figure'])}×   target ≤ 2: {_verdict(growth['met'])}",
    )
    cold = lambda key: [_get(results, "cold_start", n, key) for n in sizes]  # noqa: E731
    table(
        "2. Committer cold start (fresh process, empty cache dir, GitStore + fetch(); the remote is the one the "
        "committer just pushed its batches to, so the server reads some loose objects)",
        [
            ("GitStore + fetch, s", cold("seconds"), "≤ 1 s at 100k"),
            ("peak RSS, MB", cold("peak_rss_mb"), "≤ 64 MB at 100k"),
            ("whole process incl. interpreter + imports, s", cold("process_wall_s"), ""),
            ("objects fetched", cold("objects"), ""),
            ("cache on disk, MB", cold("cache_mb"), ""),
        ],
    )


def _e2e_sections(results: dict[str, Any], add: Callable[[str], None]) -> None:
    e2e = results.get("e2e") or {}
    lat = e2e.get("latency") or {}
    add(
        f"3. End to end through the local stack (python -m local; remote: {e2e.get('remote', '?')}, "
        f"seeded with {_fmt(e2e.get('seed_files'))} files)"
    )
    if e2e.get("error"):
        add(f"  ERROR: {e2e['error']}")
    add(f"  stack start until healthy: {_fmt(e2e.get('stack_startup_s'))} s")
    add(
        f"  after {_fmt(lat.get('warmup_events'))} warm-up events, at {_fmt(lat.get('rate'))} ev/s for "
        f"{_fmt(lat.get('seconds'))} s: sent {_fmt(lat.get('sent'))}, "
        f"accepted {_fmt(lat.get('accepted'))}, in S3 {_fmt(lat.get('in_s3'))}, in git {_fmt(lat.get('in_git'))}"
    )
    add(f"  {'':30}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}   target")
    for label, key, target in (
        ("202 -> snapshot in S3", "to_s3", ""),
        ("202 -> commit on the remote", "to_git", "p95 ≤ 1000 ms"),
    ):
        s = lat.get(key) or {}
        add(
            f"  {label:30}"
            + "".join(f"{_fmt(s.get(p)):>10}" for p in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
            + f"   {target}"
        )
    add(
        f"  queued when sending stopped (events / commits queue): {_queued(lat)}; "
        f"all in S3 and git {_fmt(lat.get('drain_s'))} s later"
    )
    add(
        "  (S3: the snapshot's capture.captured_at, so nothing polls the stack while it works; git: the remote's "
        f"branch read every {_fmt(lat.get('git_poll_ms'))} ms)"
    )
    sus = e2e.get("sustained") or {}
    add(f"  rate steps, {_fmt(sus.get('seconds_per_step'))} s each, drain limit {_fmt(sus.get('drain_limit_s'))} s")
    add(f"    {'ev/s':>6}  {'result':7}{'offered':>9}{'sent':>7}{'lost':>6}{'drain s':>9}{'backlog max':>13}"
        f"{'->git p95 ms':>14}{'queued at end (events/commits)':>32}")  # fmt: skip
    for step in sus.get("steps", []):
        lost = step["lost_s3"] + step["lost_git"] + step["sent"] - step["accepted"]
        add(
            f"    {_fmt(step['rate']):>6}  {'held' if step['sustained'] else 'FAILED':7}"
            f"{_fmt(step['achieved_rate']):>9}{step['sent']:>7}{lost:>6}{_fmt(step['drain_s']):>9}"
            f"{step['backlog_max']:>13}{_fmt(step['to_git']['p95_ms']):>14}{_queued(step):>32}"
            + (f"   ({step['why_not']})" if step["why_not"] else "")
        )
    add(f"  highest sustained rate: {_fmt(sus.get('highest_sustained'))} ev/s   target ≥ 200 ev/s")
    add("")
    ack = lat.get("ack") or {}
    api = e2e.get("api") or {}
    imp = e2e.get("ingest_import") or {}
    add("4. Ingest and API")
    add(
        f"  POST /webhook -> 202 (at {_fmt(lat.get('rate'))} ev/s): p50 {_fmt(ack.get('p50_ms'))} ms, "
        f"p99 {_fmt(ack.get('p99_ms'))} ms"
    )
    add(
        f"  functions.ingest import: {_fmt(imp.get('importtime_cumulative_ms'))} ms (-X importtime cumulative), "
        f"{_fmt(imp.get('fresh_import_wall_ms'))} ms (fresh interpreter, over `python -c pass`)"
    )
    add(
        f"  GET /api/v1/issues/{{key}} over uvicorn: p50 {_fmt(api.get('p50_ms'))} ms, p95 {_fmt(api.get('p95_ms'))}"
        f" ms ({_fmt(api.get('count'))} requests, statuses {api.get('statuses')})"
    )
    add("")


_REQUEST_ROWS = (
    ("search", f"search (updated since, {SEARCH_PAGE} a page)"),
    ("census", "census (ids-only search, 5,000 a page)"),
    ("approximate_count", "approximate-count"),
    ("bulk_changelog", f"bulk changelog (a page's issues a call, {SEARCH_PAGE})"),
    ("issue", "issue GET"),
    ("changelog", "changelog GET"),
    ("lookup", "lookups (status, priority, user...)"),
)


def _reconcile_section(rc: dict[str, Any], add: Callable[[str], None]) -> None:
    plan = rc.get("plan") or {}
    jobs = [rc.get(name) or {} for name in ("backfill", "catchup", "idle")]
    backfill, catchup, _ = jobs
    add(
        "5. Reconcile from Jira's REST API (issue 7): fake Jira (tests/fakejira.py) on loopback, moto in its own "
        "process, a bare git remote; the real reconcile, writer and committer handlers, one poller each"
    )
    add(
        f"  site: {_fmt(plan.get('issues'))} issues in {len(plan.get('projects') or [])} projects, "
        f"{_fmt(rc.get('histories'))} changelog entries (0-{_fmt(plan.get('max_changes'))} an issue); backfill with "
        f"nothing captured, catch-up after {_fmt(plan.get('catchup_changes'))} new changes, idle re-run with none"
    )
    add(f"  {'':44}{'backfill':>12}{'per issue':>12}{'catch-up':>12}{'idle':>12}")

    def row(label: str, values: list[Any], per_issue: Any = "") -> None:
        cells = [_fmt(values[0]), "" if per_issue == "" else _fmt(per_issue), *(_fmt(v) for v in values[1:])]
        add(f"  {label:44}" + "".join(f"{c:>12}" for c in cells))

    get = lambda key: [job.get(key) for job in jobs]  # noqa: E731
    row("issues scanned", get("issues_scanned"))
    row("changes fed", get("changes_fed"))
    calls = lambda phase, service, what="seconds": [_get(j, phase, service, what) for j in jobs]  # noqa: E731
    row("reconcile alone (until the job says done), s", get("reconcile_s"))
    row("  in Jira requests (client side), s", calls("reconcile_calls", "jira"))
    row("    of which the fake Jira answering, s", get("fake_jira_serving_s"))
    row("  in S3 calls (to moto), s", calls("reconcile_calls", "s3"))
    row("  in SQS calls (to moto), s", calls("reconcile_calls", "sqs"))
    row("    of which SendMessage, s", calls("reconcile_calls", "sqs.SendMessage"))
    row("  the rest: JSync's own work, s", get("reconcile_own_s"))
    row("  issues/s", get("reconcile_issues_per_s"))
    row("  changes/s", get("reconcile_changes_per_s"))
    row(
        "  S3 / SQS calls",
        [
            _pair(*pair)
            for pair in zip(
                calls("reconcile_calls", "s3", "calls"), calls("reconcile_calls", "sqs", "calls"), strict=True
            )
        ],
    )
    row("then writer + committer until queues drain, s", get("drain_s"))
    row("  in the writer / committer poller, s", [_pair(job.get("writer_s"), job.get("committer_s")) for job in jobs])
    row(
        "  in S3 / SQS calls (to moto), s",
        [_pair(*pair) for pair in zip(calls("drain_calls", "s3"), calls("drain_calls", "sqs"), strict=True)],
    )
    row("    of which SQS ReceiveMessage, s", calls("drain_calls", "sqs.ReceiveMessage"))
    row("end to end (reconcile, then drained), s", get("end_to_end_s"))
    row("  issues/s", get("end_to_end_issues_per_s"))
    row("  changes/s", get("end_to_end_changes_per_s"))
    row("commits on the remote", get("commits"))
    add("  Jira requests")
    per_issue = backfill.get("requests_per_issue") or {}
    for key, label in _REQUEST_ROWS:
        row(f"  {label}", [_get(job, "requests", key) for job in jobs], per_issue.get(key))
    row("  total", [_get(job, "requests", "total") for job in jobs], per_issue.get("total"))
    row("  answered other than 200", [_get(job, "requests", "not_200") for job in jobs])
    add(
        f"  backfill fed {_fmt(backfill.get('changes_fed'))} of {_fmt(backfill.get('changes_expected'))} expected "
        f"(each issue's creation and changelog entries), state {backfill.get('state', '?')}; catch-up fed "
        f"{_fmt(catchup.get('changes_fed'))} for {_fmt(catchup.get('changes_added'))} added "
        f"({_fmt(catchup.get('commits'))} commits); the idle run re-reads what changed within the 30-minute "
        "lookback before the previous job"
    )
    add("")


def _pair(first: Any, second: Any) -> str:
    return f"{_fmt(first, 1)} / {_fmt(second, 1)}" if first is not None else "–"
