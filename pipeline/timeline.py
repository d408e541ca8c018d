"""An issue's history as one HTML page: every captured version, newest first, escaped, with no external assets."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from html import escape
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pipeline.errors import JSyncError

_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]{0,30}(/[A-Za-z0-9_+\-]{1,30}){0,2}$")
_LONG_TEXT = 80  # a value longer than this (or over several lines) is shown as a word-level diff
_DIFF_TOKENS = 4000  # beyond this many words a side, the diff is the whole old text then the whole new
_EVENTS = {
    "jira:issue_created": "Created",
    "jira:issue_updated": "Updated",
    "jira:issue_deleted": "Deleted",
    "comment_created": "Comment added",
    "comment_updated": "Comment edited",
    "comment_deleted": "Comment deleted",
    "worklog_created": "Work logged",
    "worklog_updated": "Work log edited",
    "worklog_deleted": "Work log deleted",
}
_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;color:#1d232a}
h1{font-size:1.5rem;margin:.2rem 0}h1 small{font-weight:normal;color:#4a5560}
.note{background:#fff4e5;border-left:4px solid #e8912d;padding:.5rem .8rem}
.zone{color:#4a5560;font-size:.9rem}
ol.versions{list-style:none;padding:0}
li.version{border-left:3px solid #1f4e79;margin:0 0 1rem;padding:.3rem 0 .3rem 1rem}
li.deleted{border-color:#b42318}
.meta{color:#4a5560}.meta .event{font-weight:600;color:#1d232a}.meta .actor{color:#1d232a}
table.changes{border-collapse:collapse;margin-top:.3rem}
table.changes th{text-align:left;vertical-align:top;padding:.15rem .8rem .15rem 0;width:10rem;font-weight:600}
table.changes td{vertical-align:top;padding:.15rem .4rem;overflow-wrap:anywhere}
td.arrow{color:#4a5560;width:1rem}
del{background:#fde8e8;color:#8a1c1c}ins{background:#e3f6e8;color:#135c2b;text-decoration:none}
.empty{color:#8a949e;font-style:italic}.diff{white-space:pre-wrap}
form{margin:1rem 0}input{font:inherit;padding:.3rem}button{font:inherit;padding:.3rem .8rem}
ul.attachments{margin:.3rem 0 0;padding-left:1.2rem}.not-kept{color:#8a6d00}
"""
# When no zone was asked for, show the times in the browser's own zone (the page reads fine without it).
_LOCAL_TIME_SCRIPT = """
(function(){var f=new Intl.DateTimeFormat(undefined,{dateStyle:"medium",timeStyle:"medium"});
var z=Intl.DateTimeFormat().resolvedOptions().timeZone;
document.querySelectorAll("time[datetime]").forEach(function(t){t.textContent=f.format(new Date(t.dateTime));});
var n=document.getElementById("zone");if(n&&z){n.textContent="Times in your time zone, "+z+".";}})();
"""
# Deployed, CloudFront's origin access control only passes a POST that carries its body's SHA-256.
_SIGN_IN_SCRIPT = """
(function(){var form=document.getElementById("sign-in");form.addEventListener("submit",function(e){
e.preventDefault();var body=new URLSearchParams(new FormData(form)).toString();
crypto.subtle.digest("SHA-256",new TextEncoder().encode(body)).then(function(d){
var hex=Array.from(new Uint8Array(d)).map(function(b){return b.toString(16).padStart(2,"0");}).join("");
return fetch(location.href,{method:"POST",body:body,credentials:"same-origin",headers:{
"content-type":"application/x-www-form-urlencoded","x-amz-content-sha256":hex}});
}).then(function(r){if(r.ok){location.reload();}else{
document.getElementById("refused").textContent="That key was not accepted.";}});});})();
"""


@dataclass(frozen=True)
class Timeline:
    """What the page shows; `items` are `pipeline.reader.history` items."""

    ref: str  # what the reader asked for: a key (maybe an old one) or an id
    key: str | None  # the key now, when known
    summary: str | None
    items: list[dict[str, Any]]
    older_href: str | None  # the next page, or None on the last
    zone: tzinfo | None  # None: UTC, converted to the browser's zone by a script
    gone: str | None  # why the issue is gone (deleted), or None
    favicon: str
    nonce: str


