"""Start and stop the whole pipeline on this machine: moto server, git remote, front door, pollers."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from dulwich.repo import Repo

from api.app import create_app
from local.frontdoor import FrontDoor
from local.persist import StateDir
from local.poller import Poller
from local.resources import SYNC_VISIBILITY_TIMEOUT, create_resources
from pipeline import services
from pipeline.gitstore import redact
from pipeline.queues import queue_depth
from pipeline.reconcile import scheduled_run_due
from pipeline.settings import SecretUnavailable, Settings, get_settings

log = logging.getLogger("jsync.local")
_SAVE_EVERY = 30.0  # seconds between background saves of S3, so a crash loses little
_WRITERS = 3
# A reconcile step can run for minutes; on stop it is told it has this long (enough to save its progress between
# two Jira calls), then abandoned: the job resumes from what it saved. About what a writer's batch takes to finish.
_SYNC_STOP_GRACE = 1.0


class MotoProcess:
    """moto's server in a process of its own, so its work runs on the other core, not under our GIL."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto could not start on 127.0.0.1:{self.port}; is the port in use?")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/moto-api/data.json", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto did not start within 30 s")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, grace=10)


def stop_process(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Urls:
    webhook: str
    health: str
    docs: str
    git_remote: str
    reconcile: str  # the Jira site and account reconcile reads as, or why it is off; never the token


class LocalStack:
    """The local stack, in this process. `start()` returns once it accepts webhooks; `stop()` is graceful."""

    def __init__(self, env: dict[str, str] | None = None, retry_delay: int = 1) -> None:
        if env:
            os.environ.update(env)
        home = Path(os.environ.get("JSYNC_HOME", ".jsync")).resolve()
        os.environ["JSYNC_HOME"] = str(home)
        self.moto_port = int(os.environ.get("JSYNC_MOTO_PORT") or free_port())
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{self.moto_port}"
        services.reset()
        self.settings: Settings = get_settings()
        self.state = StateDir(self.settings.home / "state")
        self.retry_delay = retry_delay
        self._moto = MotoProcess(self.moto_port)
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self.pollers: list[Poller] = []
        self._saver_stop = threading.Event()
        self._saver: threading.Thread | None = None
        self._scheduled_at = 0.0

    @property
    def urls(self) -> Urls:
        base = f"http://127.0.0.1:{self.settings.port}"
        return Urls(
            f"{base}/webhook",
            f"{base}/api/v1/health",
            f"{base}/docs",
            self.settings.git_remote,
            reconcile_status(self.settings),
        )

    @property
    def endpoint_file(self) -> Path:
        return self.settings.home / "endpoint"

    def start(self) -> None:
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        self._moto.start()
        # moto's backends are process-wide: start from exactly what was saved, nothing else.
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{self.moto_port}/moto-api/reset", method="POST"), timeout=10
        ).read()
        s3, sqs = services.aws("s3"), services.aws("sqs")
        create_resources(s, s3, sqs)
        restored = self.state.restore_bucket(s3, s.bucket), self.state.restore_queues(sqs)
        if any(restored):
            log.info("restored %d objects and %d queued messages from %s", *restored, self.state.root)
        _ensure_bare_remote(s)
        from functions import committer, reconcile, writer  # after settings are final: they build clients lazily

        # Several writers, as Lambda runs one per message group in flight; one committer, as deployed.
        consumers = [(f"writer-{n}", s.events_queue, writer.lambda_handler) for n in range(_WRITERS)]
        consumers.append(("committer", s.commits_queue, committer.lambda_handler))
        locks = {queue: threading.Lock() for _, queue, _ in consumers}
        for name, queue, handler in consumers:
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            self.pollers.append(Poller(name, sqs, url, handler, self.retry_delay, receive_lock=locks[queue]))
        # One reconcile at a time, as deployed. Its context counts down from the queue's visibility timeout, so
        # the handler stops ~2 min before and continues in a new message; on stop it is abandoned after a short
        # grace: its message goes back to the queue and the job resumes from the progress it saved.
        self.pollers.append(
            Poller(
                "reconcile",
                sqs,
                sqs.get_queue_url(QueueName=s.sync_queue)["QueueUrl"],
                reconcile.lambda_handler,
                self.retry_delay,
                timeout=SYNC_VISIBILITY_TIMEOUT,
                stop_grace=_SYNC_STOP_GRACE,
            )
        )
        for poller in self.pollers:
            poller.start()
        config = uvicorn.Config(
            FrontDoor(create_app()), host="127.0.0.1", port=s.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._server_thread.is_alive():
                raise RuntimeError(f"the HTTP server did not start on 127.0.0.1:{s.port}; is the port in use?")
            time.sleep(0.02)
        self._saver = threading.Thread(target=self._save_periodically, name="saver", daemon=True)
        self._saver.start()
        # `make redrive` runs in another process and finds this stack's moto server here; written last, so it
        # never moves messages that a restore is about to put back.
        self.endpoint_file.write_text(f"http://127.0.0.1:{self.moto_port}\n")

    def wait_idle(self, timeout: float = 30) -> None:
        """Block until the queues are empty and the pollers have nothing in hand (tests, demo)."""
        sqs = services.aws("sqs")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = sum(queue_depth(sqs, source) for source, _ in self.settings.queue_pairs)
            # Received messages count as in flight, so empty queues and no handler running means done.
            if busy == 0 and not any(p.busy.is_set() for p in self.pollers):
                return
            time.sleep(0.05)
        raise TimeoutError("the local pipeline did not drain in time")

    def stop(self) -> None:
        """Stop taking webhooks, let the pollers finish their batch, save state, stop moto."""
        # First, so no redrive starts moving messages while the queues are being saved.
        self.endpoint_file.unlink(missing_ok=True)
        if self._server:
            self._server.should_exit = True
        if self._server_thread:
            self._server_thread.join(10)
        # All stop receiving at once, so a reconcile step's grace runs while the writers finish their batches.
        for poller in self.pollers:
            poller.request_stop()
        for poller in self.pollers:
            poller.stop()
        self._saver_stop.set()
        if self._saver:
            self._saver.join(10)
        s = self.settings
        s3, sqs = services.aws("s3"), services.aws("sqs")
        queues = [source for source, _ in s.queue_pairs] + [dlq for _, dlq in s.queue_pairs]
        try:
            # Queues first: they hold what is accepted but not yet stored anywhere else.
            log.info("saved %d queued messages to %s", self.state.save_queues(sqs, queues), self.state.root)
        except Exception:
            log.exception("could not save the queues")
        try:
            log.info("saved %d changed objects to %s", self.state.save_bucket(s3, s.bucket), self.state.root)
        except Exception:
            log.exception("could not save the bucket")
        self._moto.stop()
        services.reset()

    def _save_periodically(self) -> None:
        while not self._saver_stop.wait(_SAVE_EVERY):
            try:
                self.state.save_bucket(services.aws("s3"), self.settings.bucket)
            except Exception:
                log.exception("background save failed; will try again")
            self._schedule_reconcile()

    def _schedule_reconcile(self) -> None:
        """What the deployed EventBridge rule does: put `{"scheduled": true, "time"}` on the sync queue when due."""
        s, now = self.settings, time.time()
        if not s.jira_configured or now - self._scheduled_at < s.sync_every_hours * 3600:
            return
        try:
            if scheduled_run_due(services.store(), s.sync_every_hours, int(now * 1000)):
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
                services.queues().send_sync({"scheduled": True, "time": stamp})
                self._scheduled_at = now  # the cursor moves only when the run ends: do not queue it twice
        except Exception:
            log.exception("could not queue the scheduled reconcile; will try again")


def reconcile_status(settings: Settings) -> str:
    """`https://x.atlassian.net as a@b`, or why reconcile is off; says nothing about the token."""
    if not settings.jira_configured:
        return "off (set JSYNC_JIRA_URL, JSYNC_JIRA_EMAIL, JSYNC_JIRA_TOKEN)"
    try:
        credentials = settings.jira_credentials()
    except SecretUnavailable as exc:  # its message names what is missing, never a value
        return f"off ({exc})"
    every = (
        f"every {settings.sync_every_hours:g} h after a first full `make sync`"
        if settings.sync_every_hours > 0
        else "on demand only (JSYNC_SYNC_EVERY_HOURS=0)"
    )
    return f"{redact(credentials.url)} as {credentials.email}, {every}"


def _ensure_bare_remote(settings: Settings) -> None:
    """The default remote is a bare repository under $JSYNC_HOME, made on first run."""
    if "JSYNC_GIT_REMOTE" in os.environ and os.environ["JSYNC_GIT_REMOTE"].strip():
        return
    path = Path(settings.git_remote)
    if not (path / "HEAD").exists():
        repo = Repo.init_bare(str(path), mkdir=True)
        repo.refs.set_symbolic_ref(b"HEAD", f"refs/heads/{settings.git_branch}".encode())
        repo.close()
