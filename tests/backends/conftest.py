"""Fixtures for the backend contract: each test runs on the embedded backend (one SQLite file) and on S3 and SQS
(moto, in process, over HTTP). Both give the pipeline the same promises; `test_contract.py` holds them to it."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from pipeline.backends import ObjectStore, QueueBus
from pipeline.backends.aws import S3Objects, SqsQueues
from pipeline.backends.embedded import MAX_RECEIVE_COUNT, Database, SqliteObjects, SqliteQueues

VISIBILITY = 30  # seconds; long enough that nothing reappears by itself during a test unless it asks to
SOURCE, DLQ = "src.fifo", "src-dlq.fifo"
CONTENT, CONTENT_DLQ = "content.fifo", "content-dlq.fifo"  # deduplicates by body (the sync queue's shape)
BUCKET = "jsync-contract"


@dataclass
class Backend:
    """One backend under test: its two ports, the queues made for the test, and a maker of more queues."""

    name: str
    objects: ObjectStore
    queues: QueueBus
    new_pair: Callable[[bool], tuple[str, str]]  # content_dedup -> a fresh (source, dlq) pair, nothing in either
    source: str = SOURCE
    dlq: str = DLQ
    content: str = CONTENT
    database: Database | None = None  # embedded only


def _names() -> Iterator[tuple[str, str]]:
    for n in itertools.count(1):
        yield f"q{n}.fifo", f"q{n}-dlq.fifo"


# --- embedded ---------------------------------------------------------------------------------------------------
def embedded_backend(path: Path) -> Backend:
    db = Database(path)
    queues = SqliteQueues(db)
    names = _names()

    def new_pair(content_dedup: bool = False) -> tuple[str, str]:
        source, dlq = next(names)
        queues.create(dlq, None, VISIBILITY)
        queues.create(source, dlq, VISIBILITY, content_dedup=content_dedup)
        return source, dlq

    queues.create(DLQ, None, VISIBILITY)
    queues.create(SOURCE, DLQ, VISIBILITY)
    queues.create(CONTENT_DLQ, None, VISIBILITY)
    queues.create(CONTENT, CONTENT_DLQ, VISIBILITY, content_dedup=True)
    return Backend("embedded", SqliteObjects(db), queues, new_pair, database=db)


# --- aws (moto) ---------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def contract_moto() -> Iterator[str]:
    """One moto server for the session, on a free loopback port (its per-request log lines kept out of reports)."""
    requests_log = logging.getLogger("werkzeug")
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    requests_log.setLevel(level)


@pytest.fixture(scope="session")
def aws_clients(contract_moto: str) -> tuple[Any, Any]:
    """S3 and SQS clients for moto, with dummy credentials of their own (never the machine's)."""
    args: dict[str, Any] = {
        "endpoint_url": contract_moto,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_session_token": "testing",
        # The races below run a dozen threads through one client.
        "config": Config(max_pool_connections=32),
    }
    s3_args = {**args, "config": args["config"].merge(Config(signature_version="s3v4"))}  # as pipeline.services
    return boto3.client("s3", **s3_args), boto3.client("sqs", **args)


def create_fifo_pair(sqs: Any, source: str, dlq: str, content_dedup: bool = False) -> None:
    """A FIFO queue whose messages go to its FIFO dead-letter queue after 5 receives, as deployed."""
    fifo = {"FifoQueue": "true", "VisibilityTimeout": str(VISIBILITY)}
    dlq_url = sqs.create_queue(QueueName=dlq, Attributes=fifo)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
    extra = {"ContentBasedDeduplication": "true"} if content_dedup else {}
    sqs.create_queue(QueueName=source, Attributes={**fifo, **extra, "RedrivePolicy": policy})


def aws_backend(endpoint: str, s3: Any, sqs: Any) -> Backend:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).read()
    s3.create_bucket(Bucket=BUCKET)
    create_fifo_pair(sqs, SOURCE, DLQ)
    create_fifo_pair(sqs, CONTENT, CONTENT_DLQ, content_dedup=True)
    names = _names()

    def new_pair(content_dedup: bool = False) -> tuple[str, str]:
        source, dlq = next(names)
        create_fifo_pair(sqs, source, dlq, content_dedup)
        return source, dlq

    # No message move tasks on moto: redrive copies message by message, as `make redrive` does against it.
    queues = SqsQueues(sqs, use_move_tasks=False, report=lambda _line: None)
    return Backend("aws", S3Objects(s3, BUCKET), queues, new_pair)


# --- the fixtures the tests use -------------------------------------------------------------------------------------
@pytest.fixture(params=["embedded", "aws"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, fresh: an empty database file, or a reset moto with a new bucket and queues."""
    if request.param == "embedded":
        found = embedded_backend(tmp_path / "jsync.db")
        yield found
        assert found.database is not None
        found.database.close()
    else:
        s3, sqs = request.getfixturevalue("aws_clients")
        yield aws_backend(request.getfixturevalue("contract_moto"), s3, sqs)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Backend]:
    """The embedded backend alone, for the promises moto does not keep (each test says which and why)."""
    found = embedded_backend(tmp_path / "jsync.db")
    yield found
    assert found.database is not None
    found.database.close()
