"""A deterministic screen for prompt injection in untrusted text (comments, notes, addresses).

It never decides anything: a hit only flags the decision for review. The hard limits hold
whatever the text says, because guardrails check every LLM verdict.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from typing import Any

UNTRUSTED_KEYS = frozenset(
    {"customer_comment", "notes", "line1", "line2", "name", "city", "region", "internal_notes"}
)
ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u2060-\u2064\ufeff]")
PATTERNS = [
    (
        r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instruction|rule|polic|prompt|"
        r"guideline|limit)",
        "asks to ignore the rules",
    ),
    (r"(^|\W)(system|assistant|developer)\s*(prompt|message|override)?\s*:", "fake role marker"),
    (r"\byou are now\b|\bact as\b|\bnew instructions\b", "tries to re-assign the model"),
    (r"\bpre-?approved\b|\bapproved by (the )?manager\b", "claims a prior approval"),
    (
        r"[\"'](outcome|action|refund_amount|plan_id|confidence|cited_clauses)[\"']\s*:",
        "contains a fake verdict",
    ),
    (
        r"\bignorez\b|\bignoriere\b|\bignora\b|\bignoreer\b|無視|忽略|игнорир",
        "asks to ignore the rules (non-English)",
    ),
]
COMPILED = [(re.compile(p, re.IGNORECASE | re.DOTALL), why) for p, why in PATTERNS]
B64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")


def untrusted_texts(data: Any, key: str = "") -> list[str]:
    """Every string in the case under a key that holds text written by outsiders."""
    if isinstance(data, dict):
        return [t for k, v in data.items() for t in untrusted_texts(v, k)]
    if isinstance(data, list):
        return [t for v in data for t in untrusted_texts(v, key)]
    return [data] if isinstance(data, str) and key in UNTRUSTED_KEYS else []


def _variants(text: str) -> list[str]:
    clean = ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text))
    out = [clean]
    for blob in B64.findall(clean):
        try:
            out.append(base64.b64decode(blob + "=" * (-len(blob) % 4)).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
    return out


def screen(case: dict[str, Any]) -> list[str]:
    """Why the case's untrusted text looks like an injection attempt (empty: it does not)."""
    found: list[str] = []
    for text in untrusted_texts(case):
        for variant in _variants(text):
            for pattern, why in COMPILED:
                if pattern.search(variant) and why not in found:
                    found.append(why)
    return found
