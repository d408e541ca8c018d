"""Shared fixtures: one moto server for the session, a fresh bucket, queues and bare git remote per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from local.stack import LocalStack, free_port
from pipeline import services
from pipeline.settings import Settings
from tests.environments import BACKENDS, fresh_environment, stack_env
from tests.fakejira import FakeJira, JiraModel
from tests.harness import Pipeline


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def settings(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    yield fresh_environment(moto_endpoint, tmp_path, monkeypatch)
    services.reset()


@pytest.fixture
def pipeline(settings: Settings) -> Pipeline:
    return Pipeline(settings)


@pytest.fixture(params=BACKENDS)
def any_pipeline(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    """The pipeline on each backend in turn: S3 and SQS on a moto server, then the embedded SQLite store."""
    yield Pipeline(fresh_environment(moto_endpoint, tmp_path, monkeypatch, request.param))
    services.reset()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    for name in ("JSYNC_WEBHOOK_SECRET", "JSYNC_API_KEYS", "JSYNC_GIT_REMOTE", "AWS_ENDPOINT_URL", "JSYNC_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    for k, v in stack_env(tmp_path / "home").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("JSYNC_GIT_REMOTE")
    s = LocalStack()
    s.start()
    yield s
    s.stop()
    services.reset()


@pytest.fixture
def fake(model: JiraModel) -> Iterator[FakeJira]:
    """The fake Jira serving the test module's own `model` fixture on loopback."""
    with FakeJira(model) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_stray_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never let a test reach real AWS with whatever credentials the machine has.
    if "AWS_PROFILE" in os.environ:
        monkeypatch.delenv("AWS_PROFILE")
