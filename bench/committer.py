"""Committer benchmarks: JSync's commit path (GitStore + commit_batch), the git-CLI-per-event plan, cold start.

The JSync and cold-start measurements run in a fresh child process (`python -m bench.committer MODE SPEC`) so
their CPU time and peak RSS are the committer's alone; the git server runs in its own process too.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gitserver import TOKEN_ENV, git_env
from bench.repos import BASE_TIME_MS, issue_doc, issue_id, issue_key
from pipeline.ids import Order, canonical_json
from pipeline.messages import Change
from pipeline.snapshot import git_path
from pipeline.store import Store, snapshot_key

ROOT = Path(__file__).resolve().parents[1]
BATCH = 10  # what the commits queue hands the committer at most


def changes_for(n: int, count: int, tag: str, seed: int = 0) -> list[Change]:
    """`count` changes against a repository of n issues: 4 in 5 update an existing issue, 1 in 5 creates one."""
    rng = random.Random(n * 7919 + seed)
    updates = iter(rng.sample(range(n), k=min(n, count)))
    created = 0
    out: list[Change] = []
    for k in range(count):
        if k % 5 == 4 or n == 0:
            i, version = n + seed * 100_000 + created, 0
            created += 1
        else:
            i, version = next(updates), 1
        doc = issue_doc(i, version)
        t = BASE_TIME_MS + 86_400_000 + k * 1000
        event_id = f"{tag}-{k}"
        fields = doc["fields"]
        out.append(
            Change(
                issue_id=issue_id(i),
                key=issue_key(i),
                previous_key=None,
                event_id=event_id,
                event_name="jira:issue_created" if version == 0 else "jira:issue_updated",
                order=Order(t, version, event_id),
                actor={"accountId": fields["assignee"]["accountId"], "displayName": fields["assignee"]["displayName"]},
                subject=f"created: {fields['summary']}" if version == 0 else "updated summary, status",
                changes=[] if version == 0 else [{"field": "summary", "from": None, "to": fields["summary"]}],
                deleted=False,
                snapshot_key=snapshot_key(issue_id(i), t, event_id),
                document=doc,
                event_time_ms=t,
            )
        )
    return out


def records_store(path: Path) -> Store:
    """Where the committer keeps its records in a benchmark: an embedded store of its own."""
    from pipeline.backends.embedded import Database, SqliteObjects

    return Store(SqliteObjects(Database(path)))


def _peak_rss_mb() -> float:
    """This process's own peak RSS. ru_maxrss is not: Linux folds in the RSS of the process that exec'd us
    (subprocess uses vfork), so a child of a 75 MB parent reports at least 75 MB. VmHWM is this image's own."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


