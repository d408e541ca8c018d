"""Generated data: Jira-shaped issue documents, webhooks about them, and bare repositories of N issue files.

Repositories are built with `git fast-import` (one commit holding `issues/<PROJECT>/<KEY>.json` for N issues over
20 projects) and cached by N, so a rerun starts at once.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.gitserver import git_env
from pipeline.ids import canonical_json
from pipeline.snapshot import git_path

PROJECTS = (
    "ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL", "INDIA", "JULIET",
    "KILO", "LIMA", "MIKE", "NOVEMBER", "OSCAR", "PAPA", "QUEBEC", "ROMEO", "SIERRA", "TANGO",
)  # fmt: skip

_FORMAT = "v1"  # bump when the documents change, so cached repositories are rebuilt
_SITE = "https://example.atlassian.net"
_WORDS = ("rotate", "certificates", "deploy", "pipeline", "latency", "cache", "invalidate", "billing", "export",
          "report", "dashboard", "search", "index", "timeout", "retry", "queue", "webhook", "migration", "schema",
          "audit", "login", "session", "token", "upload", "download", "mobile", "layout")  # fmt: skip
_STATUSES = (("To Do", "10000", "new", "blue-gray"), ("In Progress", "3", "indeterminate", "yellow"),
             ("In Review", "10002", "indeterminate", "yellow"), ("Done", "10001", "done", "green"))  # fmt: skip
_PEOPLE = [(f"712020:{i:04x}-bench", n) for i, n in enumerate(("Ada Lovelace", "Grace Hopper", "Alan Turing",
           "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson", "Margaret Hamilton", "Donald Knuth"))]  # fmt: skip
BASE_TIME_MS = 1_764_000_000_000  # 2025-11-24, when the generated issues were "created"


def issue_key(i: int) -> str:
    """Issue number i (0-based) -> its key: round-robin over the 20 projects."""
    return f"{PROJECTS[i % len(PROJECTS)]}-{i // len(PROJECTS) + 1}"


def issue_id(i: int) -> str:
    return str(100_000 + i)


def issue_path(i: int) -> str:
    return git_path(issue_key(i), issue_id(i))


def _user(index: int) -> dict[str, Any]:
    account, name = _PEOPLE[index % len(_PEOPLE)]
    return {
        "self": f"{_SITE}/rest/api/2/user?accountId={account}",
        "accountId": account,
        "avatarUrls": {"48x48": f"https://avatar.example.invalid/{account}/48.png"},
        "displayName": name,
        "active": True,
        "timeZone": "Europe/London",
        "accountType": "atlassian",
    }


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}+0000"


def issue_doc(i: int, version: int = 0) -> dict[str, Any]:
    """A Jira issue as the writer stores it (≈2.5 KB as canonical JSON); `version` > 0 is a later edit."""
    rng = random.Random(i * 1_000_003 + version)
    key, project = issue_key(i), PROJECTS[i % len(PROJECTS)]
    status = _STATUSES[(i + version) % len(_STATUSES)]
    created = BASE_TIME_MS - (i % 100_000) * 60_000
    updated = created + version * 3_600_000
    summary = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 7))).capitalize()
    description = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(15, 40))).capitalize() + "."
    return {
        "id": issue_id(i),
        "key": key,
        "self": f"{_SITE}/rest/api/2/issue/{issue_id(i)}",
        "fields": {
            "summary": summary if version == 0 else f"{summary} (edit {version})",
            "description": description,
            "issuetype": {"id": "10001", "name": rng.choice(("Task", "Bug", "Story")), "subtask": False},
            "project": {
                "id": str(10_000 + i % len(PROJECTS)),
                "key": project,
                "name": project.capitalize(),
                "projectTypeKey": "software",
                "self": f"{_SITE}/rest/api/2/project/{project}",
            },
            "status": {
                "id": status[1],
                "name": status[0],
                "self": f"{_SITE}/rest/api/2/status/{status[1]}",
                "statusCategory": {"key": status[2], "colorName": status[3], "name": status[0]},
            },
            "priority": {"id": str(rng.randint(1, 5)), "name": rng.choice(("Highest", "High", "Medium", "Low"))},
            "assignee": _user(rng.randint(0, 7)),
            "reporter": _user(rng.randint(0, 7)),
            "labels": sorted(rng.sample(_WORDS, rng.randint(0, 3))),
            "components": [],
            "fixVersions": [],
            "created": _iso(created),
            "updated": _iso(updated),
            "resolution": None,
            "duedate": None,
            "customfield_10016": float(rng.randint(1, 13)),
            "customfield_10019": f"0|i{i:05x}:",
            "customfield_10020": [{"id": 37, "name": f"{project} Sprint {i % 30}", "state": "active", "boardId": 4}],
            "timetracking": {},
            "progress": {"progress": 0, "total": 0},
            "votes": {"self": f"{_SITE}/rest/api/2/issue/{key}/votes", "votes": rng.randint(0, 3)},
            "watches": {"self": f"{_SITE}/rest/api/2/issue/{key}/watchers", "watchCount": rng.randint(1, 4)},
        },
    }


def webhook(i: int, version: int, timestamp_ms: int) -> dict[str, Any]:
    """A `jira:issue_created` (version 0) or `jira:issue_updated` webhook carrying the whole issue."""
    doc = issue_doc(i, version)
    payload: dict[str, Any] = {
        "timestamp": timestamp_ms,
        "webhookEvent": "jira:issue_created" if version == 0 else "jira:issue_updated",
        "issue_event_type_name": "issue_created" if version == 0 else "issue_generic",
        "user": _user(i + version),
        "issue": doc,
    }
    if version:
        payload["changelog"] = {
            "id": str(10_000 + version),
            "items": [{"field": "summary", "fieldtype": "jira", "toString": doc["fields"]["summary"]}],
        }
    return payload


def cache_root() -> Path:
    return Path(os.environ.get("JSYNC_BENCH_CACHE") or Path(tempfile.gettempdir()) / "jsync-bench-cache")


def cached_repo(n: int, root: Path | None = None) -> tuple[Path, float | None]:
    """The bare repository of n issue files, built on first use; returns it and the seconds building took
    (None when it came from the cache)."""
    root = root or cache_root()
    path = root / f"issues-{n}-{_FORMAT}.git"
    if (path / "refs" / "heads" / "main").exists() or (path / "packed-refs").exists():
        return path, None
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    building = Path(tempfile.mkdtemp(prefix=f"building-{n}-", dir=root))
    try:
        subprocess.run(
            ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(building)], check=True, env=git_env()
        )
        _fast_import(building, n)
        shutil.rmtree(path, ignore_errors=True)
        building.rename(path)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return path, time.perf_counter() - started


def _fast_import(repo: Path, n: int) -> None:
    proc = subprocess.Popen(
        ["git", "--git-dir", str(repo), "fast-import", "--quiet", "--done"],
        stdin=subprocess.PIPE,
        env=git_env(),
    )
    assert proc.stdin is not None
    out = proc.stdin
    message = f"{n} generated issues\n".encode()
    stamp = f"{BASE_TIME_MS // 1000} +0000"
    out.write(b"commit refs/heads/main\n")
    out.write(f"author JSync <jsync@jsync.invalid> {stamp}\ncommitter JSync <jsync@jsync.invalid> {stamp}\n".encode())
    out.write(b"data %d\n%s\n" % (len(message), message))
    for i in range(n):
        content = canonical_json(issue_doc(i))
        out.write(b"M 100644 inline %s\ndata %d\n%s\n" % (issue_path(i).encode(), len(content), content))
    out.write(b"\ndone\n")
    out.close()
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed building the {n}-file repository")


def doc_size(i: int = 0) -> int:
    return len(canonical_json(issue_doc(i)))
