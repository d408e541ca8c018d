"""Health names each failing part; every dead-letter queue counts, the reconcile's included."""

from __future__ import annotations

import pytest

from pipeline import services
from pipeline.health import run_checks
from pipeline.settings import Settings


@pytest.mark.parametrize("dlq", ["events_dlq", "commits_dlq", "sync_dlq"])
def test_a_message_in_any_dead_letter_queue_fails_that_check_only(settings: Settings, dlq: str) -> None:
    sqs = services.aws("sqs")
    url = sqs.get_queue_url(QueueName=getattr(settings, dlq))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}", MessageGroupId="g", MessageDeduplicationId="d")

    checks = run_checks(settings, services.aws("s3"), sqs, lambda: b"0" * 40)

    assert not checks["dead_letters"].ok
    assert getattr(settings, dlq) in checks["dead_letters"].detail
    assert checks["storage"].ok and checks["queues"].ok and checks["git"].ok
    assert settings.sync_queue in checks["queues"].detail


def test_all_clear(settings: Settings) -> None:
    checks = run_checks(settings, services.aws("s3"), services.aws("sqs"), lambda: None)
    assert all(check.ok for check in checks.values()), checks
