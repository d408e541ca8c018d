"""Reconcile jobs survive what Lambda and SQS do to them: steps cut short at the deadline, a step that dies mid-page or
is killed mid-unit and comes back, a rate limit longer than the client waits, a continuation that could not be sent.
Each runs through the real reconcile, writer and committer handlers (tests.harness.Pipeline) against a fake Jira, and
must leave exactly what one uninterrupted step leaves."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions import reconcile as reconcile_function
from pipeline import services
from pipeline.backends import Outgoing
from pipeline.messages import QueuedEvent
from pipeline.queues import Queues
from pipeline.reconcile import jobs
from pipeline.reconcile.feed import Feed
from pipeline.reconcile.issues import Issues
from pipeline.reconcile.jira import JiraClient
from pipeline.reconcile.jobs import JobRecord
from pipeline.store import changelog_marker_key, pending_key
from tests.environments import fresh_environment
from tests.fakejira import FakeJira, JiraModel
from tests.harness import Pipeline
from tests.test_reconcile import assert_matches_jira, entries, point_at
from tests.test_reconcile_property import content

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
_PUBLIC_COUNTS = (
    "state",
    "pages_scanned",
    "issues_scanned",
    "issues_estimated",
    "issues_changed",
    "changes_fed",
    "deletes_found",
    "not_visible",
    "deleted",
    "errors",
    "message",
)


@dataclass
class Run:
    pipeline: Pipeline
    model: JiraModel
    fake: FakeJira
    mp: pytest.MonkeyPatch

    def deliver_all(self) -> None:
        for hook in self.model.webhooks():
            assert self.pipeline.deliver(hook.body, identifier=hook.identifier)["statusCode"] == 202
        self.pipeline.drain()

    def use(self, wrap: Callable[[Handler], Handler]) -> None:
        """Run the reconcile poller's messages through `wrap(the real handler)`."""
        self.pipeline.reconciler.handler = wrap(reconcile_function.lambda_handler)


@contextmanager
def environment(endpoint: str, root: Path, model: JiraModel) -> Iterator[Run]:
    root.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp, FakeJira(model) as fake:
        point_at(fake, mp)
        try:
            yield Run(Pipeline(fresh_environment(endpoint, root, mp)), model, fake, mp)
        finally:
            services.reset()


# --- one scenario, run whole or in pieces ---------------------------------------------------------


def scenario() -> JiraModel:
    return JiraModel(seed=21, issues=9, max_changes=4)


def prepare(run: Run) -> None:
    """A third of the changes' webhooks lost, one creation refused as too large (so pending), then one captured
    issue deleted and one hidden without a webhook; Jira pages search results and changelogs small."""
    run.fake.page_limits["search_fields"] = 3
    run.fake.page_limits["bulk_changelog"] = 4
    model, pipeline = run.model, run.pipeline
    ids = sorted(model.issues)
    hooks = model.webhooks()
    big = next(h for h in hooks if h.issue_id == ids[0] and h.history_id is None)
    payload = json.loads(big.body)
    payload["issue"]["fields"]["environment"] = "x" * (6 * 1024 * 1024)
    assert pipeline.deliver(json.dumps(payload).encode(), identifier=big.identifier)["statusCode"] == 413
    rng = random.Random(7)
    for hook in hooks:
        if hook is big or (hook.history_id is not None and rng.random() < 0.35):
            continue
        assert pipeline.deliver(hook.body, identifier=hook.identifier)["statusCode"] == 202
    pipeline.drain()
    model.delete(ids[1])
    model.hide(ids[2])


def outcome(run: Run, job: JobRecord) -> dict[str, Any]:
    """S3 and git without capture bookkeeping, git commits per issue, and the job's counts.

    A deletion is dated when reconcile found it, so its time is left out.
    """
    found = content(run.pipeline)
    for items in found["snapshots"].values():
        for item in items:
            if item[1] == "jira:issue_deleted":
                item[0] = None
    for items in found["history"].values():
        for item in items:
            if item[0] == "jira:issue_deleted":
                item[1] = None
    stored = job.to_json()
    commits: dict[str, list[tuple[str | None, ...]]] = {}
    for commit in reversed(run.pipeline.commits()):
        t = commit.trailers
        commits.setdefault(t.get("Jira-Issue-Id", ""), []).append(
            (t.get("Jira-Event"), t.get("Jira-Changelog-Id"), t.get("Jira-Event-Id"), commit.author)
        )
    return {"content": found, "commits": commits, "job": {k: stored[k] for k in _PUBLIC_COUNTS}}


