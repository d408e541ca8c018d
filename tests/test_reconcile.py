"""Reconcile end to end: a seeded fake Jira, its webhooks delivered with some dropped, then `sync` through the real
reconcile, writer and committer handlers against the moto server and a bare git remote."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline import fields, reader, services
from pipeline.ids import canonical_json
from pipeline.intake import enqueue_many
from pipeline.messages import QueuedEvent
from pipeline.queues import Queues
from pipeline.reconcile import jobs
from pipeline.reconcile.feed import Outgoing
from pipeline.reconcile.jira import JiraClient
from pipeline.reconcile.jobs import JobRecord
from pipeline.reconcile.phases import SEARCH_PAGE
from pipeline.reconcile.reconciler import Reconciler, scheduled_run_due
from pipeline.settings import MAX_INLINE_MESSAGE_BYTES
from pipeline.snapshot import git_path, issue_document
from pipeline.store import pending_key
from tests.environments import fresh_environment
from tests.fakejira import EMAIL, TOKEN, USERS, FakeJira, JiraModel, ModelWebhook
from tests.harness import Pipeline

SEARCH = "POST /rest/api/2/search/jql"
BULK = "POST /rest/api/3/changelog/bulkfetch"
GET_ISSUE = "GET /rest/api/2/issue/{id}"


def point_at(fake: FakeJira, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSYNC_JIRA_URL", fake.base_url)
    monkeypatch.setenv("JSYNC_JIRA_EMAIL", EMAIL)
    monkeypatch.setenv("JSYNC_JIRA_TOKEN", TOKEN)


@pytest.fixture
def model() -> JiraModel:
    return JiraModel(seed=11, issues=16, max_changes=6)


@pytest.fixture
def synced(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeJira) -> Iterator[Pipeline]:
    point_at(fake, monkeypatch)
    yield Pipeline(fresh_environment(moto_endpoint, tmp_path, monkeypatch))
    services.reset()


def deliver(pipeline: Pipeline, hooks: list[ModelWebhook]) -> None:
    for hook in hooks:
        answer = pipeline.deliver(hook.body, identifier=hook.identifier)
        assert answer["statusCode"] == 202, answer
    pipeline.drain()


def entries(pipeline: Pipeline, issue_id: str) -> list[str]:
    """The changelog entries an issue's snapshots record, in event order: `created`, then changelog ids."""
    found: list[tuple[int, int, str]] = []
    for key in pipeline.keys(f"snapshots/{issue_id}/"):
        snapshot = json.loads(services.store().get_bytes(key))
        capture = snapshot["capture"]
        if capture["event_type"] == "jira:issue_created":
            found.append((capture["event_time"], 0, "created"))
        elif capture["changelog"]:
            found.append((capture["event_time"], int(capture["changelog"]["id"]), str(capture["changelog"]["id"])))
    return [entry for _, _, entry in sorted(found)]


def commits_of(pipeline: Pipeline, issue_id: str) -> list[Any]:
    return [c for c in reversed(pipeline.commits()) if c.trailers.get("Jira-Issue-Id") == issue_id]


def committed_entries(pipeline: Pipeline, issue_id: str) -> list[str]:
    out = []
    for commit in commits_of(pipeline, issue_id):
        if commit.trailers.get("Jira-Event") == "jira:issue_created":
            out.append("created")
        elif "Jira-Changelog-Id" in commit.trailers:
            out.append(commit.trailers["Jira-Changelog-Id"])
    return out


def assert_matches_jira(pipeline: Pipeline, model: JiraModel) -> None:
    for issue in model.visible_issues():
        current = issue_document(model.issue_json(issue.id, api=2))
        state = pipeline.latest(issue.id)
        assert state is not None, f"{issue.key} not captured"
        assert state["issue"] == current, issue.key
        assert pipeline.git_file(git_path(issue.key, issue.id)) == canonical_json(current), issue.key
        assert entries(pipeline, issue.id) == ["created", *(h.id for h in issue.histories)], issue.key


