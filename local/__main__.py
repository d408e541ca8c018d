"""`python -m local`: run the local stack in the foreground until SIGINT or SIGTERM (what `make run` does)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from local.stack import LocalStack
from pipeline.git.store import redact
from pipeline.settings import Settings


def backend_line(settings: Settings) -> str:
    if settings.backend == "embedded":
        return f"embedded (SQLite {settings.database}); JSYNC_BACKEND=aws for S3 and SQS"
    return f"aws ({settings.aws_endpoint_url or 'your AWS account'}, bucket {settings.bucket})"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = LocalStack()
    try:
        stack.start()
    except Exception as exc:
        print(f"jsync: could not start: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    urls = stack.urls
    print(
        "\nJSync is running. Ctrl-C stops it; state is kept in "
        f"{stack.settings.home}\n"
        f"  webhook:    POST {urls.webhook}\n"
        f"  health:     {urls.health}\n"
        f"  API docs:   {urls.docs}\n"
        f"  reconcile:  {urls.reconcile}\n"
        f"  events:     {urls.events}\n"
        f"  metrics:    {urls.metrics}\n"
        f"  git remote: {redact(urls.git_remote)}\n"
        f"  backend:    {backend_line(stack.settings)}\n",
        flush=True,
    )
    stop.wait()
    print("jsync: stopping (finishing in-flight work)...", flush=True)
    stack.stop()
    print("jsync: stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
