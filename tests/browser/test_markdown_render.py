"""An issue's Markdown as a Git host shows it: rendered by a CommonMark renderer with GFM tables (markdown-it-py,
what GitHub's renderer follows), checked for its structure, then opened in Chromium for `docs/markdown.png`."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from pipeline.markdown import render_issue
from pipeline.snapshot import issue_document
from tests.browser.conftest import Chromium
from tests.fakejira import _FIELD_DEFINITIONS

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures"
# Close to github.com's Markdown body, so the screenshot shows what a reader of the repository sees.
STYLE = """
body { font: 15px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 880px; margin: 24px auto; padding: 0 32px; }
.file { border: 1px solid #d1d9e0; border-radius: 6px; }
.file > header { background: #f6f8fa; border-bottom: 1px solid #d1d9e0; padding: 8px 16px; font: 13px monospace; }
.file > article { padding: 8px 32px 24px; }
h1, h2 { border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
h1 { font-size: 2em; } h2 { font-size: 1.5em; }
table { border-collapse: collapse; } th, td { border: 1px solid #d1d9e0; padding: 6px 13px; }
tr:nth-child(2n) { background: #f6f8fa; }
code { background: #eff1f3; border-radius: 6px; padding: .2em .4em; font-size: 85%; }
pre { background: #f6f8fa; border-radius: 6px; padding: 16px; } pre code { background: none; padding: 0; }
blockquote { color: #59636e; border-left: .25em solid #d1d9e0; margin: 0; padding: 0 1em; }
"""


def rich_issue() -> dict[str, Any]:
    """A real-shaped issue: the ADF fixture's issue with a richer description, two comments and two attachments."""
    issue = json.loads((FIXTURES / "issue_created_adf.json").read_text())["issue"]
    fields = issue["fields"]
    fields["description"] = json.loads((FIXTURES / "richtext/blocks.adf.json").read_text())
    author = copy.deepcopy(fields["reporter"])
    fields["comment"] = {
        "comments": [
            {
                "id": "10500",
                "author": author,
                "created": "2025-11-24T16:10:00.000+0000",
                "body": json.loads((FIXTURES / "richtext/lists.adf.json").read_text()),
            },
            {"id": "10501", "author": author, "created": "2025-11-24T17:45:12.000+0000", "body": "Rotated. *Done*."},
        ],
        "maxResults": 2,
        "total": 2,
        "startAt": 0,
    }
    fields["attachment"] = json.loads((FIXTURES / "attachment_added.json").read_text())["issue"]["fields"]["attachment"]
    return issue_document(issue)


def test_an_issues_markdown_renders_as_a_page_with_its_table_and_sections(chromium: Chromium, tmp_path: Path) -> None:
    names = {ident: name for ident, name, _ in _FIELD_DEFINITIONS} | {"customfield_10019": "Rank"}
    markdown = render_issue(rich_issue(), names)
    body = MarkdownIt("commonmark").enable("table").render(markdown)

    assert re.search(r"<h1>OPS-18: Audit service accounts</h1>", body)
    # The fields are a real table (a broken row would show as a paragraph of pipes)
    assert "<th>Field</th>" in body and "<th>Value</th>" in body
    rows = dict(re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*</tr>", body, re.S))
    assert {"Status", "Issue Type", "Reporter"} <= set(rows)
    assert not re.search(r"<p>\s*\|", body)
    assert rows.get("Rank") == "0|i0001j:"  # a pipe inside a value is escaped, so its row holds
    # Rich text became structure: a heading, a fenced code block keeping its language, a panel as a quote
    assert '<code class="language-python">' in body and "<blockquote>" in body
    assert "<h2>Comments</h2>" in body and "<h2>Attachments</h2>" in body and "trace.log" in body

    page = tmp_path / "OPS-18.md.html"
    page.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>OPS-18.md</title><style>{STYLE}</style></head>"
        f"<body><div class='file'><header>issues/OPS/{html.escape('OPS-18.md')}</header><article>{body}</article>"
        "</div></body></html>",
        encoding="utf-8",
    )
    shown = chromium.dom(page.as_uri())
    assert "OPS-18: Audit service accounts" in shown and "<table>" in shown
    chromium.screenshot(page.as_uri(), ROOT / "docs/markdown.png", size="1000,1400")