def test_dropped_webhooks_are_recovered_and_a_second_run_adds_nothing(synced: Pipeline, model: JiraModel) -> None:
    # Given every webhook but a third of them, delivered in order
    hooks = model.webhooks()
    rng = random.Random(5)
    dropped = {h.identifier for h in hooks if rng.random() < 0.35}
    deliver(synced, [h for h in hooks if h.identifier not in dropped])

    # When reconcile runs
    job = synced.sync()

    # Then S3, history and git hold Jira's state and every changelog entry
    assert job.state == "succeeded", job
    assert job.changes_fed == len(dropped)
    assert_matches_jira(synced, model)
    for issue in model.visible_issues():
        mine = [h for h in hooks if h.issue_id == issue.id]
        kept = [h.identifier not in dropped for h in mine]
        if kept == sorted(kept, reverse=True):  # only a tail was lost: git can replay it entry for entry
            expected = ["created", *(h.id for h in issue.histories)]
            assert committed_entries(synced, issue.id) == expected, issue.key
        history = synced_history(synced, issue.id)
        assert [item["event"] for item in history][-1] == "jira:issue_created"
        assert len(history) == len(issue.histories) + 1
    fed = [json.loads(services.store().get_bytes(k)) for k in synced.keys("snapshots/")]
    assert {s["capture"]["source"] for s in fed} == {"webhook", "reconcile"}

    # And a second run finds nothing to do
    snapshots, commits = synced.keys("snapshots/"), len(synced.commits())
    again = synced.sync()
    assert again.state == "succeeded" and again.changes_fed == 0, again
    assert synced.keys("snapshots/") == snapshots
    assert len(synced.commits()) == commits