_baseline: dict[str, Any] = {}


def baseline(endpoint: str, root: Path) -> dict[str, Any]:
    """The scenario reconciled in one uninterrupted step (computed once per session)."""
    if not _baseline:
        with environment(endpoint, root / "baseline", scenario()) as run:
            prepare(run)
            lacking = {i.id: missing_entries(run, i.id) for i in run.model.visible_issues()}
            steps = record_steps(run)
            job = run.pipeline.sync()
            assert job.state == "succeeded", job
            # Each change JSync lacked is fed and counted once, though the pending issue is also in the search
            assert job.changes_fed == sum(lacking.values()), (job, lacking)
            assert job.issues_changed == sum(1 for n in lacking.values() if n)
            assert [s["step"] for s in steps] == [0], "the baseline must run in one step"
            assert job.pages_scanned >= 3 and job.deletes_found == 1 and len(job.not_visible) == 1
            _baseline.update(outcome(run, job))
    return _baseline


def missing_entries(run: Run, issue_id: str) -> int:
    wanted = {"created", *(h.id for h in run.model.issues[issue_id].histories)}
    return len(wanted - services.store().recorded_entries(issue_id))


def record_steps(run: Run) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    inner = run.pipeline.reconciler.handler

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bodies.extend(json.loads(r["body"]) for r in event["Records"])
        return inner(event, context)

    run.pipeline.reconciler.handler = handler
    return bodies


class AlwaysLate:
    """A Lambda context whose remaining time is always inside the handler's margin: one unit of work per step."""

    def get_remaining_time_in_millis(self) -> int:
        return 5_000


def always_late(handler: Handler) -> Handler:
    return lambda event, _context: handler(event, AlwaysLate())


def redelivered_at_once(handler: Handler) -> Handler:
    """A failed message comes straight back, before the writer has captured what the failed step fed."""

    def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
        answer = handler(event, context)
        return handler(event, context) if answer["batchItemFailures"] else answer

    return run


def past_the_dedup_window(mp: pytest.MonkeyPatch) -> list[str]:
    """Every event is a new SQS message, as when a step is retried after the sync queue's 90-minute visibility
    timeout, long after FIFO deduplication's 5 minutes: only JSync's own idempotence stands between a re-fed
    change and a duplicate. Returns the event ids sent, in order."""
    sent: list[str] = []

    def send_events(self: Queues, events: list[tuple[QueuedEvent, str, str | None]]) -> None:
        sent.extend(event.event_id for event, _, _ in events)
        self.bus.send(self.names["events"], [Outgoing(e.to_json(), group, uuid.uuid4().hex) for e, group, _ in events])

    mp.setattr(Queues, "send_events", send_events)
    return sent


# --- resumability -----------------------------------------------------------------------------------


def test_a_job_cut_to_one_unit_per_step_ends_exactly_as_one_uninterrupted_step(
    moto_endpoint: str, tmp_path: Path
) -> None:
    expected = baseline(moto_endpoint, tmp_path)
    with environment(moto_endpoint, tmp_path / "late", scenario()) as run:
        prepare(run)
        run.use(always_late)
        steps = record_steps(run)
        job = run.pipeline.sync()
        got = outcome(run, job)

    assert job.state == "succeeded", job
    # Every unit of work was its own step, each continued by the message the one before queued
    assert [s["step"] for s in steps] == list(range(len(steps)))
    assert len(steps) > job.pages_scanned + 2
    assert got["job"] == expected["job"], json.dumps([got["job"], expected["job"]])
    assert got == expected


