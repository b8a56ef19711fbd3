"""Personal data masked on read for callers without `audit:pii`; storage is never changed."""

from __future__ import annotations

import copy
from typing import Any

MASK = "[masked]"

PII_PATHS = (
    "case.order.shipping_address.name",
    "case.order.shipping_address.line1",
    "case.order.shipping_address.line2",
    "case.order.internal_notes",
    "case.customer.email",
    "case.customer.phone",
    "case.customer_comment",
    "case.request.items.*.customer_comment",
    "case.inspection.items.*.notes",
    "case.details.suggestions.*.address.name",
    "case.details.suggestions.*.address.line1",
    "case.details.suggestions.*.address.line2",
    "verdict.customer_message",
    "llm_verdict.customer_message",
    "prompt.user",
    "attempts.*.raw_output",
)


def _mask(node: Any, parts: list[str], done: str, found: list[str]) -> None:
    if not parts or node is None:
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(node, list):
            for i, item in enumerate(node):
                _mask(item, rest, f"{done}.{i}", found)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if rest:
        _mask(node[head], rest, f"{done}.{head}", found)
    elif node[head] not in (None, "", []):
        node[head] = MASK
        found.append(f"{done}.{head}".lstrip("."))


def mask_record(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A masked deep copy of a record and the concrete paths that were masked."""
    out = copy.deepcopy(record)
    found: list[str] = []
    for path in PII_PATHS:
        _mask(out, path.split("."), "", found)
    return out, found


def masked_verdict_fields() -> frozenset[str]:
    """Top-level verdict fields that callers without `audit:pii` see masked."""
    return frozenset(p.split(".")[1] for p in PII_PATHS if p.startswith("verdict."))


def mask_tokens(node: Any, path: str) -> list[str]:
    """The paths under `path` whose text contains the mask token: a placeholder, never data."""
    if isinstance(node, str):
        return [path] if MASK in node else []
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in mask_tokens(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in mask_tokens(v, f"{path}.{i}")]
    return []
