"""`make deploy`'s checks: required secrets, the optional Jira secret that turns the reconcile on, its schedule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ops import deploy
from tests.environments import reset_moto

ROOT = Path(__file__).resolve().parents[2]
REMOTE = "https://github.com/acme/jira-history.git"
TOKEN = "jira-token-value-never-printed"
GOOD_JIRA = {"url": "https://acme.atlassian.net", "email": "bot@acme.example", "token": TOKEN}


@pytest.fixture
def secrets(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A clean Secrets Manager holding the three required secrets for stage `prod`."""
    reset_moto(moto_endpoint)
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", moto_endpoint),
        ("JSYNC_GIT_REMOTE", REMOTE),
    ):
        monkeypatch.setenv(name, value)
    for name in ("RECONCILE_SCHEDULE", "JSYNC_ALARM_EMAIL", *deploy.STAGE_PARAMS.values()):
        monkeypatch.delenv(name, raising=False)
    client = boto3.client("secretsmanager")
    for name in deploy.SECRETS:
        client.create_secret(Name=f"jsync/prod/{name}", SecretString="x")
    yield client


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The serverless commands main() would run (none is run)."""
    ran: list[list[str]] = []
    monkeypatch.setattr(deploy.subprocess, "call", lambda command, cwd: ran.append(command) or 0)
    return ran


def params(command: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--param=").split("=", 1) for a in command if a.startswith("--param="))


def test_without_a_jira_secret_it_deploys_with_reconcile_off_and_says_how_to_turn_it_on(
    secrets: Any, commands: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy.main(["--stage", "prod"]) == 0
    [command] = commands
    assert params(command) == {"gitRemote": REMOTE}
    [line] = capsys.readouterr().out.splitlines()
    assert "reconcile is off" in line and "jsync/prod/jira" in line and "deploy again" in line


def test_a_usable_jira_secret_turns_reconcile_on_without_printing_it(
    secrets: Any, commands: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets.create_secret(Name="jsync/prod/jira", SecretString=json.dumps(GOOD_JIRA))
    assert deploy.main(["--stage", "prod"]) == 0
    [command] = commands
    assert params(command) == {
        "gitRemote": REMOTE,
        "jiraSecretName": "jsync/prod/jira",
        "reconcileState": "ENABLED",
    }
    out = capsys.readouterr()
    assert "reconcile is off" not in out.out
    assert TOKEN not in out.out + out.err and TOKEN not in json.dumps(command)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("not json", "is not JSON"),
        (json.dumps(["url", "email", "token"]), "is not JSON"),
        (json.dumps({**GOOD_JIRA, "token": " "}), "has no token"),
        (json.dumps({"url": GOOD_JIRA["url"], "token": TOKEN}), "has no email"),
        (json.dumps({**GOOD_JIRA, "url": "acme.atlassian.net"}), "url must be"),
    ],
)
def test_a_broken_jira_secret_stops_the_deploy_naming_fields_never_values(
    secrets: Any, commands: list[list[str]], capsys: pytest.CaptureFixture[str], value: str, named: str
) -> None:
    secrets.create_secret(Name="jsync/prod/jira", SecretString=value)
    assert deploy.main(["--stage", "prod"]) == 2
    assert commands == []
    err = capsys.readouterr().err
    assert "jsync/prod/jira" in err and named in err
    assert TOKEN not in err and "bot@acme.example" not in err


def test_reconcile_schedule_from_the_environment(
    secrets: Any, commands: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_SCHEDULE", "cron(0 3 * * ? *)")
    assert deploy.main(["--stage", "prod"]) == 0
    [command] = commands
    # One argument, spaces and all: serverless gets it unsplit.
    assert "--param=reconcileSchedule=cron(0 3 * * ? *)" in command


@pytest.mark.parametrize("schedule", ["daily", "cron(0 3 * * ? *", "rate(1 day) && echo"])
def test_a_malformed_schedule_stops_the_deploy(
    secrets: Any, commands: list[list[str]], capsys: pytest.CaptureFixture[str], schedule: str
) -> None:
    assert deploy.main(["--stage", "prod", "--reconcile-schedule", schedule]) == 2
    assert commands == [] and "RECONCILE_SCHEDULE" in capsys.readouterr().err


def test_missing_required_secrets_are_named_before_anything_about_jira(
    secrets: Any, commands: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets.delete_secret(SecretId="jsync/prod/git-token", ForceDeleteWithoutRecovery=True)
    assert deploy.main(["--stage", "prod"]) == 2
    assert commands == []
    out = capsys.readouterr()
    assert "jsync/prod/git-token" in out.err and "webhook-secret" not in out.err
    assert "jira" not in out.out + out.err


def test_a_remote_that_is_not_https_is_refused(
    secrets: Any, commands: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JSYNC_GIT_REMOTE", "git@github.com:acme/jira-history.git")
    assert deploy.main(["--stage", "prod"]) == 2
    assert commands == []


def test_the_stage_options_come_from_the_environment_on_every_deploy(
    secrets: Any, commands: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI sets them from its variables. CloudFormation forgets a param a deploy leaves out: each deploy passes all."""
    chosen = {
        "JSYNC_DOMAIN_NAME": "jira-history.acme.example",
        "JSYNC_CERTIFICATE_ARN": "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c",
        "JSYNC_HOSTED_ZONE_ID": "Z0123456789ABCDEFGHIJ",
        "JSYNC_WAF_RATE_LIMIT": "2000",
        "JSYNC_EVENT_BUS_NAME": "jira-changes",
        "JSYNC_ATTACHMENT_MAX_BYTES": " 52428800 ",
        "JSYNC_MONTHLY_BUDGET": "",  # empty: left out, as unset
    }
    for name, value in chosen.items():
        monkeypatch.setenv(name, value)
    assert deploy.main(["--stage", "prod"]) == 0
    [command] = commands
    assert params(command) == {
        "gitRemote": REMOTE,
        "domainName": "jira-history.acme.example",
        "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c",
        "hostedZoneId": "Z0123456789ABCDEFGHIJ",
        "wafRateLimit": "2000",
        "eventBusName": "jira-changes",
        "attachmentMaxBytes": "52428800",
    }
    # Every param the template reads from the environment this way is one serverless.yml knows
    template = (ROOT / "serverless.yml").read_text()
    assert all(f"${{param:{name}" in template for name in deploy.STAGE_PARAMS), "a param serverless.yml never reads"


def test_a_domain_without_its_certificate_stops_before_anything_changes(
    secrets: Any, commands: list[list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JSYNC_DOMAIN_NAME", "jira-history.acme.example")
    assert deploy.main(["--stage", "prod"]) == 2
    assert commands == []
    assert "JSYNC_CERTIFICATE_ARN" in capsys.readouterr().err
