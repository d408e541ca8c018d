"""The OpenAPI schema the app serves, checked against what the running app answers, with schemathesis.

The schema is the one the app serves at /openapi.json (built by the app at import, so schemathesis can make one
test per operation; `test_the_fuzzed_schema_is_the_one_uvicorn_serves` proves it is exactly what the live server
answers). One local stack for the module (uvicorn on a real port, moto, the pollers) is populated by the
real pipeline from the fixture webhooks, and every documented operation is run against it through schemathesis's
examples, coverage and fuzzing phases, valid and invalid input, a bounded and reproducible number of examples each:
no 5xx, and every response documented (status code, content type, headers, body schema); invalid input rejected.
The captured issues are also fetched by name, so 200, 304 and 410 answers with real data are validated too, not
only the 400s and 404s that generated input mostly reaches.

(`schemathesis.pytest.from_fixture`, which would load the schema from the live server, fails on pytest 9.2 with
"'Function' object has no attribute '_nodeid'": pytest renamed that attribute. The eager `schema.parametrize()`
used here does not touch it.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from api.app import create_app
from local.stack import LocalStack
from pipeline import services
from tests.builders import fixture_bytes
from tests.environments import stack_env

SEED = 20261124
MAX_EXAMPLES = 30
SYNC = "/api/v1/sync"  # this stack has no Jira credentials: POST answers its documented 503, the one 5xx allowed
# OPS-17 (id 10042) is created, updated, commented on, moved to PLAT-5 and deleted; OPS-18 and OPS-19 stay.
WEBHOOKS = [
    ("issue_created.json", "application/json"),
    ("issue_updated.json", "application/json"),
    ("issue_updated_assignee.json", "application/json"),
    ("comment_created.json", "application/json"),
    ("issue_created_adf.json", "application/json"),
    ("issue_created.xml", "application/xml"),
    ("issue_moved.json", "application/json"),
    ("issue_deleted.json", "application/json"),
]


# What the app's GET /openapi.json answers (building it touches no AWS, so no stack is needed at collection).
SERVED = create_app().openapi()
schema = schemathesis.openapi.from_dict(
    SERVED,
    # No API keys are configured on this stack, so a missing X-API-Key is accepted by design: don't send it as
    # "invalid input" (the keyed behaviour is tested in test_http.py).
    config=schemathesis.Config.from_dict(
        {"seed": SEED, "generation": {"deterministic": True, "with-security-parameters": False}}
    ),
)


def not_a_server_error_but_the_documented_503(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """`not_a_server_error`, except that POST /sync without Jira credentials answers 503 `jira_not_configured`."""
    if response.status_code == 503 and case.operation.path == SYNC and case.method == "POST":
        assert response.json()["error"] == "jira_not_configured", response.text
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    not_a_server_error_but_the_documented_503,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,  # acts on invalid input only
    unsupported_method,  # acts on the coverage phase's undocumented methods only: 405 with Allow
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One populated stack for the module, set up the way conftest's `stack` fixture sets up its own."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("JSYNC_WEBHOOK_SECRET", "JSYNC_API_KEYS", "JSYNC_GIT_REMOTE", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
            mp.delenv(name, raising=False)
        for k, v in stack_env(Path(tmp_path_factory.mktemp("schema")) / "home").items():
            mp.setenv(k, v)
        mp.delenv("JSYNC_GIT_REMOTE")
        s = LocalStack()
        s.start()
        try:
            for n, (name, content_type) in enumerate(WEBHOOKS):
                r = httpx.post(
                    s.urls.webhook,
                    content=fixture_bytes(name),
                    headers={"content-type": content_type, "x-atlassian-webhook-identifier": f"schema-{n}"},
                    timeout=10,
                )
                assert r.status_code == 202, (name, r.status_code, r.text)
            s.wait_idle()
            yield s
        finally:
            s.stop()
            services.reset()


@pytest.fixture(scope="module")
def base_url(live: LocalStack) -> str:
    return f"http://127.0.0.1:{live.settings.port}"


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_the_fuzzed_schema_is_the_one_uvicorn_serves(base_url: str) -> None:
    r = httpx.get(f"{base_url}/openapi.json", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == SERVED
    operations = sorted((op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations())
    assert operations == [
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/issues/{key_or_id}"),
        ("GET", "/api/v1/issues/{key_or_id}/attachments"),
        ("GET", "/api/v1/issues/{key_or_id}/attachments/{attachment_id}"),
        ("GET", "/api/v1/issues/{key_or_id}/diff"),
        ("GET", "/api/v1/issues/{key_or_id}/history"),
        ("GET", "/api/v1/issues/{key_or_id}/history/{version}"),
        ("GET", "/api/v1/metrics"),
        ("GET", "/api/v1/projects"),
        ("GET", "/api/v1/projects/{project}/export"),
        ("GET", "/api/v1/projects/{project}/issues"),
        ("GET", "/api/v1/sync/{job_id}"),
        ("POST", "/api/v1/sync"),
    ]


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@schema.parametrize()
def test_every_operation_conforms_to_the_schema(
    case: schemathesis.Case, base_url: str, session: requests.Session
) -> None:
    case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=10)


ISSUE = "/api/v1/issues/{key_or_id}"
HISTORY = "/api/v1/issues/{key_or_id}/history"
VERSION = "/api/v1/issues/{key_or_id}/history/{version}"


def _validate(base_url: str, session: requests.Session, path: str, method: str = "GET", **parts: Any) -> Any:
    case = schema[path][method].Case(**parts)
    return case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=10)


def test_captured_issues_conform_to_the_schema(base_url: str, session: requests.Session) -> None:
    def check(path: str, **parts: Any) -> Any:
        return _validate(base_url, session, path, **parts)

    # 200 with a whole issue document, by key and by id, the XML-born issue included
    for ref in ("OPS-18", "10050", "OPS-19", "10060"):
        assert check(ISSUE, path_parameters={"key_or_id": ref}).status_code == 200
    etag = check(ISSUE, path_parameters={"key_or_id": "OPS-18"}).headers["etag"][0]
    for tag in (etag, f"W/{etag}", f'"x", {etag}'):
        not_modified = check(ISSUE, path_parameters={"key_or_id": "OPS-18"}, headers={"If-None-Match": tag})
        assert not_modified.status_code == 304
    # 410 for the deleted issue, under its old key, its last key and its id
    for ref in ("OPS-17", "PLAT-5", "10042"):
        assert check(ISSUE, path_parameters={"key_or_id": ref}).status_code == 410
    # Every history page, then every version the pages name
    cursor: str | None = None
    versions: list[str] = []
    while True:
        query: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = check(HISTORY, path_parameters={"key_or_id": "10042"}, query=query)
        assert page.status_code == 200
        versions += [item["version"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert len(versions) == 6
    for v in versions:
        assert check(VERSION, path_parameters={"key_or_id": "PLAT-5", "version": v}).status_code == 200
    for ref in ("OPS-18", "10060"):
        assert check(HISTORY, path_parameters={"key_or_id": ref}).status_code == 200
    # Projects and their listings, a page at a time
    projects = check("/api/v1/projects").json()["items"]
    assert {p["key"]: p["issue_count"] for p in projects} == {"OPS": 2, "PLAT": 0}
    for p in projects:
        assert check("/api/v1/projects/{project}/issues", path_parameters={"project": p["key"]}).status_code == 200
    first = check("/api/v1/projects/{project}/issues", path_parameters={"project": "OPS"}, query={"limit": 1})
    cursor = first.json()["next_cursor"]
    assert cursor
    check("/api/v1/projects/{project}/issues", path_parameters={"project": "OPS"}, query={"cursor": cursor})
    assert check("/api/v1/health").status_code == 200


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (ISSUE, {"key_or_id": "NOPE-1"}),
        (ISSUE, {"key_or_id": "99999999999999999999"}),
        (ISSUE, {"key_or_id": "0"}),
        (HISTORY, {"key_or_id": "ZZ_9-0"}),
        (HISTORY, {"key_or_id": "12345"}),
        (VERSION, {"key_or_id": "OPS-18", "version": "1-x"}),
        (VERSION, {"key_or_id": "NOPE-1", "version": "1764000000123-schema-0"}),
        (VERSION, {"key_or_id": "10050", "version": "1764000000123-schema-0"}),  # another issue's version
        (VERSION, {"key_or_id": "10042", "version": "9999999999999999-" + "a" * 100}),
        (VERSION, {"key_or_id": "10042", "version": "1-.."}),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(p[:24] for p in v.values()),
)
def test_well_formed_names_of_nothing_are_documented_404s(
    base_url: str, session: requests.Session, path: str, params: dict[str, str]
) -> None:
    response = _validate(base_url, session, path, path_parameters=params)
    assert response.status_code == 404
    assert set(response.json()) == {"error", "detail"}
