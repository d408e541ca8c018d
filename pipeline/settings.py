"""Configuration, read once from the environment; secrets from the environment locally, Secrets Manager deployed.

Stdlib only at import, so the ingest Lambda stays light.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

MAX_WEBHOOK_BYTES = 6 * 1024 * 1024  # what a Lambda Function URL accepts
# SQS takes 1 MiB per message; a larger one carries its body by reference to the raw S3 object.
MAX_INLINE_MESSAGE_BYTES = 960 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs to know about where things live."""

    bucket: str
    events_queue: str
    commits_queue: str
    sync_queue: str
    region: str
    aws_endpoint_url: str | None
    git_remote: str
    git_branch: str
    git_cache_dir: Path
    home: Path
    port: int
    secrets: Secrets
    sync_lookback_minutes: int = 30
    sync_every_hours: float = 24.0  # local stack's schedule (deployed: the EventBridge rule); 0 turns it off
    backend: str = "embedded"  # "embedded": SQLite under home; "aws": S3 and SQS through boto3
    bell_queue: str = "jsync-local-bell.fifo"  # wakes the committer, which drains the commits queue itself
    commit_batch_changes: int = 1_000  # the most one push carries
    commit_batch_seconds: float = 5.0  # the longest the committer receives before it commits and pushes
    commit_visibility_seconds: int = 240  # how long changes the committer received stay hidden (pipeline/git/drain.py)
    attachments_queue: str = "jsync-local-attachments.fifo"  # copy requests for attachment contents
    attachment_max_bytes: int = 100 * 1024 * 1024  # larger attachments keep their metadata only
    event_bus: str | None = None  # the EventBridge bus each committed change is published on (pipeline/events_out.py)
    on_lambda: bool = False  # running as a deployed function: no disk of its own, and metrics go to CloudWatch

    @property
    def database(self) -> Path:
        """The embedded backend's one SQLite file."""
        return self.home / "jsync.db"

    @property
    def events_file(self) -> Path | None:
        """Where committed changes are written as NDJSON when no bus is set: locally, never on Lambda."""
        return None if self.event_bus or self.on_lambda else self.home / "events.ndjson"

    @property
    def webhook_secret(self) -> str | None:
        """The secret Jira signs with (the first, while a rotation lists two)."""
        secrets = self.webhook_secrets
        return secrets[0] if secrets else None

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """Every secret a webhook may be signed with: during a rotation the new one, then the old one."""
        return _split(self.secrets.get("webhook_secret"), separators="\n")

    @property
    def api_keys(self) -> tuple[str, ...]:
        # Read again every few minutes, so a revoked key stops working without a redeploy.
        return _split(self.secrets.get("api_keys", max_age_seconds=300))

    @property
    def git_token(self) -> str | None:
        return self.secrets.get("git_token")

    @property
    def jira_configured(self) -> bool:
        """Whether reconcile has Jira credentials to use; says so without reading a secret."""
        env = self.secrets.env
        if env.get("JSYNC_JIRA_SECRET_NAME", "").strip():
            return True
        return all(env.get(name, "").strip() for name in ("JSYNC_JIRA_URL", "JSYNC_JIRA_EMAIL", "JSYNC_JIRA_TOKEN"))

    def jira_credentials(self) -> JiraCredentials:
        """Site URL, account email and API token: from the environment locally, one JSON secret deployed."""
        env = self.secrets.env
        secret_name = env.get("JSYNC_JIRA_SECRET_NAME", "").strip()
        if secret_name:
            try:
                data: Any = json.loads(self.secrets.get("jira") or "")
            except ValueError:
                data = None
            where = f"secret {secret_name}"
        else:
            data = {k: env.get(f"JSYNC_JIRA_{k.upper()}", "") for k in JIRA_FIELDS}
            where = "JSYNC_JIRA_URL, JSYNC_JIRA_EMAIL and JSYNC_JIRA_TOKEN"
        try:
            return jira_credentials_from(data)
        except JiraCredentialsInvalid as bad:
            if bad.not_json:
                raise SecretUnavailable(f"Secret {secret_name} (jira) is not JSON with url, email and token.") from None
            if bad.missing:
                raise SecretUnavailable(
                    f"Jira credentials are incomplete ({', '.join(bad.missing)} missing); set {where}."
                ) from None
            raise SecretUnavailable(
                "The Jira URL must start with https:// (your site, e.g. https://x.atlassian.net)."
            ) from None

    @property
    def queue_pairs(self) -> tuple[tuple[str, str], ...]:
        """Every queue with its dead-letter queue: (source, DLQ) for events, commits, sync, bell and attachments."""
        return (
            (self.events_queue, self.events_dlq),
            (self.commits_queue, self.commits_dlq),
            (self.sync_queue, self.sync_dlq),
            (self.bell_queue, self.bell_dlq),
            (self.attachments_queue, dead_letter_name(self.attachments_queue)),
        )

    @property
    def events_dlq(self) -> str:
        return dead_letter_name(self.events_queue)

    @property
    def sync_dlq(self) -> str:
        return dead_letter_name(self.sync_queue)

    @property
    def commits_dlq(self) -> str:
        return dead_letter_name(self.commits_queue)

    @property
    def bell_dlq(self) -> str:
        return dead_letter_name(self.bell_queue)


