"""Drive the real handlers against a backend (moto server or embedded) and a real bare git repository,
deterministically."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from dulwich.repo import Repo

from functions import attachments, committer, ingest, reconcile, writer
from local.poller import Poller
from pipeline import services
from pipeline.reconcile import jobs
from pipeline.settings import Settings
from tests.builders import function_url_event


def receive_all(queue_url: str, *, visibility: int | None = None, delete: bool = False) -> list[dict[str, Any]]:
    """Every message on the queue, with its system attributes (as the event source mapping receives them).

    `visibility`: how long the received messages stay hidden (None: the queue's own timeout).
    `delete`: delete each batch as it comes; on a FIFO queue that is the only way past the first batch of a
    message group, which stays held while it is in flight.
    """
    sqs = services.aws("sqs")
    extra = {} if visibility is None else {"VisibilityTimeout": visibility}
    found: list[dict[str, Any]] = []
    for _ in range(10):  # ten receives of up to ten: more than any test puts on one queue
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            WaitTimeSeconds=0,
            **extra,
        ).get("Messages", [])
        if not got:
            break
        found.extend(got)
        if delete:
            for m in got:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return found


@dataclass
class Commit:
    sha: str
    author: str
    author_time: int
    committer: str
    message: str
    parents: list[str]
    trailers: dict[str, str]

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]


class Pipeline:
    """Ingest through the handler, then drain the queues through the writer and committer handlers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        bus = services.queue_bus()
        self.writer = Poller("writer", bus, settings.events_queue, writer.lambda_handler, retry_delay=0)
        self.committer = Poller("committer", bus, settings.bell_queue, committer.lambda_handler, retry_delay=0)
        self.reconciler = Poller(
            "reconcile", bus, settings.sync_queue, reconcile.lambda_handler, retry_delay=0, timeout=900
        )
        self.copier = Poller("attachments", bus, settings.attachments_queue, attachments.lambda_handler, retry_delay=0)

    def deliver(
        self, body: bytes, identifier: str | None = None, content_type: str = "application/json", **headers: str
    ) -> dict[str, Any]:
        all_headers = {"content-type": content_type, **headers}
        if identifier:
            all_headers["x-atlassian-webhook-identifier"] = identifier
        response = ingest.lambda_handler(function_url_event(body, all_headers))
        response["json"] = json.loads(response["body"])
        return response

    def drain(self, max_rounds: int = 200) -> None:
        """Run reconcile steps, the writer, the committer and attachment copies, until every queue is empty."""
        for _ in range(max_rounds):
            handled = self.reconciler.poll_once() + self.writer.poll_once() + self.committer.poll_once()
            handled += self.copier.poll_once()
            if handled == 0 and self.depth() == 0:
                return
            if handled == 0 and self.depth(self.settings.commits_queue):
                services.queues().ring()  # what the deployed schedule does for changes no bell announced
        raise AssertionError("queues did not drain")

    def sync(self, project: str | None = None, since_ms: int | None = None) -> jobs.JobRecord:
        """Start a reconcile job as POST /api/v1/sync does, run everything to the end, return the stored record."""
        now = int(time.time() * 1000)
        job = jobs.create(services.store(), jobs.new_job(jobs.new_job_id(now), "api", project, since_ms, now))
        services.queues().send_sync({"job_id": job.job_id, "step": 0})
        self.drain()
        found = jobs.load(services.store(), job.job_id)
        assert found is not None
        return found

    def depth(self, *names: str) -> int:
        bus = services.queue_bus()
        return sum(bus.depth(name).total for name in names or [source for source, _ in self.settings.queue_pairs])

    # --- reading what was stored -----------------------------------------------------------------
    def latest(self, issue_id: str) -> dict[str, Any] | None:
        found = services.store().latest(issue_id)
        return found.data if found else None

    def keys(self, prefix: str) -> list[str]:
        return sorted(services.store().all_keys(prefix))

    def commits(self) -> list[Commit]:
        return remote_commits(self.settings.git_remote, self.settings.git_branch)

    def git_file(self, path: str) -> bytes | None:
        return remote_file(self.settings.git_remote, self.settings.git_branch, path)


def remote_commits(remote: str, branch: str) -> list[Commit]:
    """Commits on the remote branch, newest first."""
    repo = Repo(remote)
    try:
        ref = f"refs/heads/{branch}".encode()
        if ref not in repo.refs:
            return []
        out: list[Commit] = []
        sha: bytes | None = repo.refs[ref]
        while sha:
            c = repo[sha]
            message = c.message.decode()
            trailers = dict(
                line.split(": ", 1) for line in message.splitlines() if line.startswith("Jira-") and ": " in line
            )
            out.append(
                Commit(
                    sha.decode(),
                    c.author.decode(),
                    c.author_time,
                    c.committer.decode(),
                    message,
                    [p.decode() for p in c.parents],
                    trailers,
                )
            )
            sha = c.parents[0] if c.parents else None
        return out
    finally:
        repo.close()


def remote_file(remote: str, branch: str, path: str) -> bytes | None:
    repo = Repo(remote)
    try:
        ref = f"refs/heads/{branch}".encode()
        if ref not in repo.refs:
            return None
        node: Any = repo[repo[repo.refs[ref]].tree]
        for part in path.encode().split(b"/"):
            if part not in node:
                return None
            node = repo[node[part][1]]
        return bytes(node.data)
    finally:
        repo.close()


def remote_paths(remote: str, branch: str) -> list[str]:
    repo = Repo(remote)
    try:
        ref = f"refs/heads/{branch}".encode()
        if ref not in repo.refs:
            return []
        tree = repo[repo.refs[ref]].tree
        return sorted(e.path.decode() for e in repo.object_store.iter_tree_contents(tree))
    finally:
        repo.close()