def zone(name: str | None) -> tzinfo | None:
    """The zone `?tz=` names (an IANA name like Europe/Berlin), None when absent; 400 when unknown."""
    if name is None or name == "":
        return None
    if _ZONE_NAME.fullmatch(name):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    if not available_timezones():
        # A runtime without zone data (no system tzdata, no `tzdata` package) knows no zone at all: say so.
        raise JSyncError(400, "invalid_tz", "This server has no time zone data; leave out tz to read times in UTC.")
    raise JSyncError(400, "invalid_tz", f"{name[:60]!r} is not a time zone; use an IANA name like Europe/Berlin.")


def older_href(cursor: str | None, limit: int, tz: str | None) -> str | None:
    """The query of the next page, relative to the page itself."""
    if cursor is None:
        return None
    params = {"cursor": cursor, "limit": str(limit), **({"tz": tz} if tz else {})}
    return "?" + urlencode(params)


def render(view: Timeline) -> str:
    title = view.key or view.ref
    head = f"<h1>{escape(title)}{f' <small>{escape(view.summary)}</small>' if view.summary else ''}</h1>"
    notes = []
    if view.key and view.ref != view.key and not view.ref.isdigit():
        notes.append(f"{escape(view.ref)} is now {escape(view.key)}.")
    if view.gone:
        notes.append(escape(view.gone))
    note = "".join(f'<p class="note">{n}</p>' for n in notes)
    zone_note = (
        f"Times in {escape(str(view.zone))}."
        if view.zone is not None
        else "Times in UTC; add <code>?tz=Area/City</code> for another zone."
    )
    link_key = quote(view.key or view.ref, safe="")
    versions = "".join(_version(item, link_key, view.zone) for item in view.items)
    if not view.items:
        versions = '<li class="empty">No captured versions on this page.</li>'
    older = f'<nav><a rel="next" href="{escape(view.older_href)}">Older versions</a></nav>' if view.older_href else ""
    script = "" if view.zone is not None else f'<script nonce="{view.nonce}">{_LOCAL_TIME_SCRIPT}</script>'
    body = (
        f'{head}{note}<p class="zone" id="zone">{zone_note}</p>'
        f'<ol class="versions" reversed>{versions}</ol>{older}{script}'
    )
    return _page(f"{title}: timeline", body, view.favicon, view.nonce)


def render_message(title: str, detail: str, favicon: str, nonce: str) -> str:
    """An error page: a heading and one sentence."""
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(detail)}</p>", favicon, nonce)


def render_sign_in(ref: str, refused: bool, favicon: str, nonce: str) -> str:
    """The form that takes an API key once and signs the browser in (a cookie; the key never goes in a URL)."""
    message = '<p id="refused" class="note" role="alert">That key was not accepted.</p>'
    if not refused:
        message = '<p id="refused" role="alert"></p>'
    body = (
        f"<h1>{escape(ref)}: timeline</h1><p>This JSync needs an API key to show issues.</p>"
        '<form id="sign-in" method="post"><label>API key <input type="password" name="api_key" required '
        'autocomplete="current-password"></label> <button type="submit">Show the timeline</button></form>'
        f"{message}"
        f'<script nonce="{nonce}">{_SIGN_IN_SCRIPT}</script>'
    )
    return _page(f"{ref}: sign in", body, favicon, nonce)


