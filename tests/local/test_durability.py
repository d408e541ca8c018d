"""`make run` as a user meets it: webhooks flowing while the whole process group is killed (SIGKILL) or stopped
(SIGINT, as a terminal's Ctrl-C sends it), then started again. Every change that got a 202 ends up captured
once: in history, in `latest/` and in git, with no commit twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from local.stack import free_port
from pipeline import reader
from pipeline.backends import ObjectStore, QueueBus
from pipeline.backends.aws import S3Objects, SqsQueues
from pipeline.backends.embedded import Database, SqliteObjects, SqliteQueues
from pipeline.settings import Settings, load_settings
from pipeline.store import Store
from tests.builders import summary_edit
from tests.harness import remote_commits

ROOT = Path(__file__).resolve().parents[2]
ISSUES = 12


def event(issue: int, version: int) -> tuple[str, bytes]:
    return f"dur-{issue}-{version}", summary_edit(40000 + issue, f"DUR-{issue + 1}", version, 70000 + version)


class Stack:
    """`python -m local` in a session of its own, so signals reach its whole process group, as from a terminal."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{env['JSYNC_PORT']}"
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                if "backend:" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        assert ready.wait(60), "".join(self.output[-40:])

    def kill(self) -> None:
        """Whatever happened in the test, leave no stack running."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def signal_group(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(60)


@dataclass
class Sender:
    """Posts each issue's versions in order, as Jira does; a delivery without an answer is sent again later."""

    url: str
    versions: int
    accepted: set[str] = field(default_factory=set)
    next_version: dict[int, int] = field(default_factory=lambda: dict.fromkeys(range(ISSUES), 0))
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set() and not self.done:
                for issue in range(ISSUES):
                    version = self.next_version[issue]
                    if version >= self.versions:
                        continue
                    identifier, body = event(issue, version)
                    try:
                        r = client.post(
                            f"{self.url}/webhook",
                            content=body,
                            headers={"content-type": "application/json", "x-atlassian-webhook-identifier": identifier},
                        )
                    except httpx.HTTPError:
                        return  # the stack is gone; the next run sends this delivery again
                    if r.status_code == 202:
                        self.accepted.add(identifier)
                        self.next_version[issue] = version + 1
                    elif r.status_code != 503:
                        raise AssertionError(f"{identifier}: {r.status_code} {r.text}")

    @property
    def done(self) -> bool:
        return all(v >= self.versions for v in self.next_version.values())


def ports(env: dict[str, str]) -> tuple[ObjectStore, QueueBus, Settings]:
    """The test's own view of the stack's backend: the same SQLite file, or the same moto server."""
    settings = load_settings(env)
    if settings.backend == "embedded":
        db = Database(settings.database)
        return SqliteObjects(db), SqliteQueues(db), settings
    clients = {
        name: boto3.client(
            name,
            endpoint_url=settings.aws_endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for name in ("s3", "sqs")
    }
    return S3Objects(clients["s3"], settings.bucket), SqsQueues(clients["sqs"], use_move_tasks=False), settings


def drain(stack: Stack, timeout: float = 120) -> None:
    """Wait until nothing waits or is in flight on the events and commits queues."""
    _, bus, settings = ports(stack.env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bus.depth(settings.events_queue).total + bus.depth(settings.commits_queue).total == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"not drained: {''.join(stack.output[-30:])}")


def full_history(store: Store, issue_id: str) -> list[dict[str, Any]]:
    """Every entry of the issue's history, as the read API pages through it."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = reader.history(store, issue_id, 100, cursor)
        items += page.items
        if not page.next_cursor:
            return items
        cursor = page.next_cursor


def verify(env: dict[str, str], accepted: set[str], versions: int) -> None:
    """Each accepted change once in the snapshots and history index, git holds each once, latest is the newest."""
    objects, _, settings = ports(env)
    store = Store(objects)
    keys = store.all_keys("snapshots/")
    stored = {k.split("/")[-1].removesuffix(".json").split("-", 1)[1] for k in keys}
    assert accepted <= stored, f"lost: {sorted(accepted - stored)[:10]}"
    assert len(keys) == len(stored)
    for issue_id in {k.split("/")[1] for k in keys}:
        snapshots = [k for k in keys if k.split("/")[1] == issue_id]
        assert len(full_history(store, issue_id)) == len(snapshots), "one history version per captured change"
    commits = remote_commits(str(settings.home / "remote.git"), "main")
    ids = [c.trailers["Jira-Event-Id"] for c in commits]
    assert len(ids) == len(set(ids)), "a change committed twice"
    assert accepted <= set(ids), f"not in git: {sorted(accepted - set(ids))[:10]}"
    for issue in range(ISSUES):
        latest = store.latest(str(40000 + issue))
        assert latest is not None
        assert latest.data["issue"]["fields"]["summary"] == f"DUR-{issue + 1} version {versions - 1}"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JSYNC_", "AWS_"))}
    env.update(JSYNC_HOME=str(tmp_path / "home"), JSYNC_PORT=str(free_port()))
    yield env


@pytest.fixture(params=["embedded", "aws"])
def any_backend(request: pytest.FixtureRequest, env: dict[str, str]) -> dict[str, str]:
    """The embedded backend, or AWS against the tests' moto server (outside the stack's process group, as a
    developer's own moto server would be)."""
    if request.param == "aws":
        env.update(
            JSYNC_BACKEND="aws",
            JSYNC_STAGE=f"dur{random.randrange(10**9)}",  # the moto server is shared: names of its own
            AWS_ENDPOINT_URL=request.getfixturevalue("moto_endpoint"),
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
    return env


def run_until_done(stack: Stack, sender: Sender) -> None:
    stack.start()
    thread = threading.Thread(target=sender.run)
    thread.start()
    thread.join(120)
    assert sender.done
    drain(stack)
    assert stack.signal_group(signal.SIGINT) == 0, "".join(stack.output[-30:])


def test_kill_9_of_the_process_group_at_random_moments_loses_and_doubles_nothing(
    env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    rng, versions = random.Random(12), 8
    sender = Sender(f"http://127.0.0.1:{env['JSYNC_PORT']}", versions)
    stack = Stack(env)
    request.addfinalizer(stack.kill)
    kills = 0
    while kills < 4 and not sender.done:
        stack.start()
        sender.stop.clear()
        thread = threading.Thread(target=sender.run)
        thread.start()
        time.sleep(rng.uniform(0.05, 0.8))
        stack.signal_group(signal.SIGKILL)
        kills += 1
        thread.join(30)
    print(f"{kills} kills, {len(sender.accepted)} accepted before the last restart")
    run_until_done(stack, sender)
    verify(env, sender.accepted, versions)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_mid_load_stops_in_seconds_and_loses_nothing(
    any_backend: dict[str, str], sig: signal.Signals, request: pytest.FixtureRequest
) -> None:
    env, versions = any_backend, 6
    sender = Sender(f"http://127.0.0.1:{env['JSYNC_PORT']}", versions)
    stack = Stack(env)
    request.addfinalizer(stack.kill)
    stack.start()
    thread = threading.Thread(target=sender.run)
    thread.start()
    time.sleep(0.5)
    stopping = time.monotonic()
    assert stack.signal_group(sig) == 0, "".join(stack.output[-30:])
    took = time.monotonic() - stopping
    thread.join(30)
    print(f"stopped in {took:.2f}s with {len(sender.accepted)} accepted")
    assert took < 15
    run_until_done(stack, sender)
    verify(env, sender.accepted, versions)
