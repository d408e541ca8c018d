"""`python -m bench [--sizes 1000,10000,100000] [--quick] [--only SECTION,...] [--backends embedded,aws]`: every
benchmark of issues 6, 7, 12, 13 and 15, one table, JSON beside it.

Bounded in count and time, loopback only: a local git http-backend serves generated repositories from tmpfs, the
committer and the local stack push to it with a token. The end-to-end and reconcile sections run once per backend,
side by side: `embedded` (SQLite, the default of `make run`) and `aws` (S3 and SQS on a moto server the bench starts
in a process of its own). Figures only: the exit status says whether the benchmarks ran, never whether a target was
met. Reconcile (issue 7) runs against a fake Jira on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import attachments, batches, committer, durability, endtoend, reconcile, repos, writes
from bench.endtoend import BACKENDS
from bench.gitserver import GitServerProcess, copy_repo
from bench.motoserver import MotoServer
from bench.report import issue12, machine, render, targets
from pipeline.git.store import describe_error, redact

DEFAULT_SIZES = (1000, 10_000, 100_000)
QUICK_SIZES = (200,)
CLI_MAX_FILES = 10_000  # the git-CLI-per-event plan takes seconds per event beyond this
# committer: generated repositories, the committer and its cold start; e2e: the local stack end to end, ingest and
# API, kill -9 of its process group (per backend); reconcile: backfill, catch-up and idle re-run against a fake Jira
# (per backend); batches: issue 13's large commit batches against a remote that takes 300 ms a push; writes: object
# store calls per webhook, writer and committer (embedded); attachments: one large attachment copied from a fake Jira
# (issue 15), speed and the copier's peak memory, per backend.
SECTIONS = ("committer", "e2e", "reconcile", "batches", "writes", "attachments")


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


def run(
    sizes: list[int],
    quick: bool,
    sections: tuple[str, ...] = SECTIONS,
    backends: tuple[str, ...] = BACKENDS,
    aws_full: bool = False,
    checkpoint: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, Any]:
    """Every section asked for; `checkpoint` gets the results so far after each section and backend."""
    plan = QUICK if quick else FULL
    started = time.perf_counter()
    token = secrets.token_hex(16)
    served = Path(tempfile.mkdtemp(prefix="jsync-bench-remotes-", dir=scratch_root()))
    local = Path(tempfile.mkdtemp(prefix="jsync-bench-"))
    server = GitServerProcess(served, token)
    results: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "sections": list(sections),
        "backends": list(backends),
        "aws_full": aws_full,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "sizes": sizes,
        "plan": plan.__dict__,
        "paths": {"remotes": str(scratch_root()), "client_caches": tempfile.gettempdir(), "repo_cache": ""},
        "repos": {},
        "committer": {},
        "cold_start": {},
        "e2e": {},
        "reconcile": {},
        "batches": {},
        "writes": {},
        "attachments": {},
        "errors": {},
    }
    results["paths"]["repo_cache"] = str(repos.cache_root())
    try:
        if "committer" in sections or "e2e" in sections:
            server.start()
            results["remote"] = (
                f"git http-backend at {redact(server.url('<repo>.git', with_token=True))} (Basic auth, token), "
                f"served from {scratch_root()}"
            )
            log(started, f"git server: {results['remote']}")
        if "committer" in sections:
            for n in sizes:
                _one_size(results, n, plan, server, served, local, started)
                checkpoint(results)
        if "e2e" in sections:
            seed = min(sizes)
            seed_repo, _ = repos.cached_repo(seed)
            for backend in backends:
                results["e2e"][backend] = _e2e(
                    backend, results, local, served, seed_repo, seed, server, token, quick, aws_full, started
                )
                checkpoint(results)
            log(started, "functions.ingest import time")
            results["ingest_import"] = endtoend.ingest_import(1 if quick else 5)
        if "reconcile" in sections:
            for backend in backends:
                log(started, f"reconcile on {backend}")
                try:
                    results["reconcile"][backend] = reconcile.run(
                        local / f"reconcile-{backend}",
                        quick=quick,
                        backend=backend,
                        log=lambda text: log(started, text),
                        aws_full=aws_full,
                    )
                except Exception as exc:
                    results["errors"][f"reconcile {backend}"] = _error(exc)
                checkpoint(results)
        if "batches" in sections:
            log(started, "large commit batches (issue 13)")
            try:
                results["batches"] = batches.run(
                    token,
                    **(batches.QUICK if quick else batches.FULL),
                    log=lambda text: log(started, text),
                )
            except Exception as exc:
                results["errors"]["batches"] = _error(exc)
            checkpoint(results)
        if "writes" in sections:
            log(started, "object-store calls per webhook (issue 13)")
            try:
                results["writes"] = writes.run(20, 100) if quick else writes.run(200, 2000)
            except Exception as exc:
                results["errors"]["writes"] = _error(exc)
            checkpoint(results)
        if "attachments" in sections:
            log(started, "attachment copies (issue 15)")
            try:
                results["attachments"] = attachments.run(20 if quick else 100, backends)
            except Exception as exc:
                results["errors"]["attachments"] = _error(exc)
            checkpoint(results)
    finally:
        server.stop()
        shutil.rmtree(served, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)
    results["runtime_s"] = time.perf_counter() - started
    results["loadavg_at_end"] = os.getloadavg()
    results["targets"] = targets(results) if {"committer", "e2e"} & set(sections) else []
    results["issue12"] = issue12(results) if {"e2e", "reconcile"} & set(sections) else []
    return results


def _e2e(
    backend: str,
    results: dict[str, Any],
    local: Path,
    served: Path,
    seed_repo: Path,
    seed: int,
    server: GitServerProcess,
    token: str,
    quick: bool,
    aws_full: bool,
    started: float,
) -> dict[str, Any]:
    """Sections 3 and 4 on one backend, then kill -9 of the stack's process group (a fresh home and remote); on
    `aws` against a moto server started for it (reset between the two, so the second starts empty)."""
    moto = MotoServer(log=local / f"moto-e2e-{backend}.log") if backend == "aws" else None
    out: dict[str, Any] = {}
    try:
        if moto:
            moto.start()
        log(started, f"end to end through the local stack on {backend}")
        remote = copy_repo(seed_repo, served / f"e2e-{backend}.git")
        out = endtoend.run(
            local / f"e2e-{backend}",
            backend,
            remote,
            server.url(f"e2e-{backend}.git"),
            token,
            seed,
            quick=quick,
            aws_endpoint=moto.url if moto else None,
            aws_full=aws_full,
        )
        if out.get("error"):
            results["errors"][f"e2e {backend}"] = out["error"]
        # A quick run skips the kill test on aws: after a kill, SQS (moto) hands back what the killed pollers had
        # received only after the 60 s visibility timeout.
        if quick and backend == "aws":
            return out
        if moto:
            moto.reset()
        log(started, f"kill -9 of the stack's process group on {backend}")
        out["kill"] = durability.run(
            local / f"kill-{backend}", backend, quick=quick, aws_endpoint=moto.url if moto else None, aws_full=aws_full
        )
        if out["kill"].get("error"):
            results["errors"][f"kill {backend}"] = out["kill"]["error"]
    except Exception as exc:
        results["errors"][f"e2e {backend}"] = _error(exc)
    finally:
        if moto:
            moto.stop()
    return out


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
    return describe_error(exc)[:2000]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", help="comma-separated repository sizes (files), default 1000,10000,100000")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few events, short runs (under a minute)")
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all of them)",
    )
    parser.add_argument(
        "--backends",
        help=f"comma-separated backends for the e2e and reconcile sections, of {', '.join(BACKENDS)} (default: both)",
    )
    parser.add_argument(
        "--aws-full",
        action="store_true",
        help="the full event counts on aws too (moto takes most of an hour for them; default: a fifth)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the JSON (default bench/results.json; --quick or --only: the temp dir)",
    )
    args = parser.parse_args(argv)
    sections = SECTIONS
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        if not wanted or wanted - set(SECTIONS):
            parser.error(f"--only takes sections of {', '.join(SECTIONS)}, not {args.only!r}")
        sections = tuple(s for s in SECTIONS if s in wanted)
    backends = BACKENDS
    if args.backends:
        chosen = {b.strip() for b in args.backends.split(",") if b.strip()}
        if not chosen or chosen - set(BACKENDS):
            parser.error(f"--backends takes backends of {', '.join(BACKENDS)}, not {args.backends!r}")
        backends = tuple(b for b in BACKENDS if b in chosen)
    if args.sizes:
        sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    else:
        sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if not sizes or min(sizes) < 10:
        parser.error("sizes must be at least 10 files")
    # A quick or partial run never overwrites the full figures in bench/results.json.
    partial = "-".join(sections) if sections != SECTIONS or backends != BACKENDS else ""
    partial += "".join(f"-{b}" for b in backends) if backends != BACKENDS else ""
    scratch_name = "-".join(p for p in ("jsync-bench", "quick" if args.quick else "", partial) if p) + ".json"
    scratch_out = Path(tempfile.gettempdir()) / scratch_name
    full_out = Path(__file__).resolve().parent / "results.json"
    out = args.out or (scratch_out if args.quick or partial else full_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial_out = out.with_name(out.stem + ".partial.json")

    def checkpoint(results: dict[str, Any]) -> None:
        partial_out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    # SIGTERM (a timeout, a Ctrl-C from a supervisor) runs the clean-up: the stacks, moto and the git server stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(sizes, args.quick, sections, backends, args.aws_full, checkpoint)
    print(render(results), flush=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    partial_out.unlink(missing_ok=True)
    print(f"\nFigures written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