@pytest.mark.parametrize("where", ["mid-page", "after a page is sent", "after feeding a deletion"])
def test_a_step_that_dies_is_retried_and_every_change_is_captured_exactly_once(
    moto_endpoint: str, tmp_path: Path, where: str
) -> None:
    expected = baseline(moto_endpoint, tmp_path)
    with environment(moto_endpoint, tmp_path / "crash", scenario()) as run:
        prepare(run)
        sent = past_the_dedup_window(run.mp)
        died = die_once(run.mp, where)
        run.use(redelivered_at_once)
        job = run.pipeline.sync()
        got = outcome(run, job)

    assert died, "the step never died: the test proves nothing"
    assert len(sent) > len(set(sent)), "nothing was fed twice: the test proves nothing"
    for issue_id, items in got["content"]["snapshots"].items():
        captured = [str(item[1]) for item in items]
        assert len(captured) == len(set(captured)), f"{issue_id} has a change captured twice: {captured}"
    assert got["job"] == expected["job"], json.dumps([got["job"], expected["job"]])
    assert got == expected


def die_once(mp: pytest.MonkeyPatch, where: str) -> list[str]:
    """The step dies (Lambda out of memory, say) once, right after a send and before the progress it covers is saved:
    mid-page (the page's events sent two at a time), after a whole search page's events are sent, or after the send
    that carries a deletion. Returns the event id sent last before dying."""
    died: list[str] = []
    page: dict[str, str] = {}  # "reading" inside Issues.page, "read" after it (its events go with the next save)
    reconcile_page, flush = Issues.page, Feed.flush
    if where == "mid-page":
        mp.setattr("pipeline.reconcile.feed.OUTBOX_LIMIT", 2)

    def on_page(self: Issues, job: JobRecord, issues: list[dict[str, Any]]) -> None:
        page["state"] = "reading"
        try:
            reconcile_page(self, job, issues)
        finally:
            page["state"] = "read"

    def on_flush(self: Feed) -> None:
        outgoing = [queued for queued, _ in self.outbox]
        flush(self)
        if died or not outgoing:
            return
        if where == "mid-page":
            dies = page.get("state") == "reading"
        elif where == "after a page is sent":
            dies = page.get("state") == "read"
        else:
            dies = any(json.loads(q.body or b"{}").get("webhookEvent") == "jira:issue_deleted" for q in outgoing)
        if dies:
            died.append(outgoing[-1].event_id)
            raise MemoryError("Runtime exited: the step dies here")

    mp.setattr(Issues, "page", on_page)
    mp.setattr(Feed, "flush", on_flush)
    return died


def test_a_rate_limit_longer_than_the_client_waits_ends_the_step_and_the_job_resumes(
    moto_endpoint: str, tmp_path: Path
) -> None:
    expected = baseline(moto_endpoint, tmp_path)
    with environment(moto_endpoint, tmp_path / "limited", scenario()) as run:
        prepare(run)
        run.fake.inject(429, times=1, retry_after=121, path="/rest/api/2/search/jql")  # the client waits 120 s at most
        hidden_for = spy_visibility(run)
        seen: list[JobRecord] = []
        run.use(lambda handler: after_each_step(handler, seen))
        job = run.pipeline.sync()
        got = outcome(run, job)

    # The step ended at once, asked SQS to bring the message back when Jira said, and said why meanwhile
    assert [r.status for r in run.fake.requests if r.path == "/rest/api/2/search/jql"][:2] == [429, 200]
    assert 121 in hidden_for
    assert [j.state for j in seen][:2] == ["running", "succeeded"]
    assert "rate limiting" in (seen[0].message or "")
    # And the job ended as if nothing had happened, the message gone with the wait
    assert job.message is None
    assert got["job"] == expected["job"], json.dumps([got["job"], expected["job"]])
    assert got == expected


def spy_visibility(run: Run) -> list[int]:
    """Visibility timeouts asked of SQS for the sync queue's messages."""
    sqs = services.aws("sqs")
    url = sqs.get_queue_url(QueueName=run.pipeline.settings.sync_queue)["QueueUrl"]
    original = sqs.change_message_visibility
    asked: list[int] = []

    def change_message_visibility(**kwargs: Any) -> Any:
        if kwargs["QueueUrl"] == url:
            asked.append(int(kwargs["VisibilityTimeout"]))
        return original(**kwargs)

    run.mp.setattr(sqs, "change_message_visibility", change_message_visibility)
    return asked


def after_each_step(handler: Handler, seen: list[JobRecord]) -> Handler:
    def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
        answer = handler(event, context)
        job_id = json.loads(event["Records"][0]["body"])["job_id"]
        found = jobs.load(services.store(), job_id)
        assert found is not None
        seen.append(found)
        return answer

    return run