JIRA_FIELDS = ("url", "email", "token")


class JiraCredentialsInvalid(ValueError):
    """Why Jira credentials cannot be used; callers word it for where the values came from."""

    def __init__(self, not_json: bool = False, missing: tuple[str, ...] = (), bad_url: bool = False) -> None:
        super().__init__("not JSON" if not_json else f"missing {missing}" if missing else "bad url")
        self.not_json, self.missing, self.bad_url = not_json, missing, bad_url


def jira_credentials_from(data: Any) -> JiraCredentials:
    """Jira credentials from `{url, email, token}`: all three non-empty, the URL an http(s) address.

    The one rule for both the running functions and `make deploy`'s check of the secret.
    """
    if not isinstance(data, dict):
        raise JiraCredentialsInvalid(not_json=True)
    values = {k: str(data.get(k) or "").strip() for k in JIRA_FIELDS}
    missing = tuple(k for k in JIRA_FIELDS if not values[k])
    if missing:
        raise JiraCredentialsInvalid(missing=missing)
    if not values["url"].startswith(("https://", "http://")):
        raise JiraCredentialsInvalid(bad_url=True)
    return JiraCredentials(values["url"].rstrip("/"), values["email"], values["token"])


@dataclass(frozen=True)
class JiraCredentials:
    """Where reconcile reads Jira, and as whom; the token never appears in a repr."""

    url: str
    email: str
    token: str = field(repr=False)


def _split(raw: str | None, separators: str = ",\n") -> tuple[str, ...]:
    """Several values in one secret, one per separator."""
    text = raw or ""
    for separator in separators[1:]:
        text = text.replace(separator, separators[0])
    return tuple(v.strip() for v in text.split(separators[0]) if v.strip())


class SecretUnavailable(RuntimeError):
    """A configured secret could not be read. The message names the secret, never its value."""


class SecretReadFailed(SecretUnavailable):
    """Secrets Manager did not answer (throttled, unreachable, denied): worth trying again, unlike a bad value."""


# secret -> (variable holding the value locally, variable holding its Secrets Manager name deployed)
_SECRETS = {
    "webhook_secret": ("JSYNC_WEBHOOK_SECRET", "JSYNC_WEBHOOK_SECRET_NAME"),
    "api_keys": ("JSYNC_API_KEYS", "JSYNC_API_KEYS_SECRET_NAME"),
    "git_token": ("JSYNC_GIT_TOKEN", "JSYNC_GIT_TOKEN_SECRET_NAME"),
    # Deployed only (JSON {url, email, token}); locally jira_credentials reads JSYNC_JIRA_URL/_EMAIL/_TOKEN itself.
    "jira": ("", "JSYNC_JIRA_SECRET_NAME"),
}


