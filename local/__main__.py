"""`python -m local`: run the local stack in the foreground until SIGINT or SIGTERM (what `make run` does)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from local.stack import LocalStack
from pipeline.gitstore import redact


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines drown everything else
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
        f"  git remote: {redact(urls.git_remote)}\n",
        flush=True,
    )
    stop.wait()
    print("jsync: stopping (finishing in-flight work)...", flush=True)
    stack.stop()
    print("jsync: stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
