"""Unit tests for pipeline.signature: Jira's `X-Hub-Signature: sha256=<hex>` webhook signature."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pipeline.errors import WebhookRejected
from pipeline.signature import sign, verify
from tests.builders import fixture_bytes

# Atlassian's published test vector for webhook signatures.
VECTOR_SECRET = "It's a Secret to Everybody"
VECTOR_BODY = b"Hello World!"
VECTOR_SIGNATURE = "sha256=a4771c39fbe90f317c7824e83ddef3caae9cb3d976c214ace1f2937e133263c9"

SECRET = "jsync-test-webhook-secret-7f3a9c"


def reject(secret: str, body: bytes, header: str | None) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        verify(secret, body, header)
    return info.value


def test_sign_matches_the_atlassian_test_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_BODY) == VECTOR_SIGNATURE


@pytest.mark.parametrize(
    "header",
    [
        VECTOR_SIGNATURE,
        VECTOR_SIGNATURE.upper().replace("SHA256=", "sha256="),  # upper-case hex
        VECTOR_SIGNATURE.upper(),  # upper-case method too
        f"  {VECTOR_SIGNATURE}  ",
    ],
)
def test_verify_accepts_the_test_vector(header: str) -> None:
    verify(VECTOR_SECRET, VECTOR_BODY, header)  # does not raise


def test_verify_accepts_a_signed_fixture() -> None:
    body = fixture_bytes("issue_created.json")
    verify(SECRET, body, sign(SECRET, body))


@pytest.mark.parametrize("header", [None, ""])
def test_missing_signature_is_401_signature_missing(header: str | None) -> None:
    error = reject(VECTOR_SECRET, VECTOR_BODY, header)
    assert error.status == 401
    assert error.code == "signature_missing"
    assert "X-Hub-Signature" in error.detail


_VECTOR_HEX = VECTOR_SIGNATURE.split("=", 1)[1]


@pytest.mark.parametrize(
    "header",
    [
        "sha256=" + "0" * 64,  # wrong digest
        "sha256=" + _VECTOR_HEX[:-1] + ("0" if _VECTOR_HEX[-1] != "0" else "1"),  # one digit off
        "sha256=" + _VECTOR_HEX[:32],  # truncated
        "sha256=",  # empty digest
        "sha1=" + _VECTOR_HEX,  # wrong method, right digest
        "sha1=" + hmac.new(VECTOR_SECRET.encode(), VECTOR_BODY, hashlib.sha1).hexdigest(),  # a valid sha1 HMAC
        _VECTOR_HEX,  # no method at all
        "sha512=" + _VECTOR_HEX,
        "garbage",
    ],
)
def test_wrong_signatures_are_401_signature_invalid(header: str) -> None:
    error = reject(VECTOR_SECRET, VECTOR_BODY, header)
    assert error.status == 401
    assert error.code == "signature_invalid"


def test_signature_for_a_different_body_is_rejected() -> None:
    header = sign(VECTOR_SECRET, b"Hello World?")
    error = reject(VECTOR_SECRET, VECTOR_BODY, header)
    assert (error.status, error.code) == (401, "signature_invalid")


def test_signature_made_with_a_different_secret_is_rejected() -> None:
    header = sign("not the secret", VECTOR_BODY)
    assert reject(VECTOR_SECRET, VECTOR_BODY, header).code == "signature_invalid"


@pytest.mark.parametrize(
    "header",
    [None, "sha256=" + "0" * 64, "sha1=" + _VECTOR_HEX, sign(VECTOR_SECRET, b"other body")],
)
def test_error_never_reveals_the_secret_or_the_expected_digest(header: str | None) -> None:
    error = reject(VECTOR_SECRET, VECTOR_BODY, header)
    expected_hex = _VECTOR_HEX
    for text in (error.detail, str(error), repr(error.args), json.dumps(error.body())):
        assert VECTOR_SECRET not in text
        assert expected_hex not in text.lower()
        assert expected_hex[:16] not in text.lower()
    assert set(error.body()) == {"error", "detail"}


@given(secret=st.text(min_size=1, max_size=64), body=st.binary(max_size=512))
def test_sign_then_verify_round_trips(secret: str, body: bytes) -> None:
    header = sign(secret, body)
    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    verify(secret, body, header)
    verify(secret, body, header.upper())


@given(secret=st.text(min_size=1, max_size=64), other=st.text(min_size=1, max_size=64), body=st.binary(max_size=256))
def test_signature_with_another_secret_never_verifies(secret: str, other: str, body: bytes) -> None:
    assume(secret.encode() != other.encode())
    with pytest.raises(WebhookRejected) as info:
        verify(secret, body, sign(other, body))
    assert info.value.code == "signature_invalid"
