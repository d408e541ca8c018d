"""Jira rich text to Markdown: ADF documents (REST v3, some webhooks) and wiki markup (webhooks, REST v2, Data Center).

Total and deterministic: whatever it is given (malformed trees, unknown nodes, wrong types, deep nesting) it returns
the same Markdown for the same input and never raises; a node it does not know keeps its text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

# Past this nesting a tree is flattened to its text, iteratively: ADF and wiki quotes can nest without bound.
MAX_DEPTH = 40
_FLAT_LIMIT = 200_000  # nodes read when flattening one over-deep subtree

HARD_BREAK = "\\\n"  # CommonMark's backslash break: visible in the raw file, and editors do not strip it
CELL_BREAK = "<br>"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_markdown(value: Any, *, heading_offset: int = 0) -> str:
    """Markdown for a rich-text value: an ADF document or node, a wiki-markup string, or anything else as text.

    `heading_offset` pushes headings down (a description under `## Description` starts at `###`). No trailing
    newline; "" when there is nothing to show.
    """
    offset = max(0, min(6, heading_offset)) if isinstance(heading_offset, int) else 0
    if value is None:
        return ""
    if isinstance(value, str):
        return _join(_wiki_blocks(_newlines(value), 0, offset))
    if isinstance(value, dict) and _is_adf(value):
        return _join([_block(value, 0, offset)])
    if isinstance(value, list) and value and all(isinstance(v, dict) and isinstance(v.get("type"), str) for v in value):
        return _join([_blocks(value, 0, offset)])
    if isinstance(value, dict | list):
        return fenced(compact_json(value), "json")
    return escape(scalar_text(value))


def to_cell(value: Any) -> str:
    """`value` as rich text on one line, safe inside a Markdown table cell (newlines and pipes escaped)."""
    return cellify(to_markdown(value, heading_offset=0))


def cellify(markdown: str) -> str:
    """Markdown made to fit one table cell: breaks become `<br>`, every unescaped `|` is escaped."""
    text = markdown.replace(HARD_BREAK, CELL_BREAK).replace("\r", "").replace("\n", CELL_BREAK)
    return _PIPE.sub(lambda m: m.group(1) + "\\|", text)


def escape(text: str) -> str:
    """Plain text that Markdown shows as typed: specials that would start formatting are backslash-escaped, while
    `snake_case`, URLs and ordinary punctuation stay as they are. Line starts are the block's business (`_lines`)."""
    return _SPECIAL.sub(lambda m: "\\" + m.group(), text)