def content_security_policy(nonce: str) -> str:
    """Only this page's own style and script run: a Jira text that slipped through escaping still could not."""
    return (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def _page(title: str, body: str, favicon: str, nonce: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="icon" href="{escape(favicon)}">'
        f'<style nonce="{nonce}">{_STYLE}</style></head><body>{body}</body></html>'
    )


def _version(item: dict[str, Any], link_key: str, shown_in: tzinfo | None) -> str:
    event = str(item.get("event") or "")
    label = _EVENTS.get(event, event.removeprefix("jira:").replace("_", " ").capitalize() or "Changed")
    changes = [c for c in item.get("changes") or [] if isinstance(c, dict)]
    moved = next((c for c in changes if str(c.get("field")).lower() == "key" and c.get("to")), None)
    if moved is not None:
        label = f"Moved {moved.get('from') or ''} → {moved.get('to')}".replace("Moved  → ", "Moved to ")
    version = str(item.get("version") or "")
    json_href = f"/api/v1/issues/{link_key}/history/{quote(version, safe='')}"
    meta = (
        f'<div class="meta">{_time(item.get("event_time"), shown_in)} · <span class="event">{escape(label)}</span>'
        f' by <span class="actor">{escape(_actor(item.get("actor")))}</span>'
        f' · <a href="{escape(json_href)}" title="version {escape(version)}">JSON</a></div>'
    )
    rows = "".join(_change(c) for c in changes)
    table = f'<table class="changes">{rows}</table>' if rows else ""
    kind = " deleted" if event == "jira:issue_deleted" else ""
    kept = "".join(_attachment(a, link_key) for a in item.get("attachments") or [] if isinstance(a, dict))
    files = f'<ul class="attachments">{kept}</ul>' if kept else ""
    return f'<li class="version{kind}" id="v-{escape(version)}">{meta}{table}{files}</li>'


def _attachment(note: dict[str, Any], link_key: str) -> str:
    """An attachment this version added: a link to the copy JSync kept, or why there is none."""
    name = escape(str(note.get("filename") or note.get("id") or "attachment"))
    if note.get("state") == "stored":
        href = f"/api/v1/issues/{link_key}/attachments/{quote(str(note.get('id')), safe='')}"
        return f'<li>Attachment <a href="{escape(href)}" download>{name}</a></li>'
    why = escape(str(note.get("reason") or note.get("state") or ""))
    return f'<li>Attachment {name}: <span class="not-kept">not kept ({why})</span></li>'


def _time(event_time: Any, shown_in: tzinfo | None) -> str:
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        return '<span class="empty">unknown time</span>'
    try:
        moment = datetime.fromtimestamp(event_time / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return '<span class="empty">unknown time</span>'
    stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    local = moment.astimezone(shown_in) if shown_in is not None else moment
    text = local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "UTC")
    return f'<time datetime="{stamp}">{escape(text)}</time>'


def _actor(actor: Any) -> str:
    if isinstance(actor, dict):
        for k in ("displayName", "name", "accountId"):
            if isinstance(actor.get(k), str) and actor[k]:
                return str(actor[k])
    return "someone (Jira did not say)"


def _change(change: dict[str, Any]) -> str:
    name = change.get("name") or change.get("field")
    before, after = _text(change.get("from")), _text(change.get("to"))
    label = f"<th>{escape(str(name))}</th>"
    if before is not None and after is not None and _long(before, after):
        return f'<tr>{label}<td colspan="3"><div class="diff">{word_diff(before, after)}</div></td></tr>'
    return f'<tr>{label}<td>{_value(before, "del")}</td><td class="arrow">→</td><td>{_value(after, "ins")}</td></tr>'


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _long(before: str, after: str) -> bool:
    return max(len(before), len(after)) > _LONG_TEXT or "\n" in before or "\n" in after


def _value(value: str | None, tag: str) -> str:
    return '<span class="empty">none</span>' if value is None else f"<{tag}>{escape(value)}</{tag}>"


def word_diff(before: str, after: str) -> str:
    """The words removed in `<del>`, the words added in `<ins>`, the rest as it was; every part escaped."""
    old, new = re.split(r"(\s+)", before), re.split(r"(\s+)", after)
    if max(len(old), len(new)) > 2 * _DIFF_TOKENS:
        return f"<del>{escape(before)}</del> <ins>{escape(after)}</ins>"
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(escape("".join(old[i1:i2])))
            continue
        if i2 > i1:
            parts.append(f"<del>{escape(''.join(old[i1:i2]))}</del>")
        if j2 > j1:
            parts.append(f"<ins>{escape(''.join(new[j1:j2]))}</ins>")
    return "".join(parts)