# --- in the child process ---------------------------------------------------------------------------
def _jsync_child(spec: dict[str, Any]) -> dict[str, Any]:
    from pipeline.git.commits import GitRecords, commit_batch
    from pipeline.git.store import GitStore, remote_tip

    token = os.environ.get(TOKEN_ENV) or None
    n, events, warmup = int(spec["n"]), int(spec["events"]), int(spec["warmup_batches"])
    git = GitStore(spec["remote"], "main", Path(spec["cache"]), token=token)
    started = time.perf_counter()
    git.fetch()
    fetch_s = time.perf_counter() - started
    records = GitRecords(records_store(Path(spec["cache"]).with_suffix(".records.db")))
    pushes: list[tuple[float, float]] = []
    real_push = git.push

    def timed_push() -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            real_push()
        finally:
            pushes.append((time.perf_counter() - wall, time.process_time() - cpu))

    git.push = timed_push  # type: ignore[method-assign]
    changes = changes_for(n, (warmup * BATCH) + events, f"bench-{n}")
    rows: list[dict[str, float]] = []
    committed = 0
    for index in range(0, len(changes), BATCH):
        batch = changes[index : index + BATCH]
        pushes.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        result = commit_batch(batch, git, records, lambda c: c.document)
        total, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
        committed += len(result.commits)
        if index // BATCH < warmup:
            continue
        push_wall, push_cpu = sum(p[0] for p in pushes), sum(p[1] for p in pushes)
        rows.append(
            {
                "events": len(batch),
                "total_s": total,
                "push_s": push_wall,
                "push_cpu_s": push_cpu,
                "stage_s": total - push_wall,
                "stage_cpu_s": total_cpu - push_cpu,
                "pushes": len(pushes),
            }
        )
    remote = remote_tip(spec["remote"], "main", token)
    in_sync = remote is not None and remote == git.tip
    git.close()
    per_event = [r["stage_s"] / r["events"] for r in rows]
    return {
        "files": n,
        "events": sum(int(r["events"]) for r in rows),
        "warmup_events": warmup * BATCH,
        "committed": committed,
        "expected_commits": len(changes),
        "remote_in_sync": in_sync,
        "first_fetch_s": fetch_s,
        "commit_ms_per_event": 1000 * statistics.median(per_event),
        "commit_ms_per_event_max": 1000 * max(per_event),
        "commit_cpu_ms_per_event": 1000 * statistics.median(r["stage_cpu_s"] / r["events"] for r in rows),
        "push_ms_per_batch": 1000 * statistics.median(r["push_s"] for r in rows),
        "push_ms_per_batch_max": 1000 * max(r["push_s"] for r in rows),
        "push_cpu_ms": 1000 * statistics.median(r["push_cpu_s"] for r in rows),
        "batch_ms": 1000 * statistics.median(r["total_s"] for r in rows),
        "ms_per_event_incl_push": 1000 * statistics.median(r["total_s"] / r["events"] for r in rows),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _coldstart_child(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    from pipeline.git.store import GitStore

    imported = time.perf_counter()
    git = GitStore(spec["remote"], "main", Path(spec["cache"]), token=os.environ.get(TOKEN_ENV) or None)
    tip = git.fetch()
    done = time.perf_counter()
    git.close()
    return {
        "seconds": done - imported,
        "import_s": imported - started,
        "peak_rss_mb": _peak_rss_mb(),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tip": tip.decode() if tip else None,
    }


def run_child(mode: str, spec: dict[str, Any], token: str | None, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop(TOKEN_ENV, None)
    if token:
        env[TOKEN_ENV] = token
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.committer", mode, json.dumps(spec)],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        from pipeline.git.store import redact

        raise RuntimeError(f"bench.committer {mode} failed:\n{redact(proc.stderr[-3000:])}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    return result


# --- in the benchmark process -------------------------------------------------------------------------
def jsync(remote: str, token: str | None, n: int, events: int, warmup_batches: int, cache: Path) -> dict[str, Any]:
    spec = {"remote": remote, "n": n, "events": events, "warmup_batches": warmup_batches, "cache": str(cache)}
    try:
        return run_child("jsync", spec, token, timeout=600)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def cold_start(remote: str, token: str | None, cache: Path, runs: int) -> dict[str, Any]:
    """A fresh process: GitStore on an empty cache dir, then fetch(). Median of `runs` (fewer if slow)."""
    results: list[dict[str, Any]] = []
    disk, objects = 0, 0
    for run in range(runs):
        shutil.rmtree(cache, ignore_errors=True)
        results.append(run_child("coldstart", {"remote": remote, "cache": str(cache)}, token, timeout=600))
        if run == 0:
            disk = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
            objects = _object_count(cache)
        if results[-1]["seconds"] > 10:
            break  # slow enough that one run says it
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "runs": len(results),
        "seconds": statistics.median(r["seconds"] for r in results),
        "process_wall_s": statistics.median(r["process_wall_s"] for r in results),
        "import_s": statistics.median(r["import_s"] for r in results),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "cache_mb": disk / 1e6,
        "objects": objects,
    }


def _object_count(repo: Path) -> int:
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "count-objects", "-v"], capture_output=True, text=True, env=git_env()
    ).stdout
    counts = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return int(counts.get("count", 0)) + int(counts.get("in-pack", 0))


def git_cli(remote_with_token: str, n: int, events: int, workdir: Path) -> dict[str, Any]:
    """The original plan: per event, clone, write the file, commit, push (workdir on tmpfs where there is one)."""
    env = git_env()
    clone_s: list[float] = []
    rest_s: list[float] = []
    for change in changes_for(n, events, f"cli-{n}", seed=1):
        work = workdir / f"clone-{change.event_id}"
        started = time.perf_counter()
        _git(["clone", "--quiet", "--single-branch", "--branch", "main", remote_with_token, str(work)], env)
        cloned = time.perf_counter()
        path = work / git_path(change.key, change.issue_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(canonical_json(change.document))
        _git(["-C", str(work), "add", str(path.relative_to(work))], env)
        _git(["-C", str(work), "commit", "--quiet", "-m", f"{change.key}: {change.subject}"], env)
        _git(["-C", str(work), "push", "--quiet", "origin", "HEAD:main"], env)
        clone_s.append(cloned - started)
        rest_s.append(time.perf_counter() - cloned)
        shutil.rmtree(work, ignore_errors=True)
    per_event = [c + r for c, r in zip(clone_s, rest_s, strict=True)]
    return {
        "files": n,
        "events": events,
        "s_per_event": statistics.median(per_event),
        "clone_s": statistics.median(clone_s),
        "add_commit_push_s": statistics.median(rest_s),
    }


def _git(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(["git", *args], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        from pipeline.git.store import redact

        raise RuntimeError(redact(f"git {args[0]} failed: {proc.stderr.strip()}"))


def main() -> int:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    result = _jsync_child(spec) if mode == "jsync" else _coldstart_child(spec)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