def scalar_text(value: Any) -> str:
    """A JSON scalar (or anything else) as people write it: 3.0 is "3", True is "true"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than Python will print in decimal
            return hex(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # an object whose __str__ fails is still not a reason to lose the page
        return f"<{type(value).__name__}>"


def compact_json(value: Any, depth: int = 0) -> str:
    """JSON with sorted keys, without the stack or the exceptions `json.dumps` can hit; deep parts become `…`."""
    if depth > MAX_DEPTH:
        return '"…"'
    if isinstance(value, dict):
        items = sorted(((scalar_text(k), v) for k, v in value.items()), key=lambda kv: kv[0])
        return "{" + ", ".join(f"{json.dumps(k)}: {compact_json(v, depth + 1)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(compact_json(v, depth + 1) for v in value) + "]"
    if value is None or isinstance(value, bool | float):
        return json.dumps(value)
    if isinstance(value, int):
        return scalar_text(value)
    return json.dumps(scalar_text(value), ensure_ascii=False)


def code_span(text: str) -> str:
    """`text` as inline code, fenced with more backticks than it holds."""
    text = text.replace("\r", "").replace("\n", " ")
    if not text:
        return ""
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ") and text.strip()):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def fenced(code: str, language: str = "") -> str:
    """A fenced code block whose fence no line of `code` can close."""
    code = code.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", code)), default=0) + 1)
    lang = re.sub(r"[^\w+#.-]", "", language)[:32]
    return f"{fence}{lang}\n{code}\n{fence}" if code else f"{fence}{lang}\n{fence}"


def quoted(markdown: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in markdown.split("\n"))


def table(rows: list[list[str]]) -> str:
    """A GFM table of already cell-safe texts; the first row is the header (GFM needs one)."""
    rows = [r for r in rows if r]
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
    lines.insert(1, "| " + " | ".join(["---"] * width) + " |")
    return "\n".join(lines)


# Always escaped: \ ` * [ ] < ~; `_` only at a word's edge (GFM ignores it inside words); `&` before an entity.
_SPECIAL = re.compile(r"[\\`*\[\]<~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|&(?=#?[A-Za-z0-9]+;)")
# What would start a block at a line's start: heading, quote, list, setext underline, thematic break.
_LINE_START = re.compile(r"^([ \t]*)(?:([#>+=-])|(\d{1,9})(?=[.)](?:[ \t]|$)))", re.M)
_PIPE = re.compile(r"((?<!\\)(?:\\\\)*)\|")


def _lines(text: str) -> str:
    """Escape what would start a block at the start of each line of an inline text."""

    def fix(m: re.Match[str]) -> str:
        if m.group(2):
            return f"{m.group(1)}\\{m.group(2)}"
        return f"{m.group(1)}{m.group(3)}\\"

    return _LINE_START.sub(fix, text)


def _heading(level: int, text: str) -> str:
    text = re.sub(r"#+$", lambda m: "\\" + m.group(), text.strip())
    return f"{'#' * max(1, min(6, level))} {text}".rstrip() if text else ""


def _join(blocks: list[str]) -> str:
    return "\n\n".join(b for b in blocks if b.strip()).strip("\n")


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- ADF -------------------------------------------------------------------------------------------------------------

_INLINE = frozenset(
    {"text", "hardBreak", "mention", "emoji", "date", "status", "inlineCard", "mediaInline", "inlineExtension"}
)
_PANELS = {"info": "Info", "note": "Note", "warning": "Warning", "success": "Success", "error": "Error", "tip": "Tip"}


def _is_adf(value: dict[str, Any]) -> bool:
    kind = value.get("type")
    return kind == "doc" or (isinstance(kind, str) and isinstance(value.get("content"), list))


def _attrs(node: dict[str, Any]) -> dict[str, Any]:
    attrs = node.get("attrs")
    return attrs if isinstance(attrs, dict) else {}


def _content(node: Any) -> list[Any]:
    content = node.get("content") if isinstance(node, dict) else node
    return content if isinstance(content, list) else []


def _text_attr(attrs: dict[str, Any], *names: str) -> str:
    for name in names:
        value = attrs.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return scalar_text(value)
    return ""


def _kind(node: dict[str, Any]) -> str:
    """A node's type, "" when it has none or a malformed one (which may not even be hashable)."""
    kind = node.get("type")
    return kind if isinstance(kind, str) else ""


def _is_inline(node: Any) -> bool:
    if isinstance(node, dict):
        kind = _kind(node)
        return kind in _INLINE or (kind not in _BLOCKS and "text" in node and not isinstance(node.get("content"), list))
    return not isinstance(node, list)


def _blocks(nodes: Any, depth: int, offset: int) -> str:
    """Block nodes, one after another; a run of stray inline nodes among them becomes a paragraph."""
    out: list[str] = []
    run: list[Any] = []
    for node in _content(nodes):
        if _is_inline(node):
            run.append(node)
            continue
        if run:
            out.append(_paragraph(run, depth))
            run = []
        out.append(_block(node, depth + 1, offset))
    if run:
        out.append(_paragraph(run, depth))
    return _join(out)


def _paragraph(nodes: list[Any], depth: int) -> str:
    text = _inline(nodes, depth, HARD_BREAK)
    while text.endswith(HARD_BREAK):
        text = text[: -len(HARD_BREAK)]
    return _lines(text.strip(" \t"))


def _block(node: Any, depth: int, offset: int) -> str:
    if depth > MAX_DEPTH:
        return _lines(escape(_flat_text(node)))
    if isinstance(node, list):
        return _blocks(node, depth, offset)
    if not isinstance(node, dict):
        return _paragraph([node], depth)
    render = _BLOCKS.get(_kind(node))
    if render is not None:
        return render(node, depth, offset)
    if isinstance(node.get("content"), list):
        return _blocks(node, depth, offset)
    return _paragraph([node], depth)


