"""Attachment copies (issue 15): how fast one large attachment goes from Jira into storage, and how much memory the
copier needs for it, on the embedded store and on S3 (a moto server, multipart in 8 MiB parts).

The fake Jira serves the bytes from this process; the copy runs in a child process of its own (the real
`pipeline.attachments.copy` with `from_jira`), so its peak resident memory is the copier's alone. `python -m
bench.attachments [--mb 100]` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.motoserver import MotoServer
from tests.fakejira import EMAIL, TOKEN, FakeJira, JiraModel

ROOT = Path(__file__).resolve().parents[1]
ATTACHMENT_ID = "30001"

# Run in the child: copy once, print the seconds, the peak RSS before and after, and what was recorded.
_CHILD = """
import json, sys, time
from pipeline import services
from pipeline.attachments import AttachmentRef, copy, from_jira
from pipeline.settings import get_settings
from local.resources import create_resources

def peak_kb():  # this process's own high-water mark (ru_maxrss would start at the parent's, fork carries it)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1])

settings = get_settings()
create_resources(settings)
ref = AttachmentRef("10042", sys.argv[1], "big.bin", int(sys.argv[2]), "application/octet-stream", "")
download = from_jira(settings)
before = peak_kb()
started = time.perf_counter()
kept = copy(ref, services.store(), services.objects(), download, settings.attachment_max_bytes)
seconds = time.perf_counter() - started
after = peak_kb()
print(json.dumps({"seconds": seconds, "rss_before_kb": before, "rss_peak_kb": after, "state": kept.state,
                  "size": kept.record.get("size")}))
"""


def run(megabytes: int = 100, backends: tuple[str, ...] = ("embedded", "aws")) -> dict[str, Any]:
    size = megabytes * 1024 * 1024
    content = os.urandom(1024 * 1024) * megabytes  # incompressible, like a video
    out: dict[str, Any] = {"megabytes": megabytes}
    with FakeJira(JiraModel(seed=1, issues=1)) as jira, tempfile.TemporaryDirectory(prefix="jsync-bench-att-") as tmp:
        jira.attachments[ATTACHMENT_ID] = content
        for backend in backends:
            env = {
                **os.environ,
                "JSYNC_BACKEND": backend,
                "JSYNC_HOME": str(Path(tmp) / backend),
                "JSYNC_JIRA_URL": jira.base_url,
                "JSYNC_JIRA_EMAIL": EMAIL,
                "JSYNC_JIRA_TOKEN": TOKEN,
                "JSYNC_ATTACHMENT_MAX_BYTES": str(size),
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            moto = MotoServer(log=Path(tmp) / "moto.log") if backend == "aws" else None
            try:
                if moto:
                    moto.start()
                    env["AWS_ENDPOINT_URL"] = moto.url
                done = subprocess.run(
                    [sys.executable, "-c", _CHILD, ATTACHMENT_ID, str(size)],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
            finally:
                if moto:
                    moto.stop()
            if done.returncode != 0:
                out[backend] = {"error": done.stderr[-1500:]}
                continue
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            figures["mb_per_s"] = megabytes / figures["seconds"]
            figures["rss_growth_mb"] = (figures["rss_peak_kb"] - figures["rss_before_kb"]) / 1024
            out[backend] = figures
    return out


def render(result: dict[str, Any]) -> str:
    lines = [f"one {result['megabytes']} MB attachment, fake Jira on loopback to storage, copier in its own process"]
    for backend in ("embedded", "aws"):
        figures = result.get(backend)
        if figures is None:
            continue
        if "error" in figures:
            lines.append(f"  {backend}: failed: {figures['error'].strip().splitlines()[-1]}")
            continue
        lines.append(
            f"  {backend}: {figures['state']}, {figures['seconds']:.2f} s ({figures['mb_per_s']:.0f} MB/s), "
            f"copier peak RSS {figures['rss_peak_kb'] / 1024:.0f} MB "
            f"(+{figures['rss_growth_mb']:.0f} MB over its {figures['rss_before_kb'] / 1024:.0f} MB before the copy)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--backends", default="embedded,aws")
    args = parser.parse_args()
    print(render(run(args.mb, tuple(args.backends.split(",")))))


if __name__ == "__main__":
    main()
