"""The machine, the issue's targets, and the printed table."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable
from typing import Any

from pipeline.reconcile.phases import SEARCH_PAGE


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
    model = first("/proc/cpuinfo", "model name")
    if model and first("/proc/cpuinfo", "cpu MHz"):
        model = f"{model}, {first('/proc/cpuinfo', 'cpu MHz')} MHz"
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": model or platform.processor() or platform.machine(),
        "memory_gb": round(int(mem_kb.split()[0]) / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dulwich": ".".join(str(p) for p in dulwich.__version__),
        "dulwich_extensions": rust,
        "git": git.removeprefix("git version "),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "code": _code_version(),
    }


def _code_version() -> str | None:
    """The commit measured, and which files outside bench/ and tests/ differed from it (work in progress)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    changed = sorted(line[3:] for line in status if not line[3:].startswith(("bench/", "tests/")))
    return head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "") if head else None


def _get(data: Any, *path: Any) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _e2e(results: dict[str, Any], backend: str = "embedded") -> dict[str, Any]:
    """One backend's end-to-end figures (the default backend's for issue 6's targets)."""
    return (results.get("e2e") or {}).get(backend) or {}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 6's targets, each with the figure it is judged on (None when that figure was not measured); the
    end-to-end ones on the default backend (embedded)."""
    big, small, mid = "100000", "1000", "10000"
    commit = lambda n: _get(results, "committer", n, "jsync", "commit_ms_per_event")  # noqa: E731
    growth = commit(big) / commit(small) if commit(big) and commit(small) else None
    e2e = _e2e(results)
    e2e_p95 = _get(e2e, "latency", "to_git", "p95_ms")
    e2e_complete = _get(e2e, "latency", "in_git") == _get(e2e, "latency", "sent")
    sustained = _get(e2e, "sustained", "highest_sustained")
    rate = _get(e2e, "latency", "rate")
    rows = [
        ("committer work per event at 100k files", commit(big), "ms", "≤ 1 ms", lambda v: v <= 1),
        ("committer per-event growth 100k / 1k files", growth, "×", "≤ 2", lambda v: v <= 2),
        ("faster than clone per event, at 10k files", _get(results, "committer", mid, "ratio"), "×", "≥ 100×",
         lambda v: v >= 100),
        ("cold start at 100k files (GitStore + fetch)", _get(results, "cold_start", big, "seconds"), "s", "≤ 1 s",
         lambda v: v <= 1),
        ("cold start peak RSS at 100k files", _get(results, "cold_start", big, "peak_rss_mb"), "MB", "≤ 64 MB",
         lambda v: v <= 64),
        (f"webhook -> commit p95 at {_fmt(rate)} ev/s (embedded)", e2e_p95, "ms", "≤ 1000 ms, none lost",
         lambda v: v <= 1000 and e2e_complete),
        ("highest rate sustained, nothing lost (embedded)", sustained, "ev/s", "≥ 200 ev/s", lambda v: v >= 200),
    ]  # fmt: skip
    if sustained is None and _get(e2e, "sustained", "steps"):
        rows[-1] = (rows[-1][0], 0.0, "ev/s", "≥ 200 ev/s", lambda v: v >= 200)
    return [
        {"name": name, "figure": value, "unit": unit, "target": target, "met": None if value is None else check(value)}
        for name, value, unit, target, check in rows
    ]


def issue12(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 12's figures for every backend measured, each judged against the target set for `embedded`."""
    backends = results.get("backends") or ["embedded", "aws"]

    def sustained(e2e: dict[str, Any]) -> Any:
        best = _get(e2e, "sustained", "highest_sustained")
        return 0.0 if best is None and _get(e2e, "sustained", "steps") else best

    def commit_p95(e2e: dict[str, Any]) -> Any:
        lat = e2e.get("latency") or {}
        return lat.get("to_git", {}).get("p95_ms") if lat.get("in_git") == lat.get("sent") else None

    def kill(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda e2e: _get(e2e, "kill", key) if _get(e2e, "kill", "drain_s") is not None else None

    first = next((_e2e(results, b) for b in backends if _e2e(results, b).get("plan")), {})
    plan = first.get("plan") or {}
    kills = _get(first, "kill", "plan") or {}
    load = f"{_fmt(plan.get('latency_rate'))} ev/s + {_fmt(plan.get('readers'))} API readers"
    bulk = f"bulk edit: last 202 -> all {_fmt(plan.get('bulk_events'))} in git"
    kill_run = f"kill -9 ×{_fmt(kills.get('kills'))} in {_fmt(kills.get('events'))} events"
    rows: list[tuple[str, Callable[[dict[str, Any]], Any], str, str, Callable[[float], bool]]] = [
        ("highest webhook rate sustained, nothing lost", sustained, "ev/s", "≥ 300", lambda v: v >= 300),
        (f"webhook 202 -> commit p95, {load}", commit_p95, "ms", "≤ 150", lambda v: v <= 150),
        ("GET /api/v1/issues/{key} p95 under that load", lambda e: _get(e, "latency", "api_under_load", "p95_ms"),
         "ms", "≤ 20", lambda v: v <= 20),
        (bulk, lambda e: _get(e, "bulk", "last_ack_to_all_in_git_s"), "s",
         "≤ 10", lambda v: v <= 10),
        (f"{kill_run}: lost", kill("lost"), "", "0", lambda v: v == 0),
        (f"{kill_run}: committed twice", kill("doubled_git"), "", "0", lambda v: v == 0),
    ]  # fmt: skip
    out = []
    for name, get, unit, target, check in rows:
        figures = {b: get(_e2e(results, b)) for b in backends}
        out.append(_row12(name, figures, unit, target, check))
    backfill = {b: _get(results, "reconcile", b, "backfill", "end_to_end_s") for b in backends}
    out.insert(4, _row12("reconcile backfill, end to end", backfill, "s", "≤ 30", lambda v: v <= 30))
    return out


def _row12(
    name: str, figures: dict[str, Any], unit: str, target: str, check: Callable[[float], bool]
) -> dict[str, Any]:
    return {
        "name": name,
        "unit": unit,
        "target": target,
        "figures": figures,
        "met": {b: None if v is None else check(v) for b, v in figures.items()},
    }


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
    if m.get("code"):
        add(f"Code: {m['code']}")
    load, load_end = m.get("loadavg"), results.get("loadavg_at_end")
    if load:
        add(
            f"Load average (1, 5, 15 min) at the start: {', '.join(f'{x:.2f}' for x in load)}"
            + (f"; at the end: {', '.join(f'{x:.2f}' for x in load_end)}" if load_end else "")
            + " (above ~0.5 at the start: something else was running; timings are then pessimistic)"
        )
    if results.get("remote"):
        add(f"Git remote: {results['remote']}")
    add("")
    sections = results.get("sections") or ["committer", "e2e", "reconcile"]
    backends = results.get("backends") or ["embedded", "aws"]
    if "committer" in sections:
        _committer_sections(results, add, sizes)
    if "e2e" in sections:
        for backend in backends:
            _e2e_section(backend, _e2e(results, backend), add)
        _ingest_api_section(results, backends, add)
    if "reconcile" in sections:
        for backend in backends:
            _reconcile_section(backend, (results.get("reconcile") or {}).get(backend) or {}, add)
    if results.get("batches"):
        _batches_section(results["batches"], add)
    if results.get("attachments"):
        from bench.attachments import render as render_attachments

        add("Attachment copies (issue 15): " + render_attachments(results["attachments"]))
        add("")
    if results.get("writes"):
        from bench.writes import render as render_writes

        add("Object-store calls per webhook (issue 13): " + render_writes(results["writes"]))
        add("")
    if results.get("issue12"):
        add(
            "Issue 12: the local stack on each backend (targets set for embedded); figures only, never a pass/fail exit"
        )
        add(f"  {'':52}" + "".join(f"{b:>16}" for b in backends) + f"{'target':>9}")
        for row in results["issue12"]:
            cells = "".join(f"{_fmt(row['figures'].get(b)) + ' ' + _mark(row['met'].get(b)):>16}" for b in backends)
            add(f"  {row['name'] + (', ' + row['unit'] if row['unit'] else ''):52}{cells}{row['target']:>9}")
        add("  (+ met, - NOT met, ? not measured)")
        if "aws" in backends and not results.get("aws_full") and results.get("mode") == "full":
            aws = _e2e(results, "aws")
            bulk, kill = _fmt(_get(aws, "plan", "bulk_events")), _fmt(_get(aws, "kill", "plan", "events"))
            site = _fmt(_get(results, "reconcile", "aws", "plan", "issues"))
            add(
                f"  aws ran fewer events (moto takes a few seconds for each ten): {bulk} in the bulk edit, {kill} in "
                f"the kill -9 run, a {site}-issue site for reconcile; `--aws-full` runs the full counts"
            )
        add("")
    if results.get("targets"):
        add("Targets (issue 6); figures only, never a pass/fail exit")
        for t in results["targets"]:
            add(f"  {t['name']:50}{_fmt(t['figure']):>10} {t['unit']:5} {t['target']:22} {_verdict(t['met'])}")
    if results.get("errors"):
        add("")
        add("Errors")
        for where, error in results["errors"].items():
            add(f"  {where}: {error}")
    return "\n".join(lines)


def _mark(met: bool | None) -> str:
    return "?" if met is None else ("+" if met else "-")


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


def _e2e_section(backend: str, e2e: dict[str, Any], add: Callable[[str], None]) -> None:
    lat = e2e.get("latency") or {}
    add(
        f"3. End to end through the local stack on {backend} ({e2e.get('backend_detail', '?')}; python -m local; "
        f"remote: {e2e.get('remote', '?')}, seeded with {_fmt(e2e.get('seed_files'))} files)"
    )
    if e2e.get("error"):
        add(f"  ERROR: {e2e['error']}")
    add(f"  stack start until healthy: {_fmt(e2e.get('stack_startup_s'))} s")
    api = lat.get("api_under_load") or {}
    add(
        f"  after {_fmt(lat.get('warmup_events'))} warm-up events, at {_fmt(lat.get('rate'))} ev/s for "
        f"{_fmt(lat.get('seconds'))} s while {_fmt(api.get('clients'))} clients GET /api/v1/issues/{{key}} every "
        f"{_fmt(api.get('interval_ms'))} ms: sent {_fmt(lat.get('sent'))}, accepted {_fmt(lat.get('accepted'))}, "
        f"in the store {_fmt(lat.get('in_store'))}, in git {_fmt(lat.get('in_git'))}"
    )
    add(f"  {'':34}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}   target (issue 12, embedded)")
    for label, data, target in (
        ("202 -> snapshot in the store", lat.get("to_store"), ""),
        ("202 -> commit on the remote", lat.get("to_git"), "p95 ≤ 150 ms"),
        ("GET /api/v1/issues/{key} meanwhile", api, "p95 ≤ 20 ms"),
    ):
        s = data or {}
        add(
            f"  {label:34}"
            + "".join(f"{_fmt(s.get(p)):>10}" for p in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
            + f"   {target}"
        )
    add(
        f"  queued when sending stopped (events / commits queue): {_queued(lat)}; "
        f"all in the store and git {_fmt(lat.get('drain_s'))} s later; API statuses {api.get('statuses')}"
    )
    add(
        "  (store: the snapshot's capture.captured_at, so nothing polls the stack while it works; git: the remote's "
        f"branch read every {_fmt(lat.get('git_poll_ms'))} ms)"
    )
    bulk = e2e.get("bulk") or {}
    add(
        f"  bulk edit: {_fmt(bulk.get('events'))} webhooks from {_fmt(bulk.get('senders'))} concurrent senders, "
        f"accepted {_fmt(bulk.get('accepted'))} in {_fmt(bulk.get('send_s'))} s ({_fmt(bulk.get('ingest_rate'))}/s, "
        f"202 p95 {_fmt(_get(bulk, 'ack', 'p95_ms'))} ms); queued at the last 202: {_queued_at(bulk)}"
    )
    add(
        f"    last 202 -> all in git: {_fmt(bulk.get('last_ack_to_all_in_git_s'))} s (target ≤ 10 s); in git "
        f"{_fmt(bulk.get('in_git'))}, in the store {_fmt(bulk.get('in_store'))}"
    )
    sus = e2e.get("sustained") or {}
    add(f"  rate steps, {_fmt(sus.get('seconds_per_step'))} s each, drain limit {_fmt(sus.get('drain_limit_s'))} s")
    add(f"    {'ev/s':>6}  {'result':7}{'offered':>9}{'sent':>7}{'lost':>6}{'drain s':>9}{'backlog max':>13}"
        f"{'->git p95 ms':>14}{'queued at end (events/commits)':>32}")  # fmt: skip
    for step in sus.get("steps", []):
        lost = step["lost_store"] + step["lost_git"] + step["sent"] - step["accepted"]
        add(
            f"    {_fmt(step['rate']):>6}  {'held' if step['sustained'] else 'FAILED':7}"
            f"{_fmt(step['achieved_rate']):>9}{step['sent']:>7}{lost:>6}{_fmt(step['drain_s']):>9}"
            f"{step['backlog_max']:>13}{_fmt(step['to_git']['p95_ms']):>14}{_queued(step):>32}"
            + (f"   ({step['why_not']})" if step["why_not"] else "")
        )
    add(f"  highest sustained rate: {_fmt(sus.get('highest_sustained'))} ev/s   target ≥ 300 ev/s")
    kill = e2e.get("kill") or {}
    if kill:
        plan = kill.get("plan") or {}
        add(
            f"  kill -9 of the process group ×{_fmt(kill.get('kills'))} during a {_fmt(plan.get('events'))}-event run "
            f"({_fmt(plan.get('issues'))} issues, versions in order, {_fmt(plan.get('rate'))} ev/s while up, killed "
            f"{_fmt((plan.get('up_s') or [None])[0])}-{_fmt((plan.get('up_s') or [None, None])[1])} s after each start)"
        )
        if kill.get("error"):
            add(f"    ERROR: {kill['error']}")
        add(
            f"    accepted {_fmt(kill.get('accepted'))}, attempts without an answer (sent again) "
            f"{_fmt(kill.get('unanswered_resent'))} (503: {_fmt(kill.get('busy_503_resent'))}, other "
            f"{kill.get('refused')}); restart until healthy: median {_fmt(_get(kill, 'restart_s', 'median'))} s, "
            f"max {_fmt(_get(kill, 'restart_s', 'max'))} s"
        )
        add(
            f"    drained {_fmt(kill.get('drain_s'))} s after the last delivery; lost {_fmt(kill.get('lost'))} "
            f"(snapshots {_fmt(kill.get('lost_store'))}, git {_fmt(kill.get('lost_git'))}), committed twice "
            f"{_fmt(kill.get('doubled_git'))}   target 0 and 0; {_fmt(kill.get('commits'))} commits, "
            f"{_fmt(kill.get('committed_without_a_202_seen'))} committed whose 202 never arrived"
        )
    add("")


def _queued_at(data: dict[str, Any]) -> str:
    depths = data.get("queues_at_last_ack") or {}
    return f"{_fmt(depths.get('events'))} / {_fmt(depths.get('commits'))}"


def _ingest_api_section(results: dict[str, Any], backends: list[str], add: Callable[[str], None]) -> None:
    imp = results.get("ingest_import") or {}
    add("4. Ingest and API")
    for backend in backends:
        e2e = _e2e(results, backend)
        lat = e2e.get("latency") or {}
        ack = lat.get("ack") or {}
        api = e2e.get("api") or {}
        add(
            f"  {backend}: POST /webhook -> 202 (at {_fmt(lat.get('rate'))} ev/s): p50 {_fmt(ack.get('p50_ms'))} ms, "
            f"p99 {_fmt(ack.get('p99_ms'))} ms; GET /api/v1/issues/{{key}} alone over uvicorn: p50 "
            f"{_fmt(api.get('p50_ms'))} ms, p95 {_fmt(api.get('p95_ms'))} ms ({_fmt(api.get('count'))} requests, "
            f"statuses {api.get('statuses')})"
        )
    add(
        f"  functions.ingest import: {_fmt(imp.get('importtime_cumulative_ms'))} ms (-X importtime cumulative), "
        f"{_fmt(imp.get('fresh_import_wall_ms'))} ms (fresh interpreter, over `python -c pass`)"
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


def _reconcile_section(backend: str, rc: dict[str, Any], add: Callable[[str], None]) -> None:
    plan = rc.get("plan") or {}
    jobs = [rc.get(name) or {} for name in ("backfill", "catchup", "idle")]
    backfill, catchup, _ = jobs
    where = "SQLite in this process" if backend == "embedded" else "moto in its own process"
    add(
        f"5. Reconcile from Jira's REST API (issue 7) on {backend} ({where}): fake Jira (tests/fakejira.py) on "
        "loopback, a bare git remote; the real reconcile, writer and committer handlers, one poller each"
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
    row("  in object store calls, s", calls("reconcile_calls", "objects"))
    row("  in queue calls, s", calls("reconcile_calls", "queues"))
    row("    of which send, s", calls("reconcile_calls", "queues.send"))
    row("  the rest: JSync's own work, s", get("reconcile_own_s"))
    row("  issues/s", get("reconcile_issues_per_s"))
    row("  changes/s", get("reconcile_changes_per_s"))
    row(
        "  object store / queue calls",
        [
            _pair(*pair)
            for pair in zip(
                calls("reconcile_calls", "objects", "calls"), calls("reconcile_calls", "queues", "calls"), strict=True
            )
        ],
    )
    row("then writer + committer until queues drain, s", get("drain_s"))
    row("  in the writer / committer poller, s", [_pair(job.get("writer_s"), job.get("committer_s")) for job in jobs])
    row(
        "  in object store / queue calls, s",
        [_pair(*pair) for pair in zip(calls("drain_calls", "objects"), calls("drain_calls", "queues"), strict=True)],
    )
    row("    of which queue receive, s", calls("drain_calls", "queues.receive"))
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


def _batches_section(b: dict[str, Any], add: Callable[[str], None]) -> None:
    """Issue 13: one push per 10 changes beside large batches, against a remote that takes `push_delay_s` a push."""
    today, large = b.get("burst_today") or {}, b.get("burst_large") or {}
    p_today, p_large = b.get("paced_today") or {}, b.get("paced_large") or {}
    add(
        f"Large commit batches (issue 13): a {_fmt(b.get('files'))}-file repository over smart HTTP, "
        f"{_fmt(b.get('push_delay_s'))} s added to every push"
    )
    add(f"  {'':58}{'one push per 10':>18}{'large batches':>16}")
    rows = [
        ("burst: changes queued at once", today.get("changes"), large.get("changes")),
        ("burst: seconds until all on the remote", today.get("seconds"), large.get("seconds")),
        ("burst: pushes", today.get("pushes"), large.get("pushes")),
        ("burst: changes per second", today.get("changes_per_s"), large.get("changes_per_s")),
        ("burst: commits on the remote", today.get("commits_on_remote"), large.get("commits_on_remote")),
        ("paced: changes offered per second", p_today.get("offered_per_s"), p_large.get("offered_per_s")),
        ("paced: changes taken per second", p_today.get("taken_per_s"), p_large.get("taken_per_s")),
        (
            "paced: queued to pushed p50, s",
            p_today.get("queued_to_pushed_p50_s"),
            p_large.get("queued_to_pushed_p50_s"),
        ),
        (
            "paced: queued to pushed p95, s",
            p_today.get("queued_to_pushed_p95_s"),
            p_large.get("queued_to_pushed_p95_s"),
        ),
    ]
    for name, first, second in rows:
        add(f"  {name:58}{_fmt(first):>18}{_fmt(second):>16}")
    projected = b.get("burst_today_projected_s")
    if projected:
        add(f"  one push per 10 at its measured rate would take {_fmt(projected)} s for {_fmt(large.get('changes'))}")
    add("")
