"""An issue document as Markdown for people browsing the git repository (`issues/<PROJECT>/<KEY>.md`).

Pure and total: the same document and names give the same bytes, and no document, however malformed, raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline.jiratime import canonical, epoch_ms
from pipeline.richtext import cellify, code_span, compact_json, escape, scalar_text, table, to_cell, to_markdown

# System fields people look for first, in the order Jira's issue view shows them, with the names they go by when
# there is no field catalogue to ask.
SYSTEM_FIELDS: tuple[tuple[str, str], ...] = (
    ("project", "Project"),
    ("issuetype", "Issue Type"),
    ("status", "Status"),
    ("priority", "Priority"),
    ("resolution", "Resolution"),
    ("assignee", "Assignee"),
    ("reporter", "Reporter"),
    ("labels", "Labels"),
    ("components", "Components"),
    ("versions", "Affects Versions"),
    ("fixVersions", "Fix Versions"),
    ("parent", "Parent"),
    ("issuelinks", "Linked Issues"),
    ("subtasks", "Sub-tasks"),
    ("duedate", "Due Date"),
    ("created", "Created"),
    ("updated", "Updated"),
    ("resolutiondate", "Resolved"),
)
_SPRINT_STRING = re.compile(r"com\.atlassian\.greenhopper\.service\.sprint\.Sprint@\w*\[(.*)\]", re.S)
_MAX_DEPTH = 12  # of a field value people read in one cell; deeper parts are shown as JSON


def render_issue(doc: dict[str, Any], names: Mapping[str, str]) -> str:
    """`# <KEY>: <summary>`, a Field | Value table, then the description, comments and attachments."""
    doc = doc if isinstance(doc, dict) else {}
    names = names if isinstance(names, Mapping) else {}
    fields = doc.get("fields")
    fields = fields if isinstance(fields, dict) else {}
    sections = [_title(doc, fields), _field_table(fields, names)]
    description = to_markdown(fields.get("description"), heading_offset=2)
    if description:
        sections.append(f"## {_name('description', 'Description', names)}\n\n{description}")
    sections.append(_comments(fields.get("comment")))
    sections.append(_attachments(fields.get("attachment")))
    return "\n\n".join(s for s in sections if s) + "\n"


def _name(field: str, fallback: str, names: Mapping[str, str]) -> str:
    name = names.get(field)
    return escape(name.strip()) if isinstance(name, str) and name.strip() else escape(fallback)


def _title(doc: dict[str, Any], fields: dict[str, Any]) -> str:
    key = doc.get("key")
    key = key if isinstance(key, str) and key.strip() else scalar_text(doc.get("id"))
    summary = fields.get("summary")
    summary = " ".join(summary.split()) if isinstance(summary, str) else ""
    title = ": ".join(escape(p) for p in (" ".join(key.split()), summary) if p)
    # a trailing run of `#` would be read as the heading's closing sequence and vanish
    title = re.sub(r"#+$", lambda m: "\\" + m.group(), title)
    return f"# {title}" if title else "# (no key)"


def _field_table(fields: dict[str, Any], names: Mapping[str, str]) -> str:
    rows: list[list[str]] = [["Field", "Value"]]
    for field, fallback in SYSTEM_FIELDS:
        if field not in fields:
            continue
        value = fields[field]
        if field == "issuelinks":
            text = _links(value)
        elif field in ("parent", "subtasks"):
            refs = (_issue_ref(v) for v in (value if isinstance(value, list) else [value]))
            text = ", ".join(r for r in refs if r)
        elif field in ("assignee", "reporter") and value is None:
            text = "Unassigned" if field == "assignee" else ""
        else:
            text = _value(value, 0, rich=False)
        if text:
            rows.append([_name(field, fallback, names), text])
    custom: list[tuple[str, str, str]] = []
    for field, value in fields.items():
        if not isinstance(field, str) or not field.startswith("customfield_") or _empty(value):
            continue
        name = names.get(field)
        label = name.strip() if isinstance(name, str) and name.strip() else field
        sprints = _sprints(value)
        text = sprints if sprints is not None else _value(value, 0, rich=True)
        if text:
            custom.append((label, field, text))
    for label, _field, text in sorted(custom):
        rows.append([cellify(escape(label)), text])
    return table(rows) if len(rows) > 1 else ""


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _value(value: Any, depth: int, *, rich: bool) -> str:
    """A field's value in one table cell: objects by their name, lists joined. Strings of custom fields may be
    wiki markup (text areas) and are converted; system fields' strings (labels, dates) are shown as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, str):
        moment = _time(value)
        return moment or (to_cell(value) if rich else cellify(escape(value)))
    if isinstance(value, dict):
        if value.get("type") == "doc":
            return to_cell(value)
        return _object(value, depth)
    if isinstance(value, list):
        if depth >= _MAX_DEPTH:
            return cellify(code_span(compact_json(value)))
        return ", ".join(t for t in (_value(v, depth + 1, rich=rich) for v in value) if t)
    return escape(scalar_text(value))


