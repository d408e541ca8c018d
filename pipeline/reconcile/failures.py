"""Which Jira failures end only the step (it is retried from saved progress) and which end the job."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pipeline.reconcile.jira import JiraError, JiraRateLimited

_Result = TypeVar("_Result")


class JobFailed(Exception):
    """The job cannot go on (bad credentials, a refused search); the message says what to fix."""


def retryable(exc: JiraError) -> bool:
    """Rate limited, unreachable or failing on Jira's side: the same request may well work later."""
    return isinstance(exc, JiraRateLimited) or exc.status == 0 or exc.status >= 500


def fatal_or_retry(exc: JiraError) -> Exception:
    """Rate limits, network trouble and 5xx end the step for a retry; other refusals end the job."""
    if retryable(exc):
        return exc
    if exc.status == 401:
        return JobFailed(f"Jira refused the credentials (401): check the site URL, email and API token. {exc}")
    return JobFailed(str(exc))


def guarded(call: Callable[[], _Result]) -> _Result:
    """A request that is not about one issue: any refusal ends the step or the job."""
    try:
        return call()
    except JiraError as exc:
        raise fatal_or_retry(exc) from None