def _adf_heading(node: dict[str, Any], depth: int, offset: int) -> str:
    level = _attrs(node).get("level")
    level = level if isinstance(level, int) and not isinstance(level, bool) else 1
    return _heading(level + offset, _inline(_content(node), depth, " "))


def _adf_list(node: dict[str, Any], depth: int, offset: int) -> str:
    kind = node.get("type")
    start = _attrs(node).get("order")
    number = start if isinstance(start, int) and not isinstance(start, bool) and 0 <= start < 10**9 else 1
    items: list[str] = []
    for item in _content(node):
        if kind == "orderedList":
            marker = f"{number}."
            number += 1
        elif kind == "taskList" and isinstance(item, dict) and item.get("type") == "taskItem":
            marker = "- [x]" if _attrs(item).get("state") == "DONE" else "- [ ]"
        else:
            marker = "-"
        items.append(_list_item(marker, _item_body(item, depth, offset)))
    return "\n".join(items)


def _item_body(item: Any, depth: int, offset: int) -> str:
    """A list item's blocks; a list right after the item's text stays tight (no blank line), as people write it."""
    if not isinstance(item, dict) or item.get("type") == "text":
        return _blocks([item], depth, offset)
    groups: list[list[Any]] = []
    for child in _content(item):  # task items hold inline nodes directly: one run of them is one paragraph
        if groups and _is_inline(child) and _is_inline(groups[-1][-1]):
            groups[-1].append(child)
        else:
            groups.append([child])
    body = ""
    for group in groups:
        shown = _blocks(group, depth, offset)
        if shown:
            kind = group[0].get("type") if isinstance(group[0], dict) else None
            separator = "\n" if kind in ("bulletList", "orderedList", "taskList", "decisionList") else "\n\n"
            body = f"{body}{separator}{shown}" if body else shown
    return body


def _list_item(marker: str, body: str) -> str:
    pad = " " * (len(marker.split(" ")[0]) + 1)
    lines = body.split("\n")
    first = f"{marker} {lines[0]}".rstrip()
    rest = [f"{pad}{line}" if line else "" for line in lines[1:]]
    return "\n".join([first, *rest])


def _adf_code(node: dict[str, Any], depth: int, offset: int) -> str:
    parts = [n.get("text") for n in _content(node) if isinstance(n, dict)]
    code = "".join(p for p in parts if isinstance(p, str))
    language = _attrs(node).get("language")
    return fenced(code, language if isinstance(language, str) else "")


def _adf_quote(node: dict[str, Any], depth: int, offset: int) -> str:
    inner = _blocks(node, depth, offset)
    return quoted(inner) if inner else ""


def _adf_panel(node: dict[str, Any], depth: int, offset: int) -> str:
    kind = _attrs(node).get("panelType")
    label = _PANELS.get(kind) if isinstance(kind, str) else None
    inner = _blocks(node, depth, offset)
    body = _join([f"**{label}**" if label else "", inner])
    return quoted(body) if body else ""


def _adf_expand(node: dict[str, Any], depth: int, offset: int) -> str:
    title = _text_attr(_attrs(node), "title")
    return _join([f"**{escape(title)}**" if title else "", _blocks(node, depth, offset)])


def _adf_table(node: dict[str, Any], depth: int, offset: int) -> str:
    rows: list[list[str]] = []
    for row in _content(node):
        cells: list[str] = []
        for cell in _content(row):
            cells.append(cellify(_blocks(cell, depth + 1, 0) if isinstance(cell, dict) else _inline([cell], depth, "")))
            span = _attrs(cell).get("colspan") if isinstance(cell, dict) else None
            if isinstance(span, int) and not isinstance(span, bool) and 1 < span <= 64:
                cells.extend([""] * (span - 1))
        rows.append(cells)
    return table(rows)


