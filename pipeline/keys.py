"""Which Jira ids and keys JSync accepts, one rule each: only what Jira can produce becomes an S3 key or a git path.

Ingest, the writer, the read API and reconcile all ask here, so a delivery ingest accepts is one the writer can
store, and no key that a checkout cannot hold reaches git. Stdlib only: the ingest Lambda loads this.
"""

from __future__ import annotations

import re

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


def is_issue_id(value: object) -> bool:
    return isinstance(value, str) and ISSUE_ID.fullmatch(value) is not None


def is_issue_key(value: object) -> bool:
    return isinstance(value, str) and ISSUE_KEY.fullmatch(value) is not None


def is_project_key(value: object) -> bool:
    return isinstance(value, str) and PROJECT_KEY.fullmatch(value) is not None


def project_of_key(key: str) -> str:
    """`OPS` for `OPS-17`; the caller has checked the key."""
    return key.rsplit("-", 1)[0]
