"""`make deploy STAGE=name`: check what a deploy needs (secrets, git remote), then run `serverless deploy`."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ops.package import ROOT
from pipeline.settings import JiraCredentialsInvalid, jira_credentials_from

SECRETS = {
    "webhook-secret": "the Jira webhook secret (Jira shows it once when you create the webhook)",
    "api-keys": "comma-separated API keys for the read API",
    "git-token": "a token that may push to the git remote (e.g. a GitHub fine-grained token, contents: write)",
}
JIRA_SECRET = "jira"  # optional: with it the reconcile (and its schedule) is on
# EventBridge's two forms; anything else would fail only halfway through the CloudFormation update.
SCHEDULE = re.compile(r"(rate|cron)\([^()]+\)")


class DeployError(Exception):
    """A check failed; the message says what to do and never holds a secret's value."""


def missing_secrets(stage: str, client: Any) -> list[str]:
    """The stage's secrets that Secrets Manager does not hold (names only, values never read)."""
    missing = []
    for name in SECRETS:
        try:
            client.describe_secret(SecretId=f"jsync/{stage}/{name}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            missing.append(name)
    return missing


def jira_secret(stage: str, client: Any) -> str | None:
    """The stage's Jira secret name if it exists and is usable, None if there is none; DeployError if it is broken."""
    name = f"jsync/{stage}/{JIRA_SECRET}"
    try:
        raw = client.get_secret_value(SecretId=name).get("SecretString")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        return None
    try:
        data = json.loads(raw or "")
    except ValueError:
        data = None
    try:
        jira_credentials_from(data)  # the rule the reconcile function applies when it runs
    except JiraCredentialsInvalid as bad:
        if bad.not_json:
            raise DeployError(f'{name} is not JSON; it must be {{"url": ..., "email": ..., "token": ...}}') from None
        if bad.missing:
            missing = ", ".join(bad.missing)
            raise DeployError(f"{name} has no {missing}; it needs non-empty url, email and token") from None
        raise DeployError(f"{name}: url must be your Jira site's address, e.g. https://acme.atlassian.net") from None
    return name


def reconcile_params(stage: str, client: Any, schedule: str) -> list[str]:
    """The --param arguments that turn the reconcile on (a usable Jira secret) and set its schedule."""
    if schedule and not SCHEDULE.fullmatch(schedule.strip()):
        raise DeployError(
            f"RECONCILE_SCHEDULE must be rate(...) or cron(...), e.g. 'cron(0 3 * * ? *)', not {schedule!r}"
        )
    params = [f"--param=reconcileSchedule={schedule.strip()}"] if schedule else []
    name = jira_secret(stage, client)
    if name is None:
        print(
            f"jsync deploy: reconcile is off (no jsync/{stage}/{JIRA_SECRET} secret); to turn it on, create it as JSON "
            f'{{"url", "email", "token"}} (README "Deploy") and deploy again.'
        )
        return params
    return [*params, f"--param=jiraSecretName={name}", "--param=reconcileState=ENABLED"]


# The stage's optional params, each from an environment variable (CI sets them from its repository or environment
# variables). CloudFormation forgets a param a deploy leaves out, and removes what it made: every deploy passes all.
STAGE_PARAMS = {
    "gitBranch": "JSYNC_GIT_BRANCH",
    "logRetentionDays": "JSYNC_LOG_RETENTION_DAYS",
    "domainName": "JSYNC_DOMAIN_NAME",
    "certificateArn": "JSYNC_CERTIFICATE_ARN",
    "hostedZoneId": "JSYNC_HOSTED_ZONE_ID",
    "wafRateLimit": "JSYNC_WAF_RATE_LIMIT",
    "monthlyBudget": "JSYNC_MONTHLY_BUDGET",
    "eventBusName": "JSYNC_EVENT_BUS_NAME",
    "ingestConcurrency": "JSYNC_INGEST_CONCURRENCY",
    "apiConcurrency": "JSYNC_API_CONCURRENCY",
    "attachmentMaxBytes": "JSYNC_ATTACHMENT_MAX_BYTES",
    "attachmentsConcurrency": "JSYNC_ATTACHMENTS_CONCURRENCY",
}


def stage_params(env: Mapping[str, str]) -> list[str]:
    """`--param=name=value` for each optional param whose variable is set; a domain without its certificate is
    refused here rather than by CloudFront half-way through the update."""
    values = {name: env.get(variable, "").strip() for name, variable in STAGE_PARAMS.items()}
    if values["domainName"] and not values["certificateArn"]:
        raise DeployError("JSYNC_DOMAIN_NAME needs JSYNC_CERTIFICATE_ARN: an ACM certificate in us-east-1 for it.")
    return [f"--param={name}={value}" for name, value in values.items() if value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--git-remote", default=os.environ.get("JSYNC_GIT_REMOTE", ""))
    parser.add_argument("--alarm-email", default=os.environ.get("JSYNC_ALARM_EMAIL", ""))
    parser.add_argument("--reconcile-schedule", default=os.environ.get("RECONCILE_SCHEDULE", ""))
    args = parser.parse_args(argv)
    if not args.git_remote.startswith("https://"):
        print("jsync deploy: set JSYNC_GIT_REMOTE to the https:// URL of the repository to push to.", file=sys.stderr)
        return 2
    try:
        client = boto3.client("secretsmanager")
        missing = missing_secrets(args.stage, client)
        # Only when the required secrets are there, so a first deploy hears about those first.
        reconcile = [] if missing else reconcile_params(args.stage, client, args.reconcile_schedule)
        options = stage_params(os.environ)
    except DeployError as exc:
        print(f"jsync deploy: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        # The error code (e.g. AccessDeniedException) says which; it never holds a value.
        reason = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
        print(
            f"jsync deploy: cannot check Secrets Manager ({reason or type(exc).__name__}); are AWS credentials set?",
            file=sys.stderr,
        )
        return 2
    if missing:
        lines = [f"  jsync/{args.stage}/{name}: {SECRETS[name]}" for name in missing]
        print(
            "jsync deploy: these Secrets Manager secrets are missing; create them, then deploy again:\n"
            + "\n".join(lines)
            + f"\n  e.g. aws secretsmanager create-secret --name jsync/{args.stage}/{missing[0]} --secret-string '...'",
            file=sys.stderr,
        )
        return 2
    command = [
        "npx",
        "--no-install",
        "serverless",
        "deploy",
        "--stage",
        args.stage,
        f"--param=gitRemote={args.git_remote}",
    ]
    if args.alarm_email:
        command.append(f"--param=alarmEmail={args.alarm_email}")
    command += reconcile + options
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
