"""Configuration, read once from the environment (stdlib only, so the ingest Lambda stays light)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MAX_WEBHOOK_BYTES = 6 * 1024 * 1024  # what a Lambda Function URL accepts
# SQS takes 1 MiB per message; a larger one carries its body by reference to the raw S3 object.
MAX_INLINE_MESSAGE_BYTES = 960 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs to know about where things live."""

    bucket: str
    events_queue: str
    commits_queue: str
    region: str
    aws_endpoint_url: str | None
    webhook_secret: str | None
    api_keys: tuple[str, ...]
    git_remote: str
    git_branch: str
    git_token: str | None
    git_cache_dir: Path
    home: Path
    port: int

    @property
    def events_dlq(self) -> str:
        return dead_letter_name(self.events_queue)

    @property
    def commits_dlq(self) -> str:
        return dead_letter_name(self.commits_queue)


def dead_letter_name(queue_name: str) -> str:
    return queue_name.removesuffix(".fifo") + "-dlq.fifo"


def _optional(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from `env` (default: the process environment)."""
    e = dict(os.environ if env is None else env)
    home = Path(e.get("JSYNC_HOME", ".jsync")).resolve()
    stage = e.get("JSYNC_STAGE", "local")
    return Settings(
        bucket=e.get("JSYNC_BUCKET", f"jsync-{stage}"),
        events_queue=e.get("JSYNC_EVENTS_QUEUE", f"jsync-{stage}-events.fifo"),
        commits_queue=e.get("JSYNC_COMMITS_QUEUE", f"jsync-{stage}-commits.fifo"),
        region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "us-east-1",
        aws_endpoint_url=e.get("AWS_ENDPOINT_URL") or None,
        webhook_secret=(e.get("JSYNC_WEBHOOK_SECRET") or "").strip() or None,
        api_keys=tuple(k.strip() for k in e.get("JSYNC_API_KEYS", "").split(",") if k.strip()),
        git_remote=e.get("JSYNC_GIT_REMOTE") or str(home / "remote.git"),
        git_branch=e.get("JSYNC_GIT_BRANCH", "main"),
        git_token=(e.get("JSYNC_GIT_TOKEN") or "").strip() or None,
        git_cache_dir=Path(e.get("JSYNC_GIT_CACHE", str(home / "committer.git"))),
        home=home,
        port=int(e.get("JSYNC_PORT", "8000")),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
