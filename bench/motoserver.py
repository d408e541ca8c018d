"""A moto server in a process of its own (`python -m moto.server`), as `JSYNC_BACKEND=aws` runs against locally.

The local stack no longer starts moto itself: the bench starts one per run on a free loopback port, waits until it
answers, and stops it with SIGTERM (SIGKILL if it lingers).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from local.stack import free_port, stop_process

# What the stack and the bench's readers need to talk to moto; the keys are moto's, never real credentials.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """`python -m moto.server -H 127.0.0.1 -p PORT`; `url` is the endpoint for AWS_ENDPOINT_URL."""

    def __init__(self, port: int | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> MotoServer:
        out: Any = self.log.open("wb") if self.log else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            if self.log:
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._proc.returncode} on port {self.port}")
            if self.answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on port {self.port} within {timeout:.0f}s")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def reset(self) -> None:
        """Forget every bucket and queue (moto's own reset endpoint)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).read()

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, grace=10)
            self._proc = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