def synced_history(pipeline: Pipeline, issue_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = reader.history(services.store(), issue_id, 50, cursor)
        items += page.items
        cursor = page.next_cursor
        if not cursor:
            return items


def test_an_instance_seen_first_by_reconcile_gets_one_commit_per_changelog_entry(
    synced: Pipeline, model: JiraModel, fake: FakeJira
) -> None:
    job = synced.sync()

    assert job.state == "succeeded", job
    assert job.issues_scanned == len(model.issues)
    assert_matches_jira(synced, model)
    # One search page brought every document, one bulk read every changelog: no issue was read alone
    counts = fake.counts()
    assert (counts[SEARCH], counts[BULK], counts[GET_ISSUE]) == (1, 1, 0), counts
    for issue in model.visible_issues():
        commits = commits_of(synced, issue.id)
        assert committed_entries(synced, issue.id) == ["created", *(h.id for h in issue.histories)], issue.key
        # Author and time come from the changelog entry
        for commit, history in zip(commits[1:], issue.histories, strict=True):
            assert commit.author_time == history.created_ms // 1000
            name = next(u[1] for u in USERS if u[0] == history.author)
            assert commit.author.startswith(name), (commit.author, name)


def test_deleted_and_hidden_issues_are_told_apart(synced: Pipeline, model: JiraModel) -> None:
    deliver(synced, model.webhooks())
    gone, hidden = sorted(model.issues)[:2]
    gone_key = model.issues[gone].key
    model.delete(gone)  # its webhook is lost
    model.hide(hidden)

    job = synced.sync()

    assert job.deletes_found == 1
    assert [item.id for item in job.deleted] == [gone]
    assert [item.id for item in job.not_visible] == [hidden]
    assert synced.latest(gone)["deleted"] is True
    assert synced.git_file(git_path(gone_key, gone)) is None
    hidden_state = synced.latest(hidden)
    assert hidden_state is not None and not hidden_state["deleted"]
    assert synced.git_file(git_path(model.issues[hidden].key, hidden)) is not None
    # A second run records no second deletion
    assert synced.sync().deletes_found == 0


def test_rate_limits_are_waited_out_and_other_refusals_are_reported(
    synced: Pipeline, model: JiraModel, fake: FakeJira
) -> None:
    fake.inject(429, times=2, retry_after=0.05, path="/rest/api/2/search/jql")
    broken = sorted(model.issues)[3]
    # Its comments are more than a search page lists, so it is read alone, and Jira refuses that read
    for _ in range(3):
        model.add_comment(broken)
    fake.search_comment_limit = 2
    fake.inject(400, times=1, retry_after=None, path=f"/rest/api/2/issue/{broken}")

    job = synced.sync()

    assert [r.status for r in fake.requests if r.path == "/rest/api/2/search/jql"][:3] == [429, 429, 200]
    assert job.state == "finished_with_errors", job
    assert [(e.issue_id, e.status) for e in job.errors] == [(broken, 400)]
    assert synced.latest(broken) is None
    assert synced.keys(pending_key(broken))  # kept for the next run

    # The next run picks it up
    assert synced.sync().state == "succeeded"
    assert_matches_jira(synced, model)


def test_a_webhook_too_big_to_accept_is_captured_by_the_next_reconcile(synced: Pipeline, model: JiraModel) -> None:
    issue_id = sorted(model.issues)[0]
    hook = model.webhooks(issue_id)[0]
    payload = json.loads(hook.body)
    payload["issue"]["fields"]["environment"] = "x" * (6 * 1024 * 1024)
    answer = synced.deliver(json.dumps(payload).encode(), identifier=hook.identifier)
    assert answer["statusCode"] == 413
    assert issue_id in answer["json"]["detail"]
    assert synced.keys(pending_key(issue_id))

    # Reconcile scoped to another project still takes the pending issue
    other = next(p for p in model.projects if p != model.issues[issue_id].project)
    job = synced.sync(project=other)
    assert job.state == "succeeded", job
    assert synced.latest(issue_id) is not None
    assert not synced.keys(pending_key(issue_id))


def test_without_credentials_a_job_fails_with_a_clear_message(
    synced: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JSYNC_JIRA_TOKEN")
    services.reset()
    job = Pipeline(synced.settings).sync()
    assert job.state == "failed"
    assert "token" in job.message and "JSYNC_JIRA_TOKEN" in job.message


def test_wrong_credentials_fail_the_job_without_leaking_the_token(
    synced: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JSYNC_JIRA_TOKEN", "not-the-token-xyz")
    services.reset()
    job = Pipeline(synced.settings).sync()
    assert job.state == "failed"
    assert "401" in job.message and "not-the-token-xyz" not in json.dumps(job.to_json())


def test_a_scheduled_run_is_due_a_day_after_the_last_full_run_and_never_before_a_first(
    synced: Pipeline, model: JiraModel
) -> None:
    store = services.store()
    assert not scheduled_run_due(store, 24, now_ms=10**13)  # nothing ever ran: a backfill is started on purpose
    job = synced.sync()
    started = job.resume.started_ms
    assert not scheduled_run_due(store, 24, started + 23 * 3_600_000)
    assert scheduled_run_due(store, 24, started + 24 * 3_600_000)
    assert not scheduled_run_due(store, 0, started + 10**9)  # 0: on demand only
    # A run of one project is not a run of every project
    synced.sync(project=model.projects[0])
    assert scheduled_run_due(store, 24, started + 24 * 3_600_000)


def test_an_issue_moved_out_of_a_project_is_fed_once_not_again_by_that_projects_census(
    synced: Pipeline, model: JiraModel
) -> None:
    deliver(synced, model.webhooks())
    issue_id = sorted(model.issues)[0]
    model.add_change(issue_id, kind="move")  # its webhook is lost

    job = synced.sync()

    assert (job.state, job.changes_fed, job.issues_changed) == ("succeeded", 1, 1), job
    assert_matches_jira(synced, model)


def test_a_scheduled_message_names_its_job_by_the_schedules_time_so_a_redelivery_resumes_it(synced: Pipeline) -> None:
    services.queues().send_sync({"scheduled": True, "time": "2026-11-25T03:00:00Z"})
    synced.drain()
    job = jobs.load(services.store(), "scheduled-20261125T030000Z")
    assert job is not None and job.trigger == "schedule" and job.state == "succeeded", job
    # The same schedule message again (redriven from the DLQ, past SQS's dedup window) starts nothing new
    services.queues().send_sync({"scheduled": True, "time": "2026-11-25T03:00:00Z", "redriven": 1})
    synced.drain()
    assert [k for k in synced.keys("sync/jobs/")] == ["sync/jobs/scheduled-20261125T030000Z.json"]
    assert jobs.load(services.store(), "scheduled-20261125T030000Z").updated_at == job.updated_at


_JIRA_TIME = re.compile(rb'"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[^"]*)"')
CHICAGO_WINTER = timezone(timedelta(hours=-5))


@pytest.mark.parametrize("model", [JiraModel(seed=11, issues=16, max_changes=6, rest_zone=CHICAGO_WINTER)])
def test_rest_rendering_times_in_the_sites_zone_adds_no_phantom_change(synced: Pipeline, model: JiraModel) -> None:
    # Given a Jira whose REST answers say -0500 while its webhooks say +0000, and of each issue's webhooks only
    # the creation and the last change delivered (what lies between is lost, so reconcile rebuilds it)
    issues = model.visible_issues()
    assert any(len(i.histories) >= 2 for i in issues), "the seed must give an issue a lost middle"
    assert model.issue_json(issues[0].id)["fields"]["updated"].endswith("-0500")
    hooks = [h for i in issues for h in first_and_last(model.webhooks(i.id))]
    deliver(synced, hooks)
    delivered = {h.identifier for h in hooks}

    # When reconcile runs
    job = synced.sync()

    # Then it feeds exactly the lost changelog entries, and nothing for a state it already holds
    lost = [h for h in model.webhooks() if h.identifier not in delivered]
    assert job.state == "succeeded", job
    assert job.changes_fed == len(lost), job
    for issue in issues:
        history = synced_history(synced, issue.id)
        assert len(history) == len(issue.histories) + 1, (issue.key, [h["event"] for h in history])
        commits = commits_of(synced, issue.id)
        assert not [c for c in commits if c.author.startswith("Jira ")], issue.key
        # The lost middle is older than the delivered last change: a snapshot, no commit
        assert committed_entries(synced, issue.id) == ["created", *(h.id for h in issue.histories[-1:])], issue.key
        # And every stored time is UTC in Jira's format, in git and in S3
        content = synced.git_file(git_path(issue.key, issue.id))
        assert content is not None
        times = _JIRA_TIME.findall(content)
        assert times and all(re.fullmatch(rb"[\d-]{10}T[\d:]{8}\.\d{3}\+0000", t) for t in times), (issue.key, times)
        assert content == canonical_json(synced.latest(issue.id)["issue"]), issue.key
    assert_matches_jira(synced, model)

    # When the next change of an issue arrives by webhook
    issue = next(i for i in issues if len(i.histories) >= 2)
    path = git_path(issue.key, issue.id)
    before = synced.git_file(path)
    deliver(synced, [model.add_change(issue.id, kind="priority")])

    # Then only what changed differs in git: the times it did not touch are byte-identical
    after = synced.git_file(path)
    assert before is not None and after is not None
    changed = {line.strip().split(b":")[0] for line in set(before.splitlines()) ^ set(after.splitlines())}
    assert changed <= {b'"updated"', b'"self"', b'"iconUrl"', b'"name"', b'"id"'}, changed
    assert b'"updated"' in changed
    # And a second reconcile finds nothing to do
    commits = len(synced.commits())
    again = synced.sync()
    assert again.state == "succeeded" and again.changes_fed == 0, again
    assert len(synced.commits()) == commits


def first_and_last(hooks: list[ModelWebhook]) -> list[ModelWebhook]:
    return hooks[:1] + hooks[1:][-1:]


# --- Jira requests and queue sends -------------------------------------------------------------------


@pytest.mark.parametrize("cut", [None, 2])
def test_issues_are_read_alone_exactly_when_the_search_page_cut_their_comments(
    synced: Pipeline, model: JiraModel, fake: FakeJira, cut: int | None
) -> None:
    # Given three issues with comments, two of them with more than a search page lists (when it cuts at all)
    ids = sorted(model.issues)
    commented = {ids[0]: 3, ids[5]: 4, ids[7]: 1}
    for issue_id, count in commented.items():
        for _ in range(count):
            model.add_comment(issue_id)
    fake.search_comment_limit = cut

    job = synced.sync()

    # Then only the issues whose comments were cut are read alone, and their changelogs read again after them
    assert job.state == "succeeded", job
    alone = sorted(i for i, n in commented.items() if cut is not None and n > cut)
    reads = [r.path.rsplit("/", 1)[-1] for r in fake.requests if r.method == "GET" and "/issue/" in r.path]
    assert sorted(reads) == alone
    counts = fake.counts()
    assert (counts[SEARCH], counts[BULK]) == (1, 1 + bool(alone)), counts
    bulk_reads = [r.body["issueIdsOrKeys"] for r in fake.requests if r.path.endswith("/changelog/bulkfetch")]
    assert bulk_reads[1:] == ([alone] if alone else [])
    # And every issue is stored whole: all its comments, every changelog entry
    assert_matches_jira(synced, model)
    for issue_id, count in commented.items():
        assert len(synced.latest(issue_id)["issue"]["fields"]["comment"]["comments"]) == count


def test_a_backfill_of_a_big_site_costs_a_tenth_of_a_request_an_issue_and_feeds_every_entry(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a site of 500 issues JSync has never seen, a few with comments, one with more than a page lists
    model = JiraModel(seed=7, issues=500, max_changes=8)
    ids = sorted(model.issues)
    for issue_id in ids[::97]:
        model.add_comment(issue_id)
    for _ in range(4):
        model.add_comment(ids[123])
    fresh_environment(moto_endpoint, tmp_path, monkeypatch, backend="embedded")
    with FakeJira(model) as fake:
        fake.search_comment_limit = 3
        sent: list[Outgoing] = []
        saves: list[int] = []
        reconciler = Reconciler(
            services.store(),
            JiraClient(fake.base_url, EMAIL, TOKEN, sleep=lambda _: None),
            sent.append,
            lambda: model.now_ms + 60_000,
        )
        save = jobs.save

        def saved(store: Any, job: JobRecord) -> None:
            # Progress is recorded only once what was fed up to there is on the queue
            assert not reconciler.feed.outbox, "progress saved before its events were sent"
            saves.append(sum(len(batch) for batch in sent))
            save(store, job)

        monkeypatch.setattr(jobs, "save", saved)
        job = jobs.new_job("backfill", "api", None, None, model.now_ms)
        assert reconciler.run(job, lambda: False)
        counts = fake.counts()

    # When it is backfilled, it costs a search page and a bulk changelog read per 50 issues, plus a few
    assert job.state == "succeeded", job
    pages = -(-len(ids) // SEARCH_PAGE)
    assert counts[SEARCH] == pages and counts[BULK] == pages + 1, counts  # + the cut issue's changelog, read again
    assert counts[GET_ISSUE] == 1, counts  # the cut issue alone
    assert sum(counts.values()) <= len(ids) / 10, counts
    # And every changelog entry (and each issue's creation) is fed, once, each issue's in order
    fed = [queued.event_id for batch in sent for queued, _ in batch]
    assert len(fed) == len(set(fed))
    for issue in model.issues.values():
        # (A refresh, `rc-<id>-u<updated>-<digest>`, follows an issue's last entry when a comment came after it.)
        mine = [e for e in fed if e.startswith(f"rc-{issue.id}-") and not e.split("-", 2)[2].startswith("u")]
        assert mine == [f"rc-{issue.id}-{key}" for key in ("created", *(h.id for h in issue.histories))], issue.key
    assert job.changes_fed == len(fed)
    # Sent a page at a time (or OUTBOX_LIMIT at a time), not an event at a time
    assert len(sent) <= pages + len(fed) // 100 + 1 and all(sent)
    assert saves == sorted(saves) and saves[-1] == len(fed)


def test_an_event_too_big_for_a_message_is_sent_by_reference_in_its_batch(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_environment(moto_endpoint, tmp_path, monkeypatch, backend="embedded")
    store = services.store()
    big = b'{"environment": "' + b"x" * MAX_INLINE_MESSAGE_BYTES + b'"}'
    events = [
        (QueuedEvent(f"rc-1-{n}", 1, "application/json", f"raw/2026/01/01/rc-1-{n}.json", body, "reconcile"), "1")
        for n, body in enumerate([b"{}", big, b'{"a": 1}'])
    ]
    calls: list[list[tuple[QueuedEvent, str, str | None]]] = []

    class Spy(Queues):
        def send_events(self, events: list[tuple[QueuedEvent, str, str | None]]) -> None:
            calls.append(events)

    enqueue_many(events, Spy(services.queue_bus(), "events", "commits"), store)

    # One batch, in order; the big one by reference to its raw copy, stored first; the others inline
    assert len(calls) == 1
    assert [(e.event_id, group, dedup) for e, group, dedup in calls[0]] == [
        ("rc-1-0", "1", None),
        ("rc-1-1", "1", None),
        ("rc-1-2", "1", None),
    ]
    assert [e.body for e, _, _ in calls[0]] == [b"{}", None, b'{"a": 1}']
    assert store.get_bytes(events[1][0].raw_key) == big


def test_each_run_keeps_jiras_field_catalogue_and_git_gets_fields_json_only_when_it_changed(
    synced: Pipeline, fake: FakeJira
) -> None:
    # Given a first reconcile
    synced.sync()
    expected = fields.catalogue_of(fake.field_catalogue())
    # Then the catalogue is kept and committed at the repository's root, names and all
    assert fields.load(services.store()) == expected
    assert synced.git_file(fields.GIT_PATH) == canonical_json(expected)
    assert fields.names(services.store())["customfield_10016"] == "Story point estimate"
    catalogue_commits = [c for c in synced.commits() if c.message.startswith("fields.json:")]
    assert len(catalogue_commits) == 1

    # When Jira's admin renames a field and reconcile runs again with nothing else to do
    fake.field_names["customfield_10016"] = "Story points"
    job = synced.sync()
    # Then one commit carries the new name, and nothing else moved
    assert job.state == "succeeded" and job.changes_fed == 0, job
    assert fields.names(services.store())["customfield_10016"] == "Story points"
    assert b'"name": "Story points"' in (synced.git_file(fields.GIT_PATH) or b"")
    assert [c.message.split("\n", 1)[0] for c in synced.commits()[:1]] == [
        "fields.json: Jira's field catalogue changed"
    ]

    # And a run with the same catalogue commits nothing
    before = len(synced.commits())
    synced.sync()
    assert len(synced.commits()) == before


def test_a_catalogue_jira_will_not_give_keeps_the_old_one_and_the_job_goes_on(synced: Pipeline, fake: FakeJira) -> None:
    synced.sync()
    kept = fields.load(services.store())
    # Given Jira refusing the field catalogue
    fake.inject(403, times=1, path="/rest/api/3/field")
    fake.field_names["summary"] = "Title"
    # When reconcile runs
    job = synced.sync()
    # Then the job succeeds and the catalogue is the one kept before
    assert job.state == "succeeded", job
    assert fields.load(services.store()) == kept
