"""Differences between two spec versions: the text, and the parameters key by key."""

from __future__ import annotations

import difflib
from typing import Any


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested parameters as {"weights.cost": 1.0, ...}."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def diff_versions(
    *,
    old_text: str,
    new_text: str,
    old_params: dict[str, Any],
    new_params: dict[str, Any],
    old_label: str,
    new_label: str,
) -> dict[str, Any]:
    """A unified text diff and the list of parameter changes."""
    text = "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=old_label,
            tofile=new_label,
        )
    )
    a, b = flatten(old_params), flatten(new_params)
    changes = []
    for key in sorted(a.keys() | b.keys()):
        if a.get(key) != b.get(key) or (key in a) != (key in b):
            change = "added" if key not in a else "removed" if key not in b else "changed"
            changes.append({"key": key, "change": change, "from": a.get(key), "to": b.get(key)})
    return {"from": old_label, "to": new_label, "parameters": changes, "text": text}
