"""The README's map of the code: every name its "Where each rule lives" table cites is there to be found."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_NAME = re.compile(r"`((?:pipeline|functions|api)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def rule_table() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Where each rule lives", 1)[1].split("\n### ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| guarantee")]


def resolve(dotted: str) -> object:
    """The module, class, function or method a dotted name names; raises if any part is missing."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


def test_every_guarantee_names_where_it_is_kept_and_each_name_exists() -> None:
    rows = rule_table()
    assert len(rows) >= 15
    missing = []
    for row in rows:
        names = _NAME.findall(row.split("|")[2])
        assert names, f"this row names no code: {row}"
        for name in names:
            try:
                resolve(name)
            except (ImportError, AttributeError):
                missing.append(name)
    assert missing == []


def test_a_name_that_is_not_there_is_caught() -> None:
    for name in ("pipeline.payload.no_such_rule", "pipeline.nowhere.verify", "pipeline.git.store.GitStore.nope"):
        try:
            resolve(name)
        except (ImportError, AttributeError):
            continue
        raise AssertionError(f"{name} resolved")