def _adf_media_block(node: dict[str, Any], depth: int, offset: int) -> str:
    parts = []
    for child in _content(node):
        if isinstance(child, dict) and child.get("type") == "caption":
            parts.append(f"*{_inline(_content(child), depth, ' ')}*" if _content(child) else "")
        else:
            parts.append(_inline([child], depth, " "))
    return _lines(" ".join(p for p in parts if p))


def _adf_card(node: dict[str, Any], depth: int, offset: int) -> str:
    return _lines(_card(_attrs(node)))


def _adf_rule(node: dict[str, Any], depth: int, offset: int) -> str:
    return "---"


def _adf_paragraph(node: dict[str, Any], depth: int, offset: int) -> str:
    return _paragraph(_content(node), depth)


_BLOCKS: dict[str, Callable[[dict[str, Any], int, int], str]] = {
    "paragraph": _adf_paragraph,
    "heading": _adf_heading,
    "bulletList": _adf_list,
    "orderedList": _adf_list,
    "taskList": _adf_list,
    "decisionList": _adf_list,
    "codeBlock": _adf_code,
    "blockquote": _adf_quote,
    "panel": _adf_panel,
    "expand": _adf_expand,
    "nestedExpand": _adf_expand,
    "table": _adf_table,
    "mediaSingle": _adf_media_block,
    "mediaGroup": _adf_media_block,
    "blockCard": _adf_card,
    "embedCard": _adf_card,
    "rule": _adf_rule,
}


def _inline(nodes: list[Any], depth: int, br: str) -> str:
    """Inline nodes as one Markdown string; neighbouring text with the same marks is formatted as one run."""
    out: list[str] = []
    run_text: list[str] = []
    run_marks: list[Any] = []
    run_key = ""

    def flush() -> None:
        if run_text:
            out.append(_marked("".join(run_text), run_marks, br))
            run_text.clear()

    for node in nodes:
        if isinstance(node, dict) and node.get("type") == "text" and isinstance(node.get("text"), str):
            marks = node.get("marks")
            marks = [m for m in marks if isinstance(m, dict)] if isinstance(marks, list) else []
            key = compact_json(marks)
            if run_text and key != run_key:
                flush()
            run_text.append(node["text"])
            run_marks, run_key = marks, key
            continue
        flush()
        out.append(_inline_node(node, depth, br))
    flush()
    return "".join(out)


def _inline_node(node: Any, depth: int, br: str) -> str:
    if depth > MAX_DEPTH:
        return escape(_flat_text(node))
    if not isinstance(node, dict):
        if isinstance(node, list):
            return _inline(node, depth + 1, br)
        return escape(scalar_text(node)).replace("\n", br)
    kind = _kind(node)
    attrs = _attrs(node)
    if kind == "hardBreak":
        return br
    if kind == "mention":
        name = _text_attr(attrs, "text", "displayName", "id")
        return escape("@" + name.removeprefix("@")) if name else "@"
    if kind == "emoji":
        return escape(_text_attr(attrs, "text", "shortName"))
    if kind == "date":
        return _date(attrs.get("timestamp"))
    if kind == "status":
        return code_span(_text_attr(attrs, "text"))
    if kind in ("inlineCard", "blockCard", "embedCard"):
        return _card(attrs)
    if kind in ("media", "mediaInline"):
        return _media(attrs)
    text = node.get("text")
    if isinstance(text, str | int | float) and not isinstance(text, bool):
        return escape(scalar_text(text)).replace("\n", br)
    content = _content(node)
    if kind in _BLOCKS or any(not _is_inline(c) for c in content):
        inner = _blocks(content, depth + 1, 0)
        return inner.replace(HARD_BREAK, br).replace("\n\n", br).replace("\n", br)
    return _inline(content, depth + 1, br)


