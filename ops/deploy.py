"""`make deploy STAGE=name`: check what a deploy needs (secrets, git remote), then run `serverless deploy`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ops.package import ROOT

SECRETS = {
    "webhook-secret": "the Jira webhook secret (Jira shows it once when you create the webhook)",
    "api-keys": "comma-separated API keys for the read API",
    "git-token": "a token that may push to the git remote (e.g. a GitHub fine-grained token, contents: write)",
}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--git-remote", default=os.environ.get("JSYNC_GIT_REMOTE", ""))
    parser.add_argument("--alarm-email", default=os.environ.get("JSYNC_ALARM_EMAIL", ""))
    args = parser.parse_args(argv)
    if not args.git_remote.startswith("https://"):
        print("jsync deploy: set JSYNC_GIT_REMOTE to the https:// URL of the repository to push to.", file=sys.stderr)
        return 2
    try:
        missing = missing_secrets(args.stage, boto3.client("secretsmanager"))
    except (BotoCoreError, ClientError) as exc:
        print(
            f"jsync deploy: cannot check Secrets Manager ({type(exc).__name__}); are AWS credentials set?",
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
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
