"""Jira's datetimes as instants, and the one form JSync stores them in: UTC in Jira's format."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

# Exactly a Jira datetime with an offset; a date alone (duedate `2026-10-26`) or a zoneless time is not one.
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[+-]\d{2}:?\d{2}|Z)")
# Keys whose strings are what people typed (or names they chose): a summary that reads like a time stays as typed.
FREE_TEXT = frozenset(
    {"summary", "description", "environment", "body", "text", "comment", "labels", "name", "displayName", "value"}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(value: Any) -> int | None:
    """A Jira time ("2026-01-05T09:00:00.000+0000") as epoch ms, or None if it is not one; no zone means UTC."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # exact, where float seconds can lose a millisecond


def canonical(value: str) -> str | None:
    """`value` in UTC as Jira writes it (`2026-10-26T09:07:02.225+0000`), or None if it is no Jira datetime.

    Sub-millisecond digits are dropped, as `epoch_ms` drops them: Jira itself never writes more than three.
    """
    if not _DATETIME.fullmatch(value):
        return None
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):  # an impossible date, or one whose UTC falls outside year 1..9999
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def same_instant(a: Any, b: Any) -> bool:
    """Equal, or two Jira datetimes naming the same instant whatever offset each was rendered in."""
    if a == b:
        return True
    return isinstance(a, str) and isinstance(b, str) and (canonical(a) or a) == (canonical(b) or b)


def canonicalize(doc: dict[str, Any] | list[Any]) -> None:
    """Rewrite, in place, every Jira datetime anywhere in `doc` to its canonical form, free text aside.

    Iterative, so a deeply nested rich-text document cannot exhaust the stack.
    """
    stack: list[dict[str, Any] | list[Any]] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():  # replacing a value while iterating is safe: no key comes or goes
                if isinstance(value, str):
                    if key not in FREE_TEXT:
                        node[key] = canonical(value) or value
                elif isinstance(value, dict):
                    stack.append(value)
                elif isinstance(value, list):
                    # A free-text key's list holds people's strings (labels); only objects inside it are walked.
                    stack.append(value if key not in FREE_TEXT else [v for v in value if not isinstance(v, str)])
        else:
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = canonical(value) or value
                elif isinstance(value, dict | list):
                    stack.append(value)


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as JSync writes its own times: ISO-8601 UTC to the millisecond, `2026-12-05T09:07:02.225Z`."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