def _marked(text: str, marks: list[dict[str, Any]], br: str) -> str:
    kinds: dict[str, dict[str, Any]] = {}
    for mark in marks:
        kind = mark.get("type")
        if isinstance(kind, str) and kind not in kinds:
            kinds[kind] = _attrs(mark)
    core = text.strip()
    if not core or not kinds:
        return escape(text).replace("\n", br)
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
    if "code" in kinds:
        out = code_span(core)
    else:
        out = escape(core).replace("\n", br)
        subsup = kinds.get("subsup", {}).get("type")
        if subsup in ("sub", "sup"):
            out = f"<{subsup}>{out}</{subsup}>"
        if "underline" in kinds:
            out = f"<ins>{out}</ins>"
        if "strike" in kinds:
            out = f"~~{out}~~"
        if "em" in kinds:
            out = f"*{out}*"
        if "strong" in kinds:
            out = f"**{out}**"
    href = kinds.get("link", {}).get("href")
    if "link" in kinds and isinstance(href, str) and href.strip():
        out = f"[{out}]({_url(href)})"
    return escape(lead).replace("\n", br) + out + escape(trail).replace("\n", br)


def _url(href: str) -> str:
    """A link destination that cannot end the Markdown link early."""
    return re.sub(r"[\s()<>\\]", lambda m: f"%{ord(m.group()):02X}", href.strip())


def _autolink(url: str) -> str:
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*", url):
        return f"<{url}>"
    return escape(url)


def _card(attrs: dict[str, Any]) -> str:
    url = _text_attr(attrs, "url")
    data = attrs.get("data")
    if not url and isinstance(data, dict):
        url = _text_attr(data, "url")
        name = _text_attr(data, "name")
        if name and url:
            return f"[{escape(name)}]({_url(url)})"
    return _autolink(url) if url else ""


def _media(attrs: dict[str, Any]) -> str:
    name = _text_attr(attrs, "alt", "name", "filename")
    if attrs.get("type") == "external":
        url = _text_attr(attrs, "url")
        if url:
            return f"![{escape(name)}]({_url(url)})"
    return f"[attachment: {escape(name)}]" if name else "[attachment]"


def _date(timestamp: Any) -> str:
    """An ADF date (epoch milliseconds, as a string or a number) as an ISO date in UTC."""
    try:
        ms = int(float(timestamp)) if isinstance(timestamp, str | int | float) else None
    except (ValueError, OverflowError):
        ms = None
    if ms is not None and not isinstance(timestamp, bool):
        try:
            return (_EPOCH + timedelta(milliseconds=ms)).date().isoformat()
        except OverflowError:
            pass
    return escape(scalar_text(timestamp))


def _flat_text(node: Any) -> str:
    """Every text in a tree, in document order, without recursion: what an over-deep subtree still shows."""
    texts: list[str] = []
    stack: list[Any] = [node]
    seen = 0
    while stack and seen < _FLAT_LIMIT:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            text = item.get("text")
            if isinstance(text, str):
                texts.append(text)
            attrs = item.get("attrs")
            if item.get("type") in ("mention", "emoji", "status") and isinstance(attrs, dict):
                texts.append(_text_attr(attrs, "text", "shortName"))
            content = item.get("content")
            if isinstance(content, list):
                stack.extend(reversed(content))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            texts.append(item)
    return " ".join(t.strip() for t in texts if t.strip())


# --- wiki markup -----------------------------------------------------------------------------------------------------

