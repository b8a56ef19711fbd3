"""Personal data masked on read for callers without `audit:pii`; storage is never changed.

What is personal comes from the kind: fields tagged PERSONAL on its Case and Verdict
(service.kinds.base). Only the record's own free text is listed here: the prompt (it holds
the case), the model's raw output and the provider's error bodies (both may quote it), and
reviewers' notes.
"""

from __future__ import annotations

import copy
from typing import Any

from service.kinds.base import DecisionKind, VerdictBase, at_path, field_paths

MASK = "[masked]"

RECORD_FREE_TEXT = (
    "prompt.user",
    "attempts.*.raw_output",
    "attempts.*.error_body",
    "superseded_by.*.note",
)
"""Text of the record itself (not of a kind's fields) that may quote the customer."""

UNKNOWN_KIND = ("case", "verdict", "llm_verdict", "rationale")
"""A record of a kind this process does not know is masked whole."""


def record_paths(kind: DecisionKind[Any, Any, Any] | None) -> tuple[str, ...]:
    """The paths masked in a record of `kind` (its case, verdicts, and the envelope)."""
    if kind is None:
        return (*UNKNOWN_KIND, *RECORD_FREE_TEXT)
    case = field_paths(kind.Case).personal
    verdict = field_paths(kind.Verdict).personal
    return (
        *(f"case.{p}" for p in case),
        *(f"{top}.{p}" for top in ("verdict", "llm_verdict") for p in verdict),
        # the envelope repeats the verdict's common fields (rationale) at the top
        *(p for p in verdict if p in VerdictBase.model_fields),
        *RECORD_FREE_TEXT,
    )


def mask_paths(data: dict[str, Any], paths: tuple[str, ...]) -> list[str]:
    """Replace every non-empty value at `paths` by the mask token, in place; the concrete
    paths masked."""
    found: list[str] = []
    for path in paths:
        for container, key, where in at_path(data, path):
            if container[key] not in (None, "", []):
                container[key] = MASK
                found.append(where)
    return found


def mask_record(
    record: dict[str, Any], kind: DecisionKind[Any, Any, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """A masked deep copy of a record of `kind` and the concrete paths that were masked."""
    out = copy.deepcopy(record)
    return out, mask_paths(out, record_paths(kind))


def for_reader(
    data: dict[str, Any], kind: DecisionKind[Any, Any, Any] | None, *, pii: bool
) -> dict[str, Any]:
    """`data` (a record or a part of one) as a reader sees it: as stored with `audit:pii`,
    else a masked copy."""
    return data if pii else mask_record(data, kind)[0]


def masked_verdict_fields(kind: DecisionKind[Any, Any, Any]) -> frozenset[str]:
    """Top-level verdict fields of `kind` that callers without `audit:pii` see masked."""
    return frozenset(p.split(".")[0] for p in field_paths(kind.Verdict).personal)


def mask_tokens(node: Any, path: str) -> list[str]:
    """The paths under `path` whose text contains the mask token: a placeholder, never data."""
    if isinstance(node, str):
        return [path] if MASK in node else []
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in mask_tokens(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in mask_tokens(v, f"{path}.{i}")]
    return []