# --- bugs found in review ---------------------------------------------------------------------------


def test_a_continuation_that_could_not_be_queued_is_queued_by_the_retry(moto_endpoint: str, tmp_path: Path) -> None:
    expected = baseline(moto_endpoint, tmp_path)
    with environment(moto_endpoint, tmp_path / "lost", scenario()) as run:
        prepare(run)
        run.use(always_late)
        failed: list[dict[str, Any]] = []
        send_sync = Queues.send_sync

        def flaky_send_sync(self: Queues, message: dict[str, Any]) -> None:
            if int(message.get("step") or 0) == 2 and not failed:
                failed.append(message)
                raise ConnectionError("SQS did not answer")
            send_sync(self, message)

        run.mp.setattr(Queues, "send_sync", flaky_send_sync)
        job = run.pipeline.sync()
        got = outcome(run, job)

    assert failed
    assert job.state == "succeeded", job  # not `running` forever with no message left to carry it on
    assert got["job"] == expected["job"], json.dumps([got["job"], expected["job"]])
    assert got == expected


class KilledByLambda(Exception):
    """Task timed out: Lambda stops the step wherever it is."""


def test_a_census_with_many_vanished_issues_finishes_within_steps_that_lambda_kills(
    moto_endpoint: str, tmp_path: Path
) -> None:
    # One project whose issues nearly all vanish at once: some deleted, most hidden (Browse taken away), and
    # reading them all takes longer than one Lambda may run
    model = JiraModel(seed=5, projects=("OPS",), issues=16, max_changes=1)
    with environment(moto_endpoint, tmp_path / "census", model) as run:
        run.deliver_all()
        run.fake.page_limits["search_fields"] = 3
        ids = sorted(model.issues)
        gone, hidden = ids[:3], ids[3:14]
        for issue_id in gone:
            model.delete(issue_id)
        for issue_id in hidden:
            model.hide(issue_id)
        kill_after_jira_requests(run, limit=10)
        job = run.pipeline.sync()

        assert job.state == "succeeded", job
        assert sorted(item.id for item in job.deleted) == gone and job.deletes_found == len(gone)
        assert sorted(item.id for item in job.not_visible) == hidden
        for issue_id in gone:
            state = run.pipeline.latest(issue_id)
            assert state is not None and state["deleted"], issue_id
            assert len(run.pipeline.keys(f"snapshots/{issue_id}/")) == 1 + len(model.issues[issue_id].histories) + 1


def kill_after_jira_requests(run: Run, limit: int) -> None:
    """Each step is a Lambda of `limit` x 10 s where every Jira request takes 10 s: its context counts down, and a
    step still at work when it reaches zero is killed."""
    clock: list[int] = [0]

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return max(0, limit - clock[0]) * 10_000

    request = JiraClient._json

    def timed(self: JiraClient, *args: Any, **kwargs: Any) -> Any:
        clock[0] += 1
        if clock[0] > limit:
            raise KilledByLambda(f"Task timed out after {limit * 10} seconds")
        return request(self, *args, **kwargs)

    def handler(inner: Handler) -> Handler:
        def run_one(event: dict[str, Any], _context: Any) -> dict[str, Any]:
            clock[0] = 0
            return inner(event, Context())

        return run_one

    run.mp.setattr(JiraClient, "_json", timed)
    run.use(handler)


def small_model() -> JiraModel:
    return JiraModel(seed=11, issues=4, max_changes=2)


