"""Unit tests for pipeline.markdown: the issue Markdown people read in git (`issues/<PROJECT>/<KEY>.md`)."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.markdown import render_issue
from pipeline.snapshot import issue_document
from tests.builders import fixture_json, json_safe

NAMES = {"customfield_10016": "Story points", "customfield_10020": "Sprint", "summary": "Summary"}


def stored(name: str) -> dict[str, Any]:
    """The issue document JSync keeps for a fixture's issue."""
    return issue_document(fixture_json(name)["issue"])


def rows(markdown: str) -> dict[str, str]:
    """The Field | Value table as a dict (the header row aside)."""
    found = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith(("| Field |", "| --- |")):
            name, value = line[2:-2].split(" | ", 1)
            found[name] = value
    return found


def with_comments_and_attachments(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    grace = {"accountId": "712020:a1b2-grace", "displayName": "Grace Example"}
    ada = {"accountId": "712020:0f3c-demo", "displayName": "Ada Example"}
    doc["fields"]["comment"] = {
        "comments": [
            {"id": "10302", "author": grace, "body": "Done on *prod*.", "created": "2025-11-24T17:00:00.000+0000"},
            {
                "id": "10301",
                "author": ada,
                "body": "h1. Plan\nStaging first.",
                "created": "2025-11-24T16:04:59.995+0000",
                "updated": "2025-11-24T16:30:00.000+0000",
            },
        ],
        "maxResults": 2,
        "total": 2,
        "startAt": 0,
    }
    doc["fields"]["attachment"] = [
        {"id": "10010", "filename": "cert|chain.pem", "size": 3277, "created": "2025-11-24T16:02:00.000+0000"},
        {"id": "10009", "filename": "expiry.png", "size": 512, "created": "2025-11-24T16:01:00.000+0000"},
    ]
    return doc


def test_the_title_is_the_key_and_summary_and_the_file_ends_with_one_newline() -> None:
    rendered = render_issue(stored("issue_created.json"), NAMES)
    assert rendered.splitlines()[0] == "# OPS-17: Rotate certificates"
    assert rendered.endswith("\n") and not rendered.endswith("\n\n")


def test_the_table_shows_system_fields_readably() -> None:
    # Given the stored issue of a creation webhook, and no field catalogue
    table = rows(render_issue(stored("issue_created.json"), {}))
    # Then system fields go by the names Jira shows, their values by name
    assert table["Status"] == "To Do"
    assert table["Issue Type"] == "Task"
    assert table["Priority"] == "Medium"
    assert table["Assignee"] == "Ada Example"
    assert table["Reporter"] == "Ada Example"
    assert table["Labels"] == "security, tls"
    assert table["Created"] == "2025-11-24 16:00 UTC"
    # And custom fields keep their ids, sorted, each with its value
    assert table["customfield_10016"] == "3"
    assert table["customfield_10020"] == "OPS Sprint 12 (future)"
    assert "customfield_10019" in table
    assert "customfield_10030" not in table  # null: nothing to show


def test_custom_fields_go_by_their_catalogue_names_sorted_by_name() -> None:
    rendered = render_issue(stored("issue_created.json"), NAMES)
    table = rows(rendered)
    assert table["Story points"] == "3"
    assert table["Sprint"] == "OPS Sprint 12 (future)"
    assert "customfield_10016" not in table
    names = list(table)
    assert names.index("Sprint") < names.index("Story points") < names.index("customfield_10019")


def test_the_description_is_converted_from_wiki_and_from_adf() -> None:
    wiki = render_issue(stored("issue_created.json"), {})
    assert "## Description\n\nExpires **Friday**\n\n#### Steps\n\n- rotate\n- `deploy`\n" in wiki
    adf = render_issue(stored("issue_created_adf.json"), {})
    assert "Service accounts expire **Friday**." in adf
    assert "Owner: @Grace Example" in adf


def test_comments_are_oldest_first_with_author_and_time() -> None:
    # Given two comments stored newest first
    rendered = render_issue(with_comments_and_attachments(stored("issue_created.json")), NAMES)
    # Then Ada's earlier one comes first, its heading pushed below the comment's own heading
    ada = rendered.index("### Ada Example — 2025-11-24 16:04 UTC (edited 2025-11-24 16:30 UTC)\n\n#### Plan")
    grace = rendered.index("### Grace Example — 2025-11-24 17:00 UTC\n\nDone on **prod**.")
    assert rendered.index("## Comments") < ada < grace


def test_attachments_list_their_names_and_sizes() -> None:
    rendered = render_issue(with_comments_and_attachments(stored("issue_created.json")), NAMES)
    assert rendered.endswith("## Attachments\n\n- expiry.png (512 B)\n- cert|chain.pem (3.2 KB)\n")


def test_links_parent_and_select_values_render_by_name_with_pipes_escaped() -> None:
    doc = stored("issue_created.json")
    doc["fields"]["issuelinks"] = [
        {
            "id": "10001",
            "type": {"name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
            "outwardIssue": {"key": "OPS-20", "fields": {"summary": "Deploy | prod"}},
        },
        {
            "id": "10002",
            "type": {"name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
            "inwardIssue": {"key": "OPS-3", "fields": {"summary": "Buy certs"}},
        },
    ]
    doc["fields"]["parent"] = {"id": "10040", "key": "OPS-1", "fields": {"summary": "TLS"}}
    doc["fields"]["customfield_10050"] = {"value": "Backend", "child": {"value": "API"}}
    doc["fields"]["customfield_10060"] = "line one\nline | two"
    table = rows(render_issue(doc, {"customfield_10050": "Team", "customfield_10060": "Notes"}))
    assert table["Linked Issues"] == "blocks OPS-20: Deploy \\| prod<br>is blocked by OPS-3: Buy certs"
    assert table["Parent"] == "OPS-1: TLS"
    assert table["Team"] == "Backend → API"
    assert table["Notes"] == "line one<br>line \\| two"


def test_a_bare_document_still_renders() -> None:
    assert render_issue({}, {}) == "# (no key)\n"
    assert render_issue({"id": "10042"}, {}) == "# 10042\n"
    assert render_issue({"key": "OPS-1", "fields": None}, {}) == "# OPS-1\n"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
field_ids = st.sampled_from(
    ["summary", "status", "assignee", "labels", "issuelinks", "parent", "subtasks", "created", "comment", "attachment",
     "description", "customfield_10020", "customfield_10016", "duedate", "fixVersions"]
)  # fmt: skip
# Comments and attachments shaped almost like Jira's, so their sorting and headings meet odd values too
items = st.lists(
    st.dictionaries(st.sampled_from(["id", "created", "updated", "author", "body", "filename", "size"]), json_values)
    | json_values,
    max_size=4,
)
collections = st.fixed_dictionaries({"comment": st.fixed_dictionaries({"comments": items}), "attachment": items})
hostile_docs = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "key": json_values,
        "fields": st.dictionaries(field_ids, json_values) | collections | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(hostile_docs, st.dictionaries(field_ids, st.text(max_size=10)))
def test_any_document_renders_without_raising_deterministically(doc: dict[str, Any], names: dict[str, str]) -> None:
    rendered = render_issue(doc, names)
    assert rendered.startswith("# ")
    assert rendered.endswith("\n") and not rendered.endswith("\n\n")
    assert render_issue(copy.deepcopy(doc), dict(names)) == rendered
    if json_safe(doc):
        assert render_issue(json.loads(json.dumps(doc)), names) == rendered
