"""`make demo`: post the bundled sample Jira webhooks to a running `make run`, then say where to look."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.git.store import redact
from pipeline.settings import Settings, get_settings
from pipeline.signature import sign

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
STORY = [
    "issue_created.json",
    "issue_created_adf.json",
    "issue_created.xml",
    "issue_updated.json",
    "issue_updated_assignee.json",
    "comment_created.json",
    "worklog_created.json",
    "issue_moved.json",
    "project_created.json",
]


def main() -> int:
    settings = get_settings()
    base = f"http://127.0.0.1:{settings.port}"
    run_id = int(time.time())
    for n, name in enumerate(STORY):
        body = (SAMPLES / name).read_bytes()
        headers = {
            "Content-Type": "application/xml" if name.endswith(".xml") else "application/json",
            "X-Atlassian-Webhook-Identifier": f"demo-{run_id}-{n}",
        }
        if settings.webhook_secret:
            headers["X-Hub-Signature"] = sign(settings.webhook_secret, body)
        request = urllib.request.Request(f"{base}/webhook", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                print(f"{name:32} {response.status} {response.read().decode()}")
        except urllib.error.HTTPError as exc:
            print(f"{name:32} {exc.code} {exc.read().decode()}")
        except urllib.error.URLError as exc:
            print(f"jsync demo: nothing answers at {base} ({exc.reason}); start it with `make run`.", file=sys.stderr)
            return 1
    print(
        "\nWhere to look (give it a second):\n"
        f"  git --git-dir {redact(settings.git_remote)} log --stat main\n"
        f"  git --git-dir {redact(settings.git_remote)} show main:issues/PLAT/PLAT-5.json\n"
        f"  git --git-dir {redact(settings.git_remote)} show main:issues/PLAT/PLAT-5.md\n"
        f"  {base}/issues/PLAT-5/timeline\n"
        f"  {base}/api/v1/health\n"
        f"  objects raw/, snapshots/, latest/: {where_objects(settings)}"
    )
    return 0


def where_objects(settings: Settings) -> str:
    if settings.backend == "embedded":
        return f"table objects of {settings.database} (SQLite)"
    return f"bucket {settings.bucket}"


if __name__ == "__main__":
    sys.exit(main())