_MACROS = ("code", "noformat", "quote", "panel", "info", "note", "warning", "tip")
_MACRO = re.compile(r"\{(" + "|".join(_MACROS) + r")(?::([^}\n]{0,500}))?\}", re.I)
_MACRO_CLOSE = {name: re.compile(r"\{" + name + r"\}", re.I) for name in _MACROS}
_HEADING = re.compile(r"h([1-6])\.(?:[ \t]+(.*))?")
_QUOTE_LINE = re.compile(r"bq\.(?:[ \t]+(.*))?")
_LIST = re.compile(r"(?:([*#]+)|(-))[ \t]+(.*)")
_RULE = re.compile(r"-{4,}")
# Every repeat is bounded, so a long line of unclosed `{{`, `[` or `*` costs linear time, not quadratic.
_INLINE_TOKEN = re.compile(
    r"(?P<mono>\{\{(?P<code>.{1,1000}?)\}\})"
    r"|(?P<macro>\{(?:color|anchor)(?::[^}\n]{0,200})?\})"
    r"|(?P<mention>\[~(?:accountid:)?(?P<who>[^\]\n]{1,200})\])"
    r"|(?P<link>\[(?P<body>[^\]\[\n]{1,2000})\])"
    r"|(?P<image>!(?P<src>[^\s!|][^!|\n]{0,500})(?:\|[^!\n]{0,500})?!)"
    r"|(?P<br>\\\\)"
    r"|(?P<esc>\\(?P<escaped>[*_+\-^~?{}\[\]!|#]))"
    r"|(?P<emph>(?<![A-Za-z0-9])(?P<mark>\?\?|[*_+\-])(?=\S)(?P<inner>.{1,500}?)(?<=\S)(?P=mark)(?![A-Za-z0-9]))"
    # superscript and subscript sit inside words: mc^2^, H~2~O
    r"|(?P<script>(?P<smark>[\^~])(?P<sinner>[^\s^~](?:[^^~\n]{0,98}[^\s^~])?)(?P=smark))"
)
_EMPHASIS = {"*": ("**", "**"), "_": ("*", "*"), "-": ("~~", "~~"), "+": ("<ins>", "</ins>")}
_EMPHASIS.update({"^": ("<sup>", "</sup>"), "~": ("<sub>", "</sub>"), "??": ("*", "*")})
_SCHEME = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]{1,31}:|www\.)\S*")
_WIKI_PANELS = {"info": "Info", "note": "Note", "warning": "Warning", "tip": "Tip"}


def _wiki_blocks(text: str, depth: int, offset: int) -> list[str]:
    """Wiki text as Markdown blocks: `{code}`/`{noformat}`/`{quote}`/`{panel}` macros, then lines."""
    out: list[str] = []
    pos = 0
    while pos <= len(text):
        opened = _MACRO.search(text, pos)
        if opened is None:
            out += _wiki_lines(text[pos:], depth, offset)
            break
        out += _wiki_lines(text[pos : opened.start()], depth, offset)
        name = opened.group(1).lower()
        closed = _MACRO_CLOSE[name].search(text, opened.end())
        body = text[opened.end() : closed.start() if closed else len(text)]
        pos = closed.end() if closed else len(text) + 1
        params = _params(opened.group(2) or "")
        if name in ("code", "noformat"):
            out.append(fenced(body, params.get("", params.get("language", "")) if name == "code" else ""))
            continue
        inner = _join(_wiki_blocks(body, depth + 1, offset)) if depth < MAX_DEPTH else _lines(escape(body))
        label = _WIKI_PANELS.get(name, "")
        title = params.get("title", "")
        heading = ": ".join(p for p in (label, escape(title)) if p)
        block = _join([f"**{heading}**" if heading else "", inner])
        out.append(quoted(block) if block else "")
    return out


def _params(text: str) -> dict[str, str]:
    """`{code:java}` → {"": "java"}; `{panel:title=Plan|bgColor=#fff}` → {"title": "Plan", "bgColor": "#fff"}."""
    params: dict[str, str] = {}
    for part in text.split("|"):
        key, sep, value = part.partition("=")
        if sep:
            params.setdefault(key.strip(), value.strip())
        elif part.strip():
            params.setdefault("", part.strip())
    return params


def _wiki_lines(text: str, depth: int, offset: int) -> list[str]:
    out: list[str] = []
    para: list[str] = []
    items: list[tuple[str, str]] = []
    rows: list[str] = []

    def flush() -> None:
        if para:
            shown = (_wiki_inline(p, depth, HARD_BREAK) for p in para)  # a line of macros alone shows nothing
            out.append(_lines(HARD_BREAK.join(t for t in shown if t.strip())))
            para.clear()
        if items:
            out.append(_wiki_list(items, depth))
            items.clear()
        if rows:
            out.append(table([_wiki_row(r, depth) for r in rows]))
            rows.clear()

    for raw in text.split("\n"):
        line = raw.strip()
        heading = _HEADING.fullmatch(line)
        quote = _QUOTE_LINE.fullmatch(line)
        listed = _LIST.fullmatch(line)
        if not line:
            flush()
        elif heading:
            flush()
            out.append(_heading(int(heading.group(1)) + offset, _wiki_inline(heading.group(2) or "", depth, " ")))
        elif quote:
            flush()
            out.append(quoted(_lines(_wiki_inline(quote.group(1) or "", depth, HARD_BREAK))))
        elif _RULE.fullmatch(line):
            flush()
            out.append("---")
        elif line.startswith("|"):
            if para or items:
                flush()
            rows.append(line)
        elif listed:
            if para or rows:
                flush()
            items.append((listed.group(1) or "-", listed.group(3)))
        else:
            if items or rows:
                flush()
            para.append(line)
    flush()
    return out


