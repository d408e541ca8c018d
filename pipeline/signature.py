"""Jira's webhook signature: `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac

from pipeline.errors import WebhookRejected


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secrets: str | tuple[str, ...], body: bytes, header: str | None) -> None:
    """Raise 401 unless `header` is a valid sha256 signature of `body` with one of `secrets` (two while a
    rotation is under way); never says what was expected."""
    if not header:
        raise WebhookRejected(
            401, "signature_missing", "X-Hub-Signature is required: sign the body with the webhook secret."
        )
    method, _, given = header.strip().partition("=")
    supplied = given.strip().lower().encode()
    candidates = (secrets,) if isinstance(secrets, str) else secrets
    # Compare with every secret, always, so timing tells nothing about which one was close.
    matches = [
        hmac.compare_digest(hmac.new(s.encode(), body, hashlib.sha256).hexdigest().encode(), supplied)
        for s in candidates
    ]
    if method.lower() != "sha256" or not any(matches):
        raise WebhookRejected(
            401, "signature_invalid", "X-Hub-Signature does not match the body and the webhook secret."
        )
