"""Shared fixtures: one moto server for the session, a fresh bucket, queues and bare git remote per test."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich.repo import Repo
from moto.server import ThreadedMotoServer

from local.resources import create_resources
from local.stack import LocalStack, free_port
from pipeline import services
from pipeline.settings import Settings, get_settings
from tests.fakejira import FakeJira, JiraModel
from tests.harness import Pipeline

_CLEAN = ("JSYNC_WEBHOOK_SECRET", "JSYNC_API_KEYS", "JSYNC_GIT_TOKEN", "JSYNC_PORT")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def reset_moto(endpoint: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).read()


def init_bare(path: Path, branch: str = "main") -> Path:
    repo = Repo.init_bare(str(path), mkdir=True)
    repo.refs.set_symbolic_ref(b"HEAD", f"refs/heads/{branch}".encode())
    repo.close()
    return path


def fresh_environment(endpoint: str, root: Path, monkeypatch: pytest.MonkeyPatch, backend: str = "aws") -> Settings:
    """Point the pipeline at a clean backend (moto's state reset, or a new SQLite file under `root`) and a new
    bare remote under `root`."""
    for name in _CLEAN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("JSYNC_BACKEND", backend)
    if backend == "aws":
        reset_moto(endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    else:
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("JSYNC_HOME", str(root / "home"))
    monkeypatch.setenv("JSYNC_GIT_REMOTE", str(init_bare(root / "remote.git")))
    monkeypatch.setenv("JSYNC_GIT_CACHE", str(root / "cache.git"))
    services.reset()
    settings = get_settings()
    create_resources(settings)
    return settings


@pytest.fixture
def settings(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    yield fresh_environment(moto_endpoint, tmp_path, monkeypatch)
    services.reset()


@pytest.fixture
def pipeline(settings: Settings) -> Pipeline:
    return Pipeline(settings)


BACKENDS = ("aws", "embedded")


@pytest.fixture(params=BACKENDS)
def any_pipeline(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    """The pipeline on each backend in turn: S3 and SQS on a moto server, then the embedded SQLite store."""
    yield Pipeline(fresh_environment(moto_endpoint, tmp_path, monkeypatch, request.param))
    services.reset()


def stack_env(home: Path) -> dict[str, str]:
    return {
        "JSYNC_HOME": str(home),
        "JSYNC_PORT": str(free_port()),
        "JSYNC_GIT_REMOTE": "",
        "JSYNC_GIT_CACHE": str(home / "committer.git"),
    }


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
