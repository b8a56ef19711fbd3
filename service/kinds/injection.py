"""A deterministic screen for prompt injection in untrusted text (comments, notes, addresses).

Which text is untrusted is the kind's to say: Case fields tagged UNTRUSTED
(service.kinds.base). The screen never decides anything: a hit only flags the decision for
review. The hard limits hold whatever the text says, because guardrails check every LLM
verdict.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from typing import Any

from service.kinds.base import at_path

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


def untrusted_texts(data: dict[str, Any], paths: tuple[str, ...]) -> list[str]:
    """Every string of the case (JSON) at the kind's untrusted paths."""
    found = [c[k] for p in paths for c, k, _ in at_path(data, p)]
    return [t for t in found if isinstance(t, str)]


def _variants(text: str) -> list[str]:
    clean = ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text))
    out = [clean]
    for blob in B64.findall(clean):
        try:
            out.append(base64.b64decode(blob + "=" * (-len(blob) % 4)).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
    return out


def screen(case: dict[str, Any], paths: tuple[str, ...]) -> list[str]:
    """Why the case's untrusted text (at `paths`) looks like an injection attempt (empty: it
    does not)."""
    found: list[str] = []
    for text in untrusted_texts(case, paths):
        for variant in _variants(text):
            for pattern, why in COMPILED:
                if pattern.search(variant) and why not in found:
                    found.append(why)
    return found