@pytest.mark.parametrize("read", ["by its search page", "alone, its comments cut by the page"])
def test_a_change_captured_while_reconcile_reads_the_issue_is_never_undone(
    moto_endpoint: str, tmp_path: Path, read: str
) -> None:
    with environment(moto_endpoint, tmp_path / "race", small_model()) as run:
        run.deliver_all()
        target = sorted(run.model.issues)[0]
        run.model.add_change(target, kind="summary")  # its webhook is lost: reconcile will read the issue
        alone = read.startswith("alone")
        if alone:
            for _ in range(2):
                run.model.add_comment(target)
            run.fake.search_comment_limit = 1
        raced: list[str] = []

        def edited_now() -> None:
            # Someone changes the issue right after our read, and its webhook is captured at once
            hook = run.model.add_change(target, kind="status")
            raced.append(str(hook.history_id))
            assert run.pipeline.deliver(hook.body, identifier=hook.identifier)["statusCode"] == 202
            while run.pipeline.writer.poll_once():
                pass

        issue, search_page = JiraClient.issue, JiraClient.search_page

        def issue_then_edited(self: JiraClient, id_or_key: str, fields: list[str] | None = None, api: int = 3) -> Any:
            document = issue(self, id_or_key, fields, api)
            if id_or_key == target and fields is None and not raced:
                edited_now()
            return document

        def page_then_edited(self: JiraClient, jql: str, fields: list[str], *args: Any, **kwargs: Any) -> Any:
            issues, token = search_page(self, jql, fields, *args, **kwargs)
            if fields != ["id"] and any(i["id"] == target for i in issues) and not raced:
                edited_now()
            return issues, token

        run.mp.setattr(
            JiraClient, "issue" if alone else "search_page", issue_then_edited if alone else page_then_edited
        )
        job = run.pipeline.sync()

        assert raced and job.state == "succeeded", job
        # latest/ and git hold the newer change, not the document reconcile read before it
        assert_matches_jira(run.pipeline, run.model)


def test_a_webhook_mid_capture_when_reconcile_looks_adds_no_change_of_its_own(
    moto_endpoint: str, tmp_path: Path
) -> None:
    with environment(moto_endpoint, tmp_path / "inflight", small_model()) as run:
        run.deliver_all()
        target = sorted(run.model.issues)[0]
        hook = run.model.add_change(target, kind="summary")
        answer = run.pipeline.deliver(hook.body, identifier=hook.identifier)
        assert answer["statusCode"] == 202
        # The writer has claimed the change's entry but not yet moved latest/ (it is mid-capture, or died there and
        # waits for its retry) when reconcile reads the issue
        claim = {"event_id": answer["json"]["event_id"], "source": "webhook"}
        services.store().claim(changelog_marker_key(target, str(hook.history_id)), claim)

        job = run.pipeline.sync()

        assert job.state == "succeeded" and job.changes_fed == 0, job
        issue = run.model.issues[target]
        assert len(run.pipeline.keys(f"snapshots/{target}/")) == 1 + len(issue.histories)
        assert entries(run.pipeline, target) == ["created", *(h.id for h in issue.histories)]
        assert_matches_jira(run.pipeline, run.model)


def test_every_refused_pending_issue_stays_pending_once_the_error_list_is_full(
    moto_endpoint: str, tmp_path: Path
) -> None:
    with environment(moto_endpoint, tmp_path / "full", small_model()) as run:
        run.mp.setattr("pipeline.reconcile.jobs.MAX_REPORTED", 1)
        refused = sorted(run.model.issues)[:2]
        for issue_id in refused:
            services.store().put_json(pending_key(issue_id), {"issue_id": issue_id, "reason": "webhook_too_large"})
            run.fake.inject(400, times=1, retry_after=None, path=f"/rest/api/2/issue/{issue_id}")

        job = run.pipeline.sync(since_ms=4_102_444_800_000)  # 2100: the search finds nothing, only pending is read

        assert job.state == "finished_with_errors", job
        assert len(job.errors) == 1 and job.errors_omitted == 1
        for issue_id in refused:
            assert run.pipeline.keys(pending_key(issue_id)), f"{issue_id} was dropped from pending"


def test_a_late_copy_of_a_finished_jobs_message_leaves_the_job_as_it_ended(moto_endpoint: str, tmp_path: Path) -> None:
    with environment(moto_endpoint, tmp_path / "late-copy", small_model()) as run:
        job = run.pipeline.sync()
        assert job.state == "succeeded"
        run.mp.delenv("JSYNC_JIRA_TOKEN")
        services.reset()
        # The step's message comes back (its deletion failed) after the credentials were taken away
        record = {"messageId": "m-1", "body": json.dumps({"job_id": job.job_id, "step": job.step})}
        assert reconcile_function.lambda_handler({"Records": [record]}, None) == {"batchItemFailures": []}
        again = jobs.load(services.store(), job.job_id)
        assert again == job
