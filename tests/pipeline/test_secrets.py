"""Secrets deployed: read from Secrets Manager once, again after a rotation (rate-limited), never printed."""

from __future__ import annotations

import pytest

from pipeline import services
from pipeline import settings as settings_module
from pipeline.settings import SecretReadFailed, SecretUnavailable, load_settings
from pipeline.signature import sign
from tests.builders import fixture_bytes
from tests.environments import deploy_secret
from tests.harness import Pipeline


def test_rotation_accepts_new_and_old_then_rereads(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    sm = services.aws("secretsmanager")
    deploy_secret(monkeypatch, "JSYNC_WEBHOOK_SECRET_NAME", "jsync/test/webhook-secret", "old-secret")
    body = fixture_bytes("issue_created.json")
    assert (
        pipeline.deliver(body, identifier="r-1", **{"x-hub-signature": sign("old-secret", body)})["statusCode"] == 202
    )
    # When the secret is rotated (new first, old kept) and Jira switches to the new one
    sm.put_secret_value(SecretId="jsync/test/webhook-secret", SecretString="new-secret\nold-secret")
    clock = [1000.0]
    monkeypatch.setattr(settings_module.time, "monotonic", lambda: clock[0])
    services.get_settings().secrets._cache["webhook_secret"] = (clock[0], "old-secret")
    new_sig = {"x-hub-signature": sign("new-secret", body)}
    # Then within a minute of the last read, a mismatch does not hammer Secrets Manager...
    assert pipeline.deliver(body, identifier="r-2", **new_sig)["statusCode"] == 401
    # ...and after it, the secret is read again and both signatures are accepted
    clock[0] += 61
    assert pipeline.deliver(body, identifier="r-3", **new_sig)["statusCode"] == 202
    old_sig = {"x-hub-signature": sign("old-secret", body)}
    assert pipeline.deliver(body, identifier="r-4", **old_sig)["statusCode"] == 202


def test_a_missing_secret_names_itself_never_a_value() -> None:
    env = {"JSYNC_API_KEYS_SECRET_NAME": "jsync/none/api-keys", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    settings = load_settings(env)
    with pytest.raises(SecretUnavailable) as caught:
        _ = settings.api_keys
    assert "jsync/none/api-keys" in str(caught.value) and "README" in str(caught.value)


def test_settings_never_print_secrets() -> None:
    settings = load_settings({"JSYNC_WEBHOOK_SECRET": "s3cr3t-value", "JSYNC_API_KEYS": "k-1,k-2"})
    assert settings.webhook_secrets == ("s3cr3t-value",) and settings.api_keys == ("k-1", "k-2")
    assert "s3cr3t-value" not in repr(settings) and "k-1" not in repr(settings)


def test_jira_credentials_come_from_one_json_secret_deployed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = '{"url": "https://acme.atlassian.net/", "email": "bot@acme.example", "token": "ATATT-very-secret"}'
    deploy_secret(monkeypatch, "JSYNC_JIRA_SECRET_NAME", "jsync/test/jira", value)
    settings = services.get_settings()
    assert settings.jira_configured
    credentials = settings.jira_credentials()
    assert (credentials.url, credentials.email, credentials.token) == (
        "https://acme.atlassian.net",
        "bot@acme.example",
        "ATATT-very-secret",
    )
    assert "ATATT-very-secret" not in repr(credentials) and "ATATT-very-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("not json", "not JSON"),
        ('{"url": "https://acme.atlassian.net", "email": "bot@acme.example"}', "token missing"),
        ('{"url": "acme.atlassian.net", "email": "e", "token": "t"}', "https://"),
    ],
)
def test_a_bad_jira_secret_is_refused_for_good_and_says_what_is_wrong(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    deploy_secret(monkeypatch, "JSYNC_JIRA_SECRET_NAME", "jsync/test/jira", value)
    with pytest.raises(SecretUnavailable) as caught:
        services.get_settings().jira_credentials()
    assert not isinstance(caught.value, SecretReadFailed)
    assert says in str(caught.value)


def test_an_unreadable_jira_secret_is_worth_retrying(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSYNC_JIRA_SECRET_NAME", "jsync/test/no-such-secret")
    services.reset()
    with pytest.raises(SecretReadFailed):
        services.get_settings().jira_credentials()
