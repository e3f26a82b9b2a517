"""The JSONPath subset that printer columns use: `.a.b`, `[0]` and `[?(@.key=="value")]`.

`kubectl` evaluates `additionalPrinterColumns` with full JSONPath; Lykeion's columns only
need dotted fields and the conditions filter, so this evaluator accepts exactly those and
rejects anything else instead of guessing.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FIELD = r"\.(?P<field>[A-Za-z_][A-Za-z0-9_-]*)"
_INDEX = r"\[(?P<index>[0-9]+)\]"
_FILTER = (
    r"\[\?\(@\.(?P<key>[A-Za-z_][A-Za-z0-9_-]*)\s*==\s*"
    r"""(?P<quote>["'])(?P<value>.*?)(?P=quote)\)\]"""
)
_STEP = re.compile(f"{_FIELD}|{_INDEX}|{_FILTER}")


def _steps(path: str) -> list[re.Match[str]]:
    steps: list[re.Match[str]] = []
    position = 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        steps.append(step)
        position = step.end()
    if not steps:
        raise ValueError("empty JSONPath")
    return steps


def evaluate(document: Any, path: str) -> list[Any]:
    """Every value `path` selects in `document` (no match gives an empty list)."""
    current = [document]
    for step in _steps(path):
        selected: list[Any] = []
        for node in current:
            if step["field"] is not None:
                if isinstance(node, dict) and step["field"] in node:
                    selected.append(node[step["field"]])
            elif step["index"] is not None:
                index = int(step["index"])
                if isinstance(node, list) and index < len(node):
                    selected.append(node[index])
            elif isinstance(node, list):
                selected.extend(
                    item
                    for item in node
                    if isinstance(item, dict) and _text(item.get(step["key"])) == step["value"]
                )
        current = selected
    return current


def cell(document: Any, path: str) -> str:
    """What a table shows for `path`: the matches joined by commas, or an empty string."""
    return ",".join(_text(value) for value in evaluate(document, path))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
