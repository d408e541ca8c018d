"""The process-wide objects handlers share (AWS clients, store, queues, git cache), built once from settings."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from pipeline.backends import ObjectStore, QueueBus
from pipeline.queues import Queues
from pipeline.settings import get_settings
from pipeline.store import Store

if TYPE_CHECKING:  # the ingest Lambda never loads dulwich
    from pipeline.backends.embedded import Database
    from pipeline.events_out import Publisher
    from pipeline.git.commits import GitRecords, PushLog
    from pipeline.git.store import GitStore

# More connections than the read API's 16 parallel reads, so none waits for a socket.
_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=10, max_pool_connections=32
)


@cache
def aws(service: str) -> Any:
    settings = get_settings()
    # SigV4 for S3: presigned attachment URLs must work on buckets with KMS encryption and in every region.
    config = _CONFIG.merge(Config(signature_version="s3v4")) if service == "s3" else _CONFIG
    return boto3.session.Session().client(  # type: ignore[call-overload]  # the service is a plain str here
        service, region_name=settings.region, endpoint_url=settings.aws_endpoint_url, config=config
    )


@lru_cache(maxsize=1)
def database() -> Database:
    from pipeline.backends.embedded import Database

    return Database(get_settings().database)


@lru_cache(maxsize=1)
def objects() -> ObjectStore:
    """The object store of the configured backend."""
    settings = get_settings()
    if settings.backend == "embedded":
        from pipeline.backends.embedded import SqliteObjects

        return SqliteObjects(database())
    from pipeline.backends.aws import S3Objects

    return S3Objects(aws("s3"), settings.bucket)


@lru_cache(maxsize=1)
def queue_bus() -> QueueBus:
    """The FIFO queues of the configured backend."""
    settings = get_settings()
    if settings.backend == "embedded":
        from pipeline.backends.embedded import SqliteQueues

        return SqliteQueues(database())
    from pipeline.backends.aws import SqsQueues

    # Move tasks exist on AWS only; against an emulator redrive copies message by message.
    return SqsQueues(aws("sqs"), use_move_tasks=not settings.aws_endpoint_url)


@lru_cache(maxsize=1)
def store() -> Store:
    return Store(objects())


@lru_cache(maxsize=1)
def queues() -> Queues:
    settings = get_settings()
    return Queues(
        queue_bus(),
        settings.events_queue,
        settings.commits_queue,
        settings.sync_queue,
        settings.bell_queue,
        settings.attachments_queue,
    )


@lru_cache(maxsize=1)
def git_store() -> GitStore:
    from pipeline.git.store import GitStore

    s = get_settings()
    return GitStore(s.git_remote, s.git_branch, s.git_cache_dir, s.git_token)


@lru_cache(maxsize=1)
def git_records() -> GitRecords:
    from pipeline.git.commits import GitRecords

    return GitRecords(store())


@lru_cache(maxsize=1)
def push_log() -> PushLog:
    """The committer's record of its pushes for health, kept while warm."""
    from pipeline.git.commits import PushLog

    s = store()
    return PushLog(s.push_record, s.put_push_record)


@lru_cache(maxsize=1)
def publisher() -> Publisher:
    """The committer's publisher of committed changes: its outbox is read once per process."""
    from pipeline.events_out import Publisher, sink_for

    return Publisher(sink_for(get_settings(), aws), store())


def forget_git() -> None:
    """After the remote failed us: reconnect next time, with the git token read again (it may be rotated)."""
    if git_store.cache_info().currsize:
        git_store().close()
    git_store.cache_clear()
    get_settings().secrets.refresh("git_token")


def reset() -> None:
    """Forget every cached object (tests and the local stack change settings between runs)."""
    if git_store.cache_info().currsize:
        git_store().close()
    if database.cache_info().currsize:
        database().close()
    for cached in (
        aws,
        database,
        objects,
        queue_bus,
        store,
        queues,
        git_store,
        git_records,
        push_log,
        publisher,
        get_settings,
    ):
        cached.cache_clear()
