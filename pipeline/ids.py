"""The identifiers and forms every part shares, one rule each: issue id, key, project key, event id, version, job id,
an event's `Order`, and the two JSON serialisations.

Only what Jira can produce becomes an S3 key or a git path. Ingest, the writer, the committer, the read API and
reconcile all ask here, so a delivery ingest accepts is one the writer can store, and no key that a checkout cannot
hold reaches git. Stdlib only: the ingest Lambda loads this.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Jira's ids are 64-bit numbers (19 digits); one digit more is still safe in every S3 key and SQS group we build.
_ID = r"[0-9]{1,20}"

# A git path component is at most 255 bytes on common file systems, and `<KEY>.json` is the longest one we
# write. An issue number of 18 digits outgrows any real site; the project key gets the rest.
_MAX_PATH_COMPONENT = 255
_LONGEST_SUFFIX = len(".json")
_MAX_ISSUE_NUMBER_DIGITS = 18
MAX_PROJECT_KEY = _MAX_PATH_COMPONENT - _LONGEST_SUFFIX - len("-") - _MAX_ISSUE_NUMBER_DIGITS

# Jira's project key: an uppercase letter, then uppercase letters, digits or `_` (Cloud: at most 10 characters;
# Data Center lets an admin allow more). At least two characters, as Jira requires.
_PROJECT = rf"[A-Z][A-Z0-9_]{{1,{MAX_PROJECT_KEY - 1}}}"
_KEY = rf"{_PROJECT}-[0-9]{{1,{_MAX_ISSUE_NUMBER_DIGITS}}}"

# Anchored, because the read API hands `.pattern` to OpenAPI and pydantic, which search rather than match.
ISSUE_ID = re.compile(rf"^{_ID}$")
PROJECT_KEY = re.compile(rf"^{_PROJECT}$")
ISSUE_KEY = re.compile(rf"^{_KEY}$")
# What the read API takes where an issue is named: its key (current or old) or its id.
ISSUE_REF = re.compile(rf"^(?:{_KEY}|{_ID})$")
# Ours or Jira's delivery id: safe in S3 keys, SQS ids and git trailers.
EVENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
# A captured version of an issue, named by its snapshot: `<event time ms>-<event id>`.
VERSION = re.compile(r"^[0-9]{1,16}-[A-Za-z0-9._-]{1,100}$")
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Event times past this (the year 2286) are a sender's error; history positions count down from it.
MAX_EVENT_TIME_MS = 10**13 - 1


def is_issue_id(value: object) -> bool:
    return isinstance(value, str) and ISSUE_ID.fullmatch(value) is not None


def is_issue_key(value: object) -> bool:
    return isinstance(value, str) and ISSUE_KEY.fullmatch(value) is not None


def is_project_key(value: object) -> bool:
    return isinstance(value, str) and PROJECT_KEY.fullmatch(value) is not None


def project_of_key(key: str) -> str:
    """`OPS` for `OPS-17`; the caller has checked the key."""
    return key.rsplit("-", 1)[0]


@dataclass(frozen=True, order=True)
class Order:
    """Where an event stands among its issue's events: event time, then changelog id, then event id."""

    time_ms: int
    changelog_id: int
    event_id: str

    def as_list(self) -> list[Any]:
        return [self.time_ms, self.changelog_id, self.event_id]

    @classmethod
    def from_list(cls, value: list[Any]) -> Order:
        return cls(int(value[0]), int(value[1]), str(value[2]))

    @classmethod
    def of_state(cls, state: Mapping[str, Any]) -> Order:
        """The order of an issue's `latest/` state: its own, or (as earlier versions wrote it) its capture's."""
        return cls.from_list(state.get("order") or state["capture"]["order"])


def canonical_json(doc: Any) -> bytes:
    """What git keeps, for people to read and diff: sorted keys, 2-space indent, UTF-8, trailing newline."""
    text = json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    # A lone surrogate (half an emoji, valid in JSON) has no UTF-8 form: keep it as its JSON escape.
    return text.encode("utf-8", "backslashreplace")


def stored_json(data: Any) -> bytes:
    """What the object store keeps: one line, sorted keys, UTF-8, a trailing newline. One record per line is what
    data-lake readers (Athena's JSON SerDe) take, and the standard library writes it in C, several times faster than
    the indented form."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    return text.encode("utf-8", "backslashreplace")