@dataclass(frozen=True)
class Secrets:
    """Each secret is read on first use and kept for the life of the process (one read per cold start).

    A function only ever reads the secrets it uses, so its IAM role names only those.
    """

    env: dict[str, str] = field(repr=False)
    region: str
    _cache: dict[str, tuple[float, str | None]] = field(default_factory=dict, compare=False, repr=False)

    def get(self, name: str, max_age_seconds: float | None = None) -> str | None:
        cached = self._cache.get(name)
        if cached is None or (max_age_seconds is not None and time.monotonic() - cached[0] > max_age_seconds):
            self._cache[name] = (time.monotonic(), self._read(name))
        return self._cache[name][1]

    def refresh(self, name: str, min_age_seconds: float = 60) -> bool:
        """Read a stored secret again after a rotation; at most once a minute, so bad requests cannot
        turn into a flood of Secrets Manager calls. True if it was read again."""
        read_at = self._cache.get(name, (0.0, None))[0]
        if not self.env.get(_SECRETS[name][1]) or time.monotonic() - read_at < min_age_seconds:
            return False
        self._cache.pop(name, None)
        self.get(name)
        return True

    def _read(self, name: str) -> str | None:
        value_var, name_var = _SECRETS[name]
        secret_name = self.env.get(name_var, "").strip()
        if not secret_name:
            return self.env.get(value_var, "").strip() or None
        import boto3  # only deployed functions that hold a secret name pay for this

        try:
            value = boto3.client("secretsmanager", region_name=self.region).get_secret_value(SecretId=secret_name)
        except Exception as exc:
            raise SecretReadFailed(
                f"Secret {secret_name} ({name}) could not be read: {type(exc).__name__}. "
                "Create it in Secrets Manager as the README's Deploy section says."
            ) from None
        text = str(value.get("SecretString") or "").strip()
        if not text:
            # An empty secret must never mean "no authentication": refuse to run instead.
            raise SecretUnavailable(f"Secret {secret_name} ({name}) is empty; put the value in it.")
        return text


def dead_letter_name(queue_name: str) -> str:
    return queue_name.removesuffix(".fifo") + "-dlq.fifo"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from `env` (default: the process environment)."""
    e = dict(os.environ if env is None else env)
    home = Path(e.get("JSYNC_HOME", ".jsync")).resolve()
    stage = e.get("JSYNC_STAGE", "local")
    region = e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "us-east-1"
    return Settings(
        bucket=e.get("JSYNC_BUCKET", f"jsync-{stage}"),
        events_queue=e.get("JSYNC_EVENTS_QUEUE", f"jsync-{stage}-events.fifo"),
        commits_queue=e.get("JSYNC_COMMITS_QUEUE", f"jsync-{stage}-commits.fifo"),
        sync_queue=e.get("JSYNC_SYNC_QUEUE", f"jsync-{stage}-sync.fifo"),
        region=region,
        aws_endpoint_url=e.get("AWS_ENDPOINT_URL") or None,
        git_remote=e.get("JSYNC_GIT_REMOTE") or str(home / "remote.git"),
        git_branch=e.get("JSYNC_GIT_BRANCH", "main"),
        git_cache_dir=Path(e.get("JSYNC_GIT_CACHE", str(home / "committer.git"))),
        home=home,
        port=int(e.get("JSYNC_PORT", "8000")),
        secrets=Secrets({k: v for k, v in e.items() if k.startswith("JSYNC_")}, region),
        sync_lookback_minutes=int(e.get("JSYNC_SYNC_LOOKBACK_MINUTES", "30")),
        sync_every_hours=float(e.get("JSYNC_SYNC_EVERY_HOURS", "24")),
        backend=_backend(e),
        bell_queue=e.get("JSYNC_BELL_QUEUE", f"jsync-{stage}-bell.fifo"),
        commit_batch_changes=max(1, int(e.get("JSYNC_COMMIT_BATCH_CHANGES", "1000"))),
        commit_batch_seconds=float(e.get("JSYNC_COMMIT_BATCH_SECONDS", "5")),
        commit_visibility_seconds=int(e.get("JSYNC_COMMIT_VISIBILITY_SECONDS", "240")),
        attachments_queue=e.get("JSYNC_ATTACHMENTS_QUEUE", f"jsync-{stage}-attachments.fifo"),
        attachment_max_bytes=int(e.get("JSYNC_ATTACHMENT_MAX_BYTES", str(100 * 1024 * 1024))),
        event_bus=e.get("JSYNC_EVENT_BUS", "").strip() or None,
        on_lambda=bool(e.get("AWS_LAMBDA_FUNCTION_NAME")),
    )


BACKENDS = ("embedded", "aws")


def _backend(e: dict[str, str]) -> str:
    # A Lambda function has no disk to keep an embedded store on: AWS unless told otherwise (deployed, it is told).
    default = "aws" if e.get("AWS_LAMBDA_FUNCTION_NAME") else "embedded"
    backend = (e.get("JSYNC_BACKEND") or "").strip().lower() or default
    if backend not in BACKENDS:
        raise ValueError(f"JSYNC_BACKEND={backend!r}: use one of {', '.join(BACKENDS)}")
    return backend


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
