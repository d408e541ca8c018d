"""Unit tests for pipeline.richtext: Jira's ADF and wiki markup to Markdown.

The corpus under `tests/fixtures/richtext/` pairs each real-shaped sample (`<name>.adf.json`, `<name>.wiki`) with the
exact Markdown it must give (`<name>.adf.md`, `<name>.wiki.md`); the properties say it is total and deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.richtext import MAX_DEPTH, cellify, escape, to_cell, to_markdown
from tests.builders import json_safe

CORPUS = Path(__file__).parent.parent / "fixtures" / "richtext"
SAMPLES = sorted(p for p in CORPUS.iterdir() if p.name.endswith((".adf.json", ".wiki")))


def sample_input(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.name.endswith(".json") else text


def expected_markdown(path: Path) -> str:
    name = path.name.removesuffix(".json") + ".md"
    return (CORPUS / name).read_text(encoding="utf-8")


def test_the_corpus_has_both_sources_and_an_expectation_for_each() -> None:
    assert {p.name.split(".", 1)[1] for p in SAMPLES} == {"adf.json", "wiki"}
    assert len(SAMPLES) >= 14
    for path in SAMPLES:
        assert expected_markdown(path).endswith("\n")


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_each_sample_renders_exactly_its_expected_markdown(path: Path) -> None:
    assert to_markdown(sample_input(path)) + "\n" == expected_markdown(path)


def adf(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "type": "doc", "content": list(blocks)}


def para(*inline: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(inline)}


def text(value: str, *marks: str) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": value}
    if marks:
        node["marks"] = [{"type": m} for m in marks]
    return node


def test_a_mention_shows_the_display_name_jira_sent() -> None:
    # Given a comment that mentions Ada as Jira Cloud sends it (the text carries the @)
    mention = {"type": "mention", "attrs": {"id": "712020:0f3c", "text": "@Ada Lovelace", "accessLevel": ""}}
    # Then people read her name, once prefixed
    assert to_markdown(adf(para(text("cc "), mention))) == "cc @Ada Lovelace"


def test_emphasis_keeps_its_spaces_outside_the_markers() -> None:
    # `**Friday **` would not be bold in CommonMark
    assert to_markdown(adf(para(text("on "), text("Friday ", "strong"), text("at noon")))) == "on **Friday** at noon"


def test_a_date_node_is_an_iso_date_in_utc() -> None:
    node = {"type": "date", "attrs": {"timestamp": "1793001600000"}}
    assert to_markdown(adf(para(node))) == "2026-10-26"


def test_headings_move_down_by_the_offset_and_stop_at_six() -> None:
    doc = adf({"type": "heading", "attrs": {"level": 2}, "content": [text("Steps")]})
    assert to_markdown(doc, heading_offset=2) == "#### Steps"
    assert to_markdown("h5. Deep", heading_offset=3) == "###### Deep"


def test_code_keeps_its_text_verbatim_inside_a_fence_it_cannot_close() -> None:
    assert to_markdown("{code:bash}\necho '```' *x*\n{code}") == "````bash\necho '```' *x*\n````"


def test_plain_text_that_looks_like_markdown_stays_plain() -> None:
    assert escape("*a* _b_ snake_case <i>") == "\\*a\\* \\_b\\_ snake_case \\<i>"
    assert to_markdown("1. not a list") == "1\\. not a list"
    assert to_markdown("#tag") == "\\#tag"


def test_a_cell_holds_one_line_with_its_pipes_escaped() -> None:
    # Given a rich-text value with a pipe, a line break and an already escaped pipe in code
    assert to_cell("a|b\nc") == "a\\|b<br>c"
    assert cellify("`x \\| y` | z") == "`x \\| y` \\| z"


def test_wiki_links_mentions_and_attachments() -> None:
    rendered = to_markdown("[docs|https://x.example/a(b)] [~accountid:5b10] [^a.pdf] !b.png|thumbnail!")
    assert rendered == "[docs](https://x.example/a%28b%29) @5b10 [attachment: a.pdf] [attachment: b.png]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (3.0, "3"),
        (True, "true"),
        (10**5000, hex(10**5000)),
        ({"a": [1, None]}, '```json\n{"a": [1, null]}\n```'),
        ([], "```json\n[]\n```"),
        ({"type": "doc"}, ""),
        ({"type": "doc", "content": None}, ""),
    ],
    ids=["none", "float", "bool", "huge-int", "object", "empty-list", "doc-without-content", "doc-null-content"],
)
def test_values_that_are_not_rich_text_still_render(value: Any, expected: str) -> None:
    assert to_markdown(value) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=40,
)
node_types = st.sampled_from(
    ["doc", "paragraph", "text", "heading", "bulletList", "orderedList", "listItem", "table", "tableRow",
     "tableCell", "codeBlock", "panel", "mention", "emoji", "date", "status", "media", "mediaSingle", "hardBreak",
     "inlineCard", "blockquote", "expand", "taskList", "taskItem", "rule", "unknownThing"]
)  # fmt: skip
marks = st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(["strong", "code", "link", "em"])}, optional={"attrs": json_values}),
    max_size=3,
)
attrs = st.dictionaries(st.sampled_from(["level", "order", "text", "url", "timestamp", "panelType"]), json_values)
adf_nodes = st.recursive(
    st.fixed_dictionaries({"type": node_types | json_values}, optional={"text": json_values, "attrs": json_values}),
    lambda children: st.fixed_dictionaries(
        {"type": node_types, "content": st.lists(children, max_size=4)}, optional={"attrs": attrs, "marks": marks}
    ),
    max_leaves=30,
)
# Wiki text made of the pieces its parser cares about, so the odd combinations come up often
wiki_text = st.lists(
    st.sampled_from(list("ab *_-+^~?{}[]|!#\\\nhq.1:") + ["{code}", "{quote}", "{panel:title=x}", "h1. ", "||", "{{"])
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, adf_nodes, st.text()))
def test_any_json_value_renders_without_raising_and_deterministically(value: Any) -> None:
    first = to_markdown(value)
    assert isinstance(first, str)
    if json_safe(value):  # the same value read back from its JSON is the same bytes
        assert to_markdown(json.loads(json.dumps(value))) == first
    assert to_markdown(value) == first
    assert "\n" not in to_cell(value)


@settings(max_examples=300, deadline=None)
@given(wiki_text)
def test_any_wiki_text_renders_without_raising_and_deterministically(value: str) -> None:
    assert to_markdown(value) == to_markdown(value)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 5, 5_000])
def test_deep_nesting_keeps_the_text_and_does_not_raise(levels: int) -> None:
    # Given a quote inside a quote inside ... with a text at the bottom, deeper than any stack allows
    node: dict[str, Any] = para(text("bottom"))
    for _ in range(levels):
        node = {"type": "blockquote", "content": [node]}
    # When it is rendered
    rendered = to_markdown(adf(node))
    # Then the text is still there
    assert "bottom" in rendered
    # And deep plain lists and wiki quotes are no worse
    deep: list[Any] = ["x"]
    for _ in range(levels):
        deep = [deep]
    assert to_markdown(deep)
    assert "inner" in to_markdown("{quote}" * 3 + "inner")
