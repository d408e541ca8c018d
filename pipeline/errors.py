"""Errors that carry the HTTP status and the `{"error", "detail"}` body a client sees."""

from __future__ import annotations


class JSyncError(Exception):
    """A failure a person can act on: a status, a short code and one sentence."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


class WebhookRejected(JSyncError):
    """The webhook delivery is refused; nothing was queued."""