def _wiki_list(items: list[tuple[str, str]], depth: int) -> str:
    lines = []
    for marker, text in items:
        indent = sum(3 if ch == "#" else 2 for ch in marker[:-1])
        bullet = "1." if marker[-1] == "#" else "-"
        lines.append(f"{' ' * indent}{bullet} {_lines(_wiki_inline(text, depth, HARD_BREAK))}".rstrip())
    return "\n".join(lines)


def _wiki_row(line: str, depth: int) -> list[str]:
    """`||a||b||` or `|a|[x|http://y]|`: cells split on pipes outside links, macros and `{{mono}}`."""
    cells: list[str] = []
    current: list[str] = []
    nesting = 0
    i = 0
    while i < len(line):
        ch = line[i]
        if ch in "[{":
            nesting += 1
        elif ch in "]}" and nesting:
            nesting -= 1
        if ch == "|" and not nesting:
            if i:
                cells.append("".join(current))
            current = []
            i += 2 if line.startswith("||", i) else 1
            continue
        current.append(ch)
        i += 1
    if "".join(current).strip():
        cells.append("".join(current))
    return [cellify(_wiki_inline(c.strip(), depth, CELL_BREAK)) for c in cells]


def _wiki_inline(text: str, depth: int, br: str) -> str:
    """One line of wiki markup as inline Markdown."""
    if depth > MAX_DEPTH:
        return escape(text)
    out: list[str] = []
    pos = 0
    while pos < len(text):
        token = _INLINE_TOKEN.search(text, pos)
        if token is None:
            out.append(escape(text[pos:]))
            break
        out.append(escape(text[pos : token.start()]))
        rendered = _wiki_token(token, depth, br)
        if rendered is None:
            out.append(escape(text[token.start()]))
            pos = token.start() + 1
        else:
            out.append(rendered)
            pos = token.end()
    return "".join(out)


def _wiki_token(token: re.Match[str], depth: int, br: str) -> str | None:
    if token.group("mono") is not None:
        return code_span(token.group("code"))
    if token.group("macro") is not None:
        return ""
    if token.group("mention") is not None:
        return escape("@" + token.group("who").strip())
    if token.group("link") is not None:
        return _wiki_link(token.group("body"), depth, br)
    if token.group("image") is not None:
        src = token.group("src").strip()
        if _SCHEME.fullmatch(src):
            return f"![]({_url(src)})"
        if re.search(r"\.[A-Za-z0-9]{2,5}$", src):
            return f"[attachment: {escape(src)}]"
        return None
    if token.group("br") is not None:
        return br
    if token.group("esc") is not None:
        return escape(token.group("escaped"))
    mark, inner = (
        (token.group("mark"), token.group("inner")) if token.group("emph") else (token["smark"], token["sinner"])
    )
    opening, closing = _EMPHASIS[mark]
    return f"{opening}{_wiki_inline(inner, depth + 1, br)}{closing}"


def _wiki_link(body: str, depth: int, br: str) -> str | None:
    parts = body.split("|")
    label, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
    target = target.strip()
    if target.startswith("^"):
        return f"[attachment: {escape(target[1:].strip())}]"
    if target.startswith("#"):
        return _wiki_inline(label or target[1:], depth + 1, br)
    if _SCHEME.fullmatch(target):
        url = target if not target.startswith("www.") else "https://" + target
        if not label.strip() or label.strip() == target:
            return _autolink(url)
        return f"[{_wiki_inline(label.strip(), depth + 1, br)}]({_url(url)})"
    if label.strip():
        return f"{_wiki_inline(label.strip(), depth + 1, br)} ({escape(target)})"
    return None
