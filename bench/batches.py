"""Issue 13: large commit batches against a git host that takes 300 ms a push, beside one push per 10 changes.

- burst: `count` changes, one per issue of a repository of `files` issue files, queued at once on the embedded commits
  queue; the committer (git/drain.py and commit_batch, as functions/committer.py runs them) drains them. Seconds
  from its cold start until all are on the remote, pushes, changes a second.
- paced: changes sent at `rate` a second for `seconds` while the committer drains: the rate git took them in, and
  each change's time from queued to pushed (p50, p95).
Each is run with today's bound (10 changes a push: Lambda's FIFO batch) and the new one (1,000 or 5 s), each on a
fresh copy of the repository, served over smart HTTP by `bench.gitserver` with the push delay added.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dulwich.repo import Repo

from bench.committer import changes_for, records_store
from bench.gitserver import GitServerProcess, copy_repo
from bench.repos import cached_repo
from pipeline.backends.embedded import Database, SqliteQueues
from pipeline.git.commits import BatchResult, GitRecords, commit_batch
from pipeline.git.drain import Bounds, drain
from pipeline.git.store import GitStore
from pipeline.messages import Change
from pipeline.queues import Queues

TODAY = Bounds(max_changes=10, max_seconds=5.0)  # one push per Lambda batch of ten
LARGE = Bounds(max_changes=1_000, max_seconds=5.0)
FULL: dict[str, Any] = {"files": 100_000, "count": 10_000, "today_count": 500, "rate": 400.0, "seconds": 15.0}
QUICK: dict[str, Any] = {"files": 1_000, "count": 300, "today_count": 50, "rate": 100.0, "seconds": 3.0}


class _Rig:
    """A commits queue on a fresh embedded database and a fresh copy of the repository on the git server."""

    def __init__(self, server: GitServerProcess, source: Path, name: str, work: Path) -> None:
        self.remote_path = copy_repo(source, server.root / f"{name}.git")
        self.remote = server.url(f"{name}.git")
        self.work = work / name
        self.work.mkdir(parents=True)
        database = Database(self.work / "jsync.db")
        self.bus = SqliteQueues(database)
        self.bus.create("commits.fifo", None, 240)
        self.queues = Queues(self.bus, "events.fifo", "commits.fifo")
        self.git = GitStore(self.remote, "main", self.work / "committer.git", server.token)
        self.records = GitRecords(records_store(self.work / "records.db"))
        self.old_tip = _tip(self.remote_path)
        self.pushed_at: dict[str, float] = {}
        self.pushes = 0

    def commit(self, changes: list[Change]) -> BatchResult:
        result = commit_batch(changes, self.git, self.records, lambda c: c.document)
        now = time.perf_counter()
        self.pushes += 1
        for change in changes:
            self.pushed_at[change.event_id] = now
        return result

    def drain_once(self, bounds: Bounds) -> int:
        return drain(self.bus, "commits.fifo", self.commit, bounds, lambda: 3600.0).received

    def commits_on_remote(self) -> int:
        repo = Repo(str(self.remote_path))
        try:
            sha, count = repo.refs[b"refs/heads/main"], 0
            while sha and sha != self.old_tip:
                count += 1
                parents = repo[sha].parents
                sha = parents[0] if parents else None
            return count
        finally:
            repo.close()

    def close(self) -> None:
        self.git.close()
        shutil.rmtree(self.remote_path, ignore_errors=True)


def _tip(path: Path) -> bytes:
    repo = Repo(str(path))
    try:
        return repo.refs[b"refs/heads/main"]
    finally:
        repo.close()


def burst(server: GitServerProcess, source: Path, files: int, count: int, bounds: Bounds, work: Path) -> dict[str, Any]:
    rig = _Rig(server, source, f"burst-{bounds.max_changes}-{count}", work)
    try:
        changes = changes_for(files, count, f"burst{bounds.max_changes}", seed=3)
        rig.queues.send_changes(changes)
        started = time.perf_counter()
        rig.git.fetch()
        fetched = time.perf_counter() - started
        while rig.bus.depth("commits.fifo").total:
            rig.drain_once(bounds)
        seconds = time.perf_counter() - started
        on_remote = rig.commits_on_remote()
        return {
            "changes": count,
            "files": files,
            "bound": bounds.max_changes,
            "seconds": round(seconds, 2),
            "cold_fetch_s": round(fetched, 2),
            "pushes": rig.pushes,
            "changes_per_s": round(count / seconds, 1),
            "commits_on_remote": on_remote,
        }
    finally:
        rig.close()


def paced(
    server: GitServerProcess, source: Path, files: int, rate: float, seconds: float, bounds: Bounds, work: Path
) -> dict[str, Any]:
    rig = _Rig(server, source, f"paced-{bounds.max_changes}-{int(rate)}", work)
    try:
        count = int(rate * seconds)
        changes = changes_for(files, count, f"paced{bounds.max_changes}", seed=5)
        rig.git.fetch()
        sent_at: dict[str, float] = {}
        sending = threading.Thread(target=_send_paced, args=(rig.queues, changes, rate, sent_at), daemon=True)
        started = time.perf_counter()
        sending.start()
        while sending.is_alive() or rig.bus.depth("commits.fifo").total:
            if not rig.drain_once(bounds):
                time.sleep(0.02)
        finished = time.perf_counter()
        sending.join()
        waits = sorted(rig.pushed_at[e] - sent_at[e] for e in sent_at if e in rig.pushed_at)
        return {
            "offered_per_s": rate,
            "changes": count,
            "bound": bounds.max_changes,
            "taken_per_s": round(count / (finished - started), 1),
            "pushes": rig.pushes,
            "queued_to_pushed_p50_s": round(statistics.median(waits), 2),
            "queued_to_pushed_p95_s": round(waits[int(0.95 * (len(waits) - 1))], 2),
            "lag_after_last_send_s": round(finished - max(sent_at.values()), 2),
            "commits_on_remote": rig.commits_on_remote(),
        }
    finally:
        rig.close()


def _send_paced(queues: Queues, changes: list[Change], rate: float, sent_at: dict[str, float]) -> None:
    """Ten at a time (a writer's batch), on schedule."""
    started = time.perf_counter()
    for index in range(0, len(changes), 10):
        due = started + index / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        batch = changes[index : index + 10]
        queues.send_changes(batch)
        now = time.perf_counter()
        for change in batch:
            sent_at[change.event_id] = now


def run(
    token: str | None,
    files: int = 100_000,
    count: int = 10_000,
    today_count: int = 500,
    rate: float = 400.0,
    seconds: float = 15.0,
    push_delay: float = 0.3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every figure of the section, today's bound beside the new one."""
    source, built = cached_repo(files)
    if built is not None:
        log(f"built the {files}-file repository in {built:.0f} s")
    served = Path(tempfile.mkdtemp(prefix="jsync-bench-batches-"))
    work = Path(tempfile.mkdtemp(prefix="jsync-bench-batches-work-"))
    try:
        with GitServerProcess(served, token, push_delay=push_delay) as server:
            out: dict[str, Any] = {"push_delay_s": push_delay, "files": files}
            log(f"batches: burst of {today_count} with one push per 10")
            out["burst_today"] = burst(server, source, files, today_count, TODAY, work)
            log(f"batches: burst of {count} with large batches")
            out["burst_large"] = burst(server, source, files, count, LARGE, work)
            log(f"batches: paced {rate:g}/s for {seconds:g} s, one push per 10, then large batches")
            out["paced_today"] = paced(server, source, files, rate / 10, seconds, TODAY, work)
            out["paced_large"] = paced(server, source, files, rate, seconds, LARGE, work)
            today_rate = out["burst_today"]["changes_per_s"]
            out["burst_today_projected_s"] = round(count / today_rate, 0) if today_rate else None
            return out
    finally:
        shutil.rmtree(served, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    import argparse
    import json
    import secrets

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--today-count", type=int, default=500)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--push-delay", type=float, default=0.3)
    args = parser.parse_args()
    result = run(
        secrets.token_hex(16), args.files, args.count, args.today_count, args.rate, args.seconds, args.push_delay
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
