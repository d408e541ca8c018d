"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium, with no network beyond loopback.

Without Chromium the tests are skipped, saying so; under CI (`CI` set) they fail instead, as `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from local.stack import LocalStack
from tests import environments

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
# As root in a container, with nothing to talk to but loopback: every other host name resolves to nothing.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


@dataclass(frozen=True)
class Chromium:
    binary: str
    profile: Path

    def _run(self, *args: str, timeout: float = 90) -> str:
        command = [self.binary, *FLAGS, f"--user-data-dir={self.profile}", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def dom(self, url: str, budget_ms: int = 8000) -> str:
        """The page's DOM after its scripts ran (for up to `budget_ms` of virtual time)."""
        return self._run(f"--virtual-time-budget={budget_ms}", "--dump-dom", url)

    def screenshot(self, url: str, path: Path, size: str = "1200,900", budget_ms: int = 8000) -> None:
        self._run(f"--virtual-time-budget={budget_ms}", f"--window-size={size}", f"--screenshot={path}", url)
        assert path.stat().st_size > 1000


def find_chromium() -> str | None:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@pytest.fixture
def chromium(tmp_path: Path) -> Chromium:
    binary = find_chromium()
    if binary is None:
        reason = "Chromium is not installed (apt-get install -y --no-install-recommends chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(reason + ", and CI must run the browser tests")
        pytest.skip(reason)
    return Chromium(binary, tmp_path / "chromium-profile")


KEYS = ("browser-key-5d1e", "other-key-90ab")


@pytest.fixture
def keyed_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """A local stack whose API wants one of `KEYS`."""
    with environments.keyed_stack(tmp_path / "home", monkeypatch, ",".join(KEYS)) as stack:
        yield stack
