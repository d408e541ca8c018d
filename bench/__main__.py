"""`python -m bench [--sizes 1000,10000,100000] [--quick]`: every benchmark of issue 6, one table, JSON beside it.

Bounded in count and time, loopback only: a local git http-backend serves generated repositories from tmpfs, the
committer and the local stack push to it with a token. Figures only: the exit status says whether the benchmarks
ran, never whether a target was met.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import committer, endtoend, repos
from bench.gitserver import GitServerProcess, copy_repo
from bench.report import machine, render, targets
from pipeline.gitstore import redact

DEFAULT_SIZES = (1000, 10_000, 100_000)
QUICK_SIZES = (200,)
CLI_MAX_FILES = 10_000  # the git-CLI-per-event plan takes seconds per event beyond this


@dataclass(frozen=True)
class Plan:
    events: int  # measured committer events per size (after warm-up)
    warmup_batches: int
    cli_events: int
    cold_runs: int


FULL = Plan(events=100, warmup_batches=2, cli_events=5, cold_runs=3)
QUICK = Plan(events=20, warmup_batches=1, cli_events=2, cold_runs=1)


def scratch_root() -> Path:
    """tmpfs where there is one (remotes and the git CLI's clones live there), else the temp dir."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and shm.stat().st_mode & 0o002 else Path(tempfile.gettempdir())


def log(started: float, text: str) -> None:
    print(f"[{time.perf_counter() - started:6.1f}s] {text}", file=sys.stderr, flush=True)


def run(sizes: list[int], quick: bool) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    started = time.perf_counter()
    token = secrets.token_hex(16)
    served = Path(tempfile.mkdtemp(prefix="jsync-bench-remotes-", dir=scratch_root()))
    local = Path(tempfile.mkdtemp(prefix="jsync-bench-"))
    server = GitServerProcess(served, token)
    results: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "sizes": sizes,
        "plan": plan.__dict__,
        "paths": {"remotes": str(scratch_root()), "client_caches": tempfile.gettempdir(), "repo_cache": ""},
        "repos": {},
        "committer": {},
        "cold_start": {},
        "e2e": {},
        "errors": {},
    }
    results["paths"]["repo_cache"] = str(repos.cache_root())
    try:
        server.start()
        results["remote"] = (
            f"git http-backend at {redact(server.url('<repo>.git', with_token=True))} (Basic auth, token), "
            f"served from {scratch_root()}"
        )
        log(started, f"git server: {results['remote']}")
        for n in sizes:
            _one_size(results, n, plan, server, served, local, started)
        log(started, "end to end through the local stack")
        seed = min(sizes)
        seed_repo, _ = repos.cached_repo(seed)
        e2e_remote = copy_repo(seed_repo, served / "e2e.git")
        try:
            results["e2e"] = endtoend.run(local / "e2e", e2e_remote, server.url("e2e.git"), token, seed, quick=quick)
        except Exception as exc:
            results["errors"]["e2e"] = _error(exc)
        if results["e2e"].get("error"):
            results["errors"]["e2e"] = results["e2e"]["error"]
    finally:
        server.stop()
        shutil.rmtree(served, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)
    results["runtime_s"] = time.perf_counter() - started
    results["targets"] = targets(results)
    return results


def _one_size(
    results: dict[str, Any], n: int, plan: Plan, server: GitServerProcess, served: Path, local: Path, started: float
) -> None:
    key = str(n)
    log(started, f"{n:,} files: repository")
    try:
        source, build_s = repos.cached_repo(n)
    except Exception as exc:
        results["errors"][f"repo {n}"] = _error(exc)
        return
    pack = sum(f.stat().st_size for f in (source / "objects").rglob("*") if f.is_file())
    results["repos"][key] = {
        "path": str(source),
        "build_s": build_s,
        "pack_mb": pack / 1e6,
        "doc_bytes": _average_doc_bytes(n),
    }
    entry: dict[str, Any] = {}
    results["committer"][key] = entry
    name = f"jsync-{n}.git"
    copy_repo(source, served / name)
    try:
        log(started, f"{n:,} files: JSync committer, {plan.events} events")
        entry["jsync"] = committer.jsync(
            server.url(name), server.token, n, plan.events, plan.warmup_batches, local / f"cache-{n}.git"
        )
        log(started, f"{n:,} files: cold start")
        results["cold_start"][key] = committer.cold_start(
            server.url(name), server.token, local / f"cold-{n}.git", plan.cold_runs
        )
    except Exception as exc:
        results["errors"][f"jsync {n}"] = _error(exc)
    finally:
        shutil.rmtree(served / name, ignore_errors=True)
    if n > CLI_MAX_FILES:
        return
    name = f"cli-{n}.git"
    copy_repo(source, served / name)
    work = served / f"work-{n}"
    work.mkdir()
    try:
        log(started, f"{n:,} files: git CLI clone per event, {plan.cli_events} events")
        entry["git_cli"] = committer.git_cli(server.url(name, with_token=True), n, plan.cli_events, work)
        per_event_ms = _get_ms(entry)
        if per_event_ms:
            entry["ratio"] = entry["git_cli"]["s_per_event"] * 1000 / per_event_ms
    except Exception as exc:
        results["errors"][f"git cli {n}"] = _error(exc)
    finally:
        shutil.rmtree(served / name, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _average_doc_bytes(n: int) -> int:
    sample = range(0, n, max(1, n // 200))
    return round(sum(repos.doc_size(i) for i in sample) / len(sample))


def _get_ms(entry: dict[str, Any]) -> float | None:
    jsync = entry.get("jsync") or {}
    value = jsync.get("ms_per_event_incl_push")
    return float(value) if value else None


def _error(exc: BaseException) -> str:
    traceback.print_exc(file=sys.stderr)
    return redact(f"{type(exc).__name__}: {exc}")[:2000]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", help="comma-separated repository sizes (files), default 1000,10000,100000")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few events, short runs (under a minute)")
    parser.add_argument(
        "--out", type=Path, help="where to write the JSON (default bench/results.json; --quick: the temp dir)"
    )
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    else:
        sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if not sizes or min(sizes) < 10:
        parser.error("sizes must be at least 10 files")
    quick_out = Path(tempfile.gettempdir()) / "jsync-bench-quick.json"
    out = args.out or (quick_out if args.quick else Path(__file__).resolve().parent / "results.json")
    results = run(sizes, args.quick)
    print(render(results), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nFigures written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