def _object(value: dict[str, Any], depth: int) -> str:
    """A user, option, version or component by the name people know it by; a cascading option as `A → B`."""
    for key in ("displayName", "name", "value", "key"):
        label = value.get(key)
        if isinstance(label, str | int | float) and not isinstance(label, bool) and scalar_text(label).strip():
            text = cellify(escape(scalar_text(label).strip()))
            child = value.get("child")
            if isinstance(child, dict) and depth < _MAX_DEPTH:
                return f"{text} → {_object(child, depth + 1)}"
            return text
    if "accountId" in value and isinstance(value["accountId"], str):
        return cellify(escape(value["accountId"]))
    return cellify(code_span(compact_json(value))) if value else ""  # no name to show: the object itself


def _time(value: str) -> str:
    """A Jira datetime as `2026-10-26 09:07 UTC`; "" for any other string."""
    utc = canonical(value.strip())
    ms = epoch_ms(utc) if utc else None
    if ms is None:
        return ""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _issue_ref(value: Any) -> str:
    """`OPS-3: Its summary` for a linked, parent or sub-task issue."""
    if not isinstance(value, dict):
        return escape(value) if isinstance(value, str) else ""
    key = value.get("key")
    key = key if isinstance(key, str) and key else scalar_text(value.get("id")) if value.get("id") is not None else ""
    fields = value.get("fields")
    summary = fields.get("summary") if isinstance(fields, dict) else None
    text = ": ".join(p for p in (key, " ".join(summary.split()) if isinstance(summary, str) else "") if p)
    return cellify(escape(text))


def _links(value: Any) -> str:
    """Issue links as `blocks OPS-3`, `is blocked by OPS-4`, one per line of the cell."""
    lines = []
    for link in value if isinstance(value, list) else []:
        if not isinstance(link, dict):
            continue
        kind = link.get("type")
        kind = kind if isinstance(kind, dict) else {}
        for side, verb in (("outwardIssue", "outward"), ("inwardIssue", "inward")):
            other = _issue_ref(link.get(side))
            if other:
                label = kind.get(verb) or kind.get("name") or "relates to"
                lines.append(f"{cellify(escape(scalar_text(label)))} {other}")
    return "<br>".join(lines)


def _sprints(value: Any) -> str | None:
    """The sprints in a Sprint field (objects from Cloud, `...Sprint@1a2b[id=1,name=...]` strings from old Server),
    as `OPS Sprint 12 (active)`; None when `value` is not a sprint field's."""
    if not isinstance(value, list) or not value:
        return None
    shown = []
    for sprint in value:
        if isinstance(sprint, dict) and "boardId" in sprint and isinstance(sprint.get("name"), str):
            name, state = sprint["name"], sprint.get("state")
        elif isinstance(sprint, str) and (found := _SPRINT_STRING.search(sprint)):
            attrs = dict(part.partition("=")[::2] for part in found.group(1).split(","))
            name, state = attrs.get("name", ""), attrs.get("state")
        else:
            return None
        text = f"{name} ({str(state).lower()})" if isinstance(state, str) and state else name
        shown.append(cellify(escape(text)))
    return ", ".join(shown)


def _sort_key(item: dict[str, Any]) -> tuple[bool, int, str, int, str]:
    created = item.get("created")
    ms = epoch_ms(created) if isinstance(created, str) else None
    ident = scalar_text(item.get("id"))
    return (ms is None, ms or 0, scalar_text(created), len(ident), ident)


def _person(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("displayName", "name", "accountId"):
            if isinstance(value.get(key), str) and value[key].strip():
                return " ".join(value[key].split())
    return "Unknown"


def _comments(holder: Any) -> str:
    listed = holder.get("comments") if isinstance(holder, dict) else holder
    comments = sorted((c for c in listed if isinstance(c, dict)), key=_sort_key) if isinstance(listed, list) else []
    if not comments:
        return ""
    parts = ["## Comments"]
    for comment in comments:
        created, updated = comment.get("created"), comment.get("updated")
        when = _time(created) if isinstance(created, str) else ""
        heading = " — ".join(p for p in (escape(_person(comment.get("author"))), when) if p)
        edited = _time(updated) if isinstance(updated, str) and updated != created else ""
        if edited and edited != when:
            heading += f" (edited {edited})"
        body = to_markdown(comment.get("body"), heading_offset=3)
        parts.append(f"### {heading}\n\n{body}" if body else f"### {heading}")
    return "\n\n".join(parts)


def _attachments(value: Any) -> str:
    files = sorted((a for a in value if isinstance(a, dict)), key=_sort_key) if isinstance(value, list) else []
    lines = []
    for attachment in files:
        name = attachment.get("filename")
        text = escape(" ".join(name.split())) if isinstance(name, str) and name.strip() else "(unnamed)"
        size = attachment.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            text += f" ({_size(size)})"
        lines.append(f"- {text}")
    return "## Attachments\n\n" + "\n".join(lines) if lines else ""


def _size(size: int) -> str:
    """`512 B`, `12.3 KB`, `4.0 MB`, `2.5 GB`."""
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KB", "MB", "GB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GB":
            break
    return f"{scaled:.1f} {unit}"
