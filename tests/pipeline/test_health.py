"""Health names each failing part; every dead-letter queue counts, the reconcile's included; git is judged from the
committer's push record without any credential; refused webhook deliveries are counted and, when they are all
that arrives, fail the webhook check."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pipeline import services
from pipeline.capture import capture
from pipeline.git.store import RemoteUnavailable, is_local_remote, probe_tip
from pipeline.health import Check, GitProbe, run_checks
from pipeline.messages import QueuedEvent
from pipeline.redrive import retry_set_aside
from pipeline.settings import Settings
from pipeline.signature import sign
from pipeline.store import raw_key
from tests.builders import fixture_bytes
from tests.harness import Pipeline

TOKEN = "ghp_JSYNC-HEALTH-TOKEN-0c4e2a"


def checks_now(settings: Settings, probe: GitProbe | None = None) -> dict[str, Check]:
    return run_checks(settings, services.queue_bus(), services.store(), probe)


def local_probe(settings: Settings) -> GitProbe:
    return GitProbe(lambda: probe_tip(settings.git_remote, settings.git_branch), is_local_remote(settings.git_remote))


@pytest.mark.parametrize("dlq", ["events_dlq", "commits_dlq", "sync_dlq"])
def test_a_message_in_any_dead_letter_queue_fails_that_check_only(settings: Settings, dlq: str) -> None:
    sqs = services.aws("sqs")
    url = sqs.get_queue_url(QueueName=getattr(settings, dlq))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}", MessageGroupId="g", MessageDeduplicationId="d")

    checks = checks_now(settings, GitProbe(lambda: b"0" * 40, decisive=True))

    assert not checks["dead_letters"].ok
    assert getattr(settings, dlq) in checks["dead_letters"].detail
    assert checks["storage"].ok and checks["queues"].ok and checks["git"].ok and checks["webhook"].ok
    assert settings.sync_queue in checks["queues"].detail


def test_all_clear(settings: Settings) -> None:
    checks = checks_now(settings, local_probe(settings))
    assert all(check.ok for check in checks.values()), checks
    assert set(checks) == {"storage", "queues", "dead_letters", "git", "webhook", "set_aside"}
    assert checks["webhook"].as_dict()["refused_last_hour"] == {"signature": 0, "size": 0, "shape": 0}


# --- webhook deliveries ---------------------------------------------------------------------------------------


@pytest.fixture
def signed(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    monkeypatch.setenv("JSYNC_WEBHOOK_SECRET", "the-secret-jsync-holds")
    services.reset()
    return pipeline


def test_a_wrong_secret_fails_the_webhook_check_until_a_delivery_is_accepted(signed: Pipeline) -> None:
    # Given Jira signs with a secret JSync does not hold: every delivery is refused
    body = fixture_bytes("issue_created.json")
    for n in range(3):
        wrong = sign("the-secret-jira-holds", body)
        assert signed.deliver(body, identifier=f"w-{n}", **{"x-hub-signature": wrong})["statusCode"] == 401
    # Then health fails, names the webhook check, counts the refusals by reason and says what to check
    checks = checks_now(signed.settings, local_probe(signed.settings))
    webhook = checks["webhook"].as_dict()
    assert webhook["ok"] is False
    assert webhook["refused_last_hour"]["signature"] >= 1  # the first refusal of a minute is always written
    assert webhook["refused_last_hour"]["size"] == webhook["refused_last_hour"]["shape"] == 0
    assert "every delivery" in webhook["detail"] and "secret" in webhook["detail"]
    assert webhook["last_accepted_at"] is None
    assert [name for name, c in checks.items() if not c.ok] == ["webhook"]
    # When the secrets match again and a delivery gets through to the writer
    good = signed.deliver(body, identifier="w-ok", **{"x-hub-signature": sign("the-secret-jsync-holds", body)})
    assert good["statusCode"] == 202
    signed.drain()
    # Then the check passes, still reporting the hour's refusals
    webhook = checks_now(signed.settings, local_probe(signed.settings))["webhook"].as_dict()
    assert webhook["ok"] is True and webhook["refused_last_hour"]["signature"] >= 1
    assert webhook["last_accepted_at"] is not None


def test_a_reconcile_feed_does_not_hide_refused_webhooks(signed: Pipeline) -> None:
    from pipeline.intake import enqueue
    from pipeline.messages import QueuedEvent

    body = fixture_bytes("issue_created.json")
    assert signed.deliver(body, identifier="r-0", **{"x-hub-signature": "sha256=00"})["statusCode"] == 401
    # When reconcile feeds an event through the same queue (not a webhook Jira delivered)
    raw = "raw/2025/11/24/rc-10042-1.json"
    queued = QueuedEvent("rc-10042-1", int(time.time() * 1000), "application/json", raw, body, source="reconcile")
    enqueue(queued, "10042", services.queues(), services.store())
    signed.drain()
    assert signed.latest("10042") is not None  # the writer took it
    # Then every webhook is still refused, as far as health can tell
    assert not checks_now(signed.settings)["webhook"].ok


# --- git, without credentials ---------------------------------------------------------------------------------


def test_git_fails_once_the_committer_fails_to_push_and_recovers_with_the_next_push(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    settings = pipeline.settings
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="g-0")
    pipeline.drain()
    git = checks_now(settings)["git"].as_dict()
    assert git["ok"] is True and git["last_push"]["tip"] and git["last_error"] is None
    assert git["detail"].startswith("last push at ")
    # Given the remote goes away and the committer tries to push
    hidden = tmp_path / "hidden.git"
    os.rename(settings.git_remote, hidden)
    try:
        pipeline.deliver(fixture_bytes("issue_updated.json"), identifier="g-1")
        pipeline.writer.poll_once()
        pipeline.committer.poll_once()
        pipeline.committer.poll_once()
        # Then health fails naming git, with the error and since when, even without looking at the remote
        checks = checks_now(settings)
        git = checks["git"].as_dict()
        assert [name for name, c in checks.items() if not c.ok] == ["git"]
        assert git["ok"] is False and git["last_error"]["error"].startswith("RemoteUnavailable: ")
        assert git["last_error"]["since"] <= git["last_error"]["at"]
        assert f"failing since {git['last_error']['since']}" in git["detail"]
        assert git["last_push"]["tip"]  # the last good push is still shown
    finally:
        os.rename(hidden, settings.git_remote)
    # When it comes back and the committer pushes again
    pipeline.drain()
    git = checks_now(settings, local_probe(settings))["git"].as_dict()
    assert git["ok"] is True and git["remote_tip"] == git["last_push"]["tip"]
    assert git["last_error"] is not None  # kept for the record, but no longer failing


def test_a_local_remote_that_is_gone_fails_git_before_any_push(pipeline: Pipeline, tmp_path: Path) -> None:
    settings = pipeline.settings
    os.rename(settings.git_remote, tmp_path / "gone.git")
    git = checks_now(settings, local_probe(settings))["git"]
    assert not git.ok and "remote unreachable" in git.detail


def test_an_anonymous_probe_that_is_refused_does_not_fail_git(settings: Settings) -> None:
    def refused() -> bytes | None:
        raise RemoteUnavailable("HTTPUnauthorized: No valid credentials provided")

    git = checks_now(settings, GitProbe(refused, decisive=False))["git"]
    assert git.ok and "not readable without credentials" in git.detail


def test_the_push_record_never_holds_the_token(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline.deliver(fixture_bytes("issue_created.json"), identifier="t-0")
    pipeline.writer.poll_once()
    # Given an http remote that refuses, reached with a token in the URL as people also write it
    monkeypatch.setenv("JSYNC_GIT_REMOTE", f"http://x-access-token:{TOKEN}@127.0.0.1:9/org/repo.git")
    monkeypatch.setenv("JSYNC_GIT_TOKEN", TOKEN)
    services.reset()
    pipeline.committer.poll_once()
    record = services.store().read_json("gitstate/_push.json")
    assert record is not None and record.data["ok"] is False
    assert TOKEN not in json.dumps(record.data) and TOKEN[-8:] not in json.dumps(record.data)
    # and health shows it without reading any secret
    checks = run_checks(services.get_settings(), services.queue_bus(), services.store(), None)
    assert not checks["git"].ok and TOKEN not in checks["git"].detail


@pytest.mark.parametrize("private", [True, False], ids=["private", "public"])
def test_an_http_remote_is_looked_at_anonymously(settings: Settings, tmp_path: Path, private: bool) -> None:
    from bench.gitserver import GitServer, init_bare
    from pipeline.git.store import GitStore, Person

    root = tmp_path / "srv"
    root.mkdir()
    init_bare(root / "repo.git")
    with GitServer(root, TOKEN if private else None) as server:
        pusher = GitStore(server.url("repo.git"), "main", tmp_path / "push.git", token=TOKEN if private else None)
        pusher.fetch()
        pusher.stage({"a.json": b"{}\n"}, Person("Ada", "ada@jira.invalid"), 1764000000, "a\n")
        pusher.push()
        # Given the remote as people write it, with the token in the URL
        remote = server.url("repo.git", with_token=True)
        probe = GitProbe(lambda: probe_tip(remote, "main"), is_local_remote(remote))
        git = checks_now(settings, probe)["git"]
        pusher_tip = pusher.tip
        pusher.close()
    # Then the look never sends the token: a private remote refuses it, which alone never fails git
    facts = git.as_dict()
    assert git.ok and TOKEN not in json.dumps(facts)
    if private:
        assert "not readable without credentials" in git.detail and facts["remote_tip"] is None
    else:
        assert facts["remote_tip"] == pusher_tip.decode()


# --- events set aside -------------------------------------------------------------------------------------------


def test_an_event_the_writer_set_aside_fails_its_check_naming_why_until_it_is_redriven(settings: Settings) -> None:
    # Given an accepted event the writer cannot interpret (a body no longer valid under ingest's rule)
    body = b'{"webhookEvent": "jira:issue_updated", "issue": {"id": "1' + b"0" * 40 + b'"}}'
    key = raw_key("set-aside-1", 1764000000000, "json")
    queued = QueuedEvent("set-aside-1", 1764000000000, "application/json", key, body)
    capture(queued, services.store(), services.queues().send_change)

    # Then health fails that check alone, saying how many, why and what to do
    checks = checks_now(settings, GitProbe(lambda: b"0" * 40, decisive=True))
    assert not checks["set_aside"].ok
    assert checks["set_aside"].as_dict()["count"] == 1
    assert "missing_issue_id" in checks["set_aside"].detail and "make redrive" in checks["set_aside"].detail
    assert all(check.ok for name, check in checks.items() if name != "set_aside")

    # And once redriven (and set aside again only if still unreadable), the check follows
    assert retry_set_aside(services.store(), services.queues()) == 1
    assert checks_now(settings, GitProbe(lambda: b"0" * 40, decisive=True))["set_aside"].ok


def test_a_check_that_breaks_fails_with_its_reason_and_the_others_still_report(settings: Settings) -> None:
    # Given the bucket is gone
    services.aws("s3").delete_bucket(Bucket=settings.bucket)
    # When health runs
    checks = checks_now(settings, local_probe(settings))
    # Then storage fails, naming the error, and the queue checks still answer on their own
    assert not checks["storage"].ok
    assert checks["storage"].detail.startswith("ClientError: ")
    assert "404" in checks["storage"].detail or "NoSuchBucket" in checks["storage"].detail
    assert checks["queues"].ok and checks["dead_letters"].ok


def test_an_ssh_remote_is_not_looked_at_and_does_not_fail_git(settings: Settings) -> None:
    remote = "git@github.com:example/jira-mirror.git"
    probe = GitProbe(lambda: probe_tip(remote, "main"), is_local_remote(remote))
    with pytest.raises(RemoteUnavailable, match="only path, file:// and http"):
        probe.tip()
    check = checks_now(settings, probe)["git"]
    assert check.ok
    assert "remote not readable without credentials (only path, file:// and http(s) remotes" in check.detail
