"""Start and stop the whole pipeline on this machine: the backend, the git remote, the front door, the pollers.

`JSYNC_BACKEND=embedded` (the default): objects and queues in SQLite under `$JSYNC_HOME`, in this process.
`JSYNC_BACKEND=aws`: S3 and SQS through boto3, with your AWS credentials or `AWS_ENDPOINT_URL` (a moto server).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import uvicorn
from dulwich.repo import Repo

from api.app import create_app
from local.frontdoor import FrontDoor
from local.poller import Handler, Poller
from local.resources import SYNC_VISIBILITY_TIMEOUT, create_resources
from pipeline import metrics, services
from pipeline.events_out import destination
from pipeline.git.store import redact
from pipeline.reconcile.reconciler import scheduled_run_due
from pipeline.settings import SecretUnavailable, Settings, get_settings

log = logging.getLogger("jsync.local")
_SCHEDULE_EVERY = 30.0  # seconds between looks at whether a scheduled reconcile is due
_WRITERS = 3
# A reconcile step can run for minutes; on stop it is told it has this long (enough to save its progress between
# two Jira calls), then abandoned: the job resumes from what it saved. About what a writer's batch takes to finish.
_SYNC_STOP_GRACE = 1.0


class AlreadyRunning(RuntimeError):
    """Another local stack holds this `$JSYNC_HOME`."""


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
    events: str  # where committed changes are published
    metrics: str


class LocalStack:
    """The local stack, in this process. `start()` returns once it accepts webhooks; `stop()` is graceful."""

    def __init__(self, env: dict[str, str] | None = None, retry_delay: int = 1) -> None:
        if env:
            os.environ.update(env)
        home = Path(os.environ.get("JSYNC_HOME", ".jsync")).resolve()
        os.environ["JSYNC_HOME"] = str(home)
        services.reset()
        self.settings: Settings = get_settings()
        self.retry_delay = retry_delay
        self._lock: IO[bytes] | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self.pollers: list[Poller] = []
        self._scheduler_stop = threading.Event()
        self._scheduler: threading.Thread | None = None
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
            destination(self.settings),
            f"{base}/api/v1/metrics",
        )

    def start(self) -> None:
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        self._hold_home()
        metrics.tally.reset()  # GET /api/v1/metrics counts from this start
        create_resources(s)
        bus = services.queue_bus()
        if s.backend == "embedded":
            from local.migrate import import_moto_state
            from pipeline.backends.embedded import SqliteQueues

            import_moto_state(s.home, s.bucket, services.objects(), bus, services.database().checkpoint)
            # Whatever a killed run had received is back on its queue at once, not after its visibility timeout.
            if released := SqliteQueues(services.database()).release_in_flight():
                log.info("%d messages a previous run had in hand are queued again", released)
        _ensure_bare_remote(s)
        _drop_stale_git_locks(s)
        from functions import attachments, committer, reconcile, writer  # after settings are final: lazy clients

        # Several writers, as Lambda runs one per message group in flight; one committer, as deployed.
        consumers = [(f"writer-{n}", s.events_queue, writer.lambda_handler) for n in range(_WRITERS)]
        # The committer is woken by the bell queue and drains the commits queue itself, as deployed.
        consumers.append(("committer", s.bell_queue, _with_upkeep(committer.lambda_handler, _remote_upkeep(s))))
        locks = {queue: threading.Lock() for _, queue, _ in consumers}
        for name, queue, handler in consumers:
            self.pollers.append(Poller(name, bus, queue, handler, self.retry_delay, receive_lock=locks[queue]))
        # One reconcile at a time, as deployed. Its context counts down from the queue's visibility timeout, so
        # the handler stops ~2 min before and continues in a new message; on stop it is abandoned after a short
        # grace: its message goes back to the queue and the job resumes from the progress it saved.
        self.pollers.append(
            Poller(
                "reconcile",
                bus,
                s.sync_queue,
                reconcile.lambda_handler,
                self.retry_delay,
                timeout=SYNC_VISIBILITY_TIMEOUT,
                stop_grace=_SYNC_STOP_GRACE,
            )
        )
        # Attachment copies (with Jira credentials): slow downloads, so the reconcile's visibility timeout.
        self.pollers.append(
            Poller(
                "attachments",
                bus,
                s.attachments_queue,
                attachments.lambda_handler,
                self.retry_delay,
                timeout=SYNC_VISIBILITY_TIMEOUT,
                stop_grace=_SYNC_STOP_GRACE,  # an abandoned copy is queued again and starts over
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
        self._scheduler = threading.Thread(target=self._schedule_periodically, name="scheduler", daemon=True)
        self._scheduler.start()

    def _hold_home(self) -> None:
        """One stack per `$JSYNC_HOME`: the lock is what lets a starting stack take back every in-flight message.
        The kernel drops it when the process dies, kill -9 included."""
        self._lock = (self.settings.home / "jsync.lock").open("wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise AlreadyRunning(f"another `make run` is using {self.settings.home}; stop it first") from None

    def wait_idle(self, timeout: float = 30) -> None:
        """Block until the queues are empty and the pollers have nothing in hand (tests, demo)."""
        bus = services.queue_bus()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = sum(bus.depth(source).total for source, _ in self.settings.queue_pairs)
            # Received messages count as in flight, so empty queues and no handler running means done.
            if busy == 0 and not any(p.busy.is_set() for p in self.pollers):
                return
            time.sleep(0.02)
        raise TimeoutError("the local pipeline did not drain in time")

    def stop(self) -> None:
        """Stop taking webhooks, let the pollers finish their batch (or give it back to its queue)."""
        if self._server:
            self._server.should_exit = True
        if self._server_thread:
            self._server_thread.join(10)
        # All stop receiving at once, so a reconcile step's grace runs while the writers finish their batches.
        for poller in self.pollers:
            poller.request_stop()
        for poller in self.pollers:
            poller.stop()
        self._scheduler_stop.set()
        if self._scheduler:
            self._scheduler.join(10)
        services.reset()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _schedule_periodically(self) -> None:
        while not self._scheduler_stop.wait(_SCHEDULE_EVERY):
            self._schedule_reconcile()
            self._ring()

    def _ring(self) -> None:
        """What the deployed bell schedule does: changes no bell woke the committer for (a redrive from the
        console, a committer that died mid-batch) are committed within a schedule period."""
        try:
            if services.queue_bus().depth(self.settings.commits_queue).waiting:
                services.queues().ring()
        except Exception:
            log.exception("could not ring the committer's bell; will try again")

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


_PACKS_BEFORE_REPACK = 64


def _remote_upkeep(settings: Settings) -> Callable[[], None]:
    """Every push adds a pack to the remote, and each push reads every pack's index: on a remote of our own
    (under $JSYNC_HOME) pushes slowed from 47 to 124 ms after 300 of them. git's geometric repack keeps the count
    logarithmic for under a second now and then. A remote of your own is left to you (or your git host)."""
    remote = Path(settings.git_remote)
    if not remote.resolve().is_relative_to(settings.home) or shutil.which("git") is None:
        return lambda: None

    def upkeep() -> None:
        packs = remote / "objects" / "pack"
        if sum(1 for _ in packs.glob("*.pack")) <= _PACKS_BEFORE_REPACK:
            return
        try:
            subprocess.run(
                ["git", "--git-dir", str(remote), "repack", "-d", "-q", "--geometric=2"],
                check=True,
                capture_output=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("could not repack %s (%s); pushes slow down as packs pile up", remote, exc)

    return upkeep


def _with_upkeep(handler: Handler, upkeep: Callable[[], None]) -> Handler:
    """The committer, then the upkeep, in the committer's own thread: nothing pushes while it runs."""

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return handler(event, context)
        finally:
            upkeep()

    return handle


def _drop_stale_git_locks(settings: Settings) -> None:
    """A run killed mid-push leaves `refs/heads/<branch>.lock` behind, and git refuses every later push. Only
    repositories under $JSYNC_HOME, which only this stack writes (it holds the home's lock), are cleaned: a remote
    of your own may have a live pusher."""
    for repo in (Path(settings.git_remote), settings.git_cache_dir):
        if not repo.resolve().is_relative_to(settings.home) or not repo.is_dir():
            continue
        for lock in [*(repo / "refs").rglob("*.lock"), repo / "packed-refs.lock", repo / "config.lock"]:
            if lock.is_file():
                log.warning("removing %s, left by a run that was killed mid-push", lock)
                lock.unlink()
