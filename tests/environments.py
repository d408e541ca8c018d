"""Test environments: a clean backend (moto server or embedded SQLite) and a bare git remote, or a local stack's
home. Tests and fixtures build them from here."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dulwich.repo import Repo

from local.resources import create_resources
from local.stack import LocalStack, free_port
from pipeline import services
from pipeline.settings import Settings, get_settings

BACKENDS = ("aws", "embedded")
_CLEAN = ("JSYNC_WEBHOOK_SECRET", "JSYNC_API_KEYS", "JSYNC_GIT_TOKEN", "JSYNC_PORT")


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


def deploy_secret(monkeypatch: pytest.MonkeyPatch, variable: str, name: str, value: str) -> None:
    """A secret `name` in Secrets Manager holding `value`, named by the environment `variable` as a deploy sets it."""
    services.aws("secretsmanager").create_secret(Name=name, SecretString=value)
    monkeypatch.setenv(variable, name)
    services.reset()


def stack_env(home: Path) -> dict[str, str]:
    return {
        "JSYNC_HOME": str(home),
        "JSYNC_PORT": str(free_port()),
        "JSYNC_GIT_REMOTE": "",
        "JSYNC_GIT_CACHE": str(home / "committer.git"),
    }


@contextmanager
def keyed_stack(home: Path, monkeypatch: pytest.MonkeyPatch, api_keys: str) -> Iterator[LocalStack]:
    """A local stack on `home` (its own git remote, no webhook secret) whose API wants one of `api_keys`, as
    JSYNC_API_KEYS says them."""
    for k, v in stack_env(home).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("JSYNC_GIT_REMOTE")
    monkeypatch.delenv("JSYNC_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("JSYNC_API_KEYS", api_keys)
    stack = LocalStack()
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        services.reset()
