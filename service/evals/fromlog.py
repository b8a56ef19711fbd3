"""Turn a logged decision (and its human review, if any) into an eval case."""

from __future__ import annotations

from pathlib import Path

import yaml

from service.errors import Conflict, NotFound
from service.kinds.registry import Kinds
from service.log.decisions import DecisionLog
from service.log.masking import mask_record


def add_from_log(
    log: DecisionLog,
    decision_id: str,
    root: Path,
    suite_path: Path | None,
    *,
    kinds: Kinds,
    include_pii: bool = False,
) -> tuple[Path, str, str, list[str]]:
    """Append the case; expected outcome = the reviewer's, else the logged one.

    Suites live in the repository, so personal data (names, addresses, e-mails, phones,
    comments) is masked unless `include_pii`; returns the masked paths too.
    """
    row = log.get(decision_id=decision_id)
    if row is None:
        raise NotFound(f"no decision {decision_id}")
    review = log.superseding(decision_id=decision_id)
    while review is not None and review.needs_review:  # awaiting a second reviewer
        review = log.superseding(decision_id=review.id)
    expected = review.outcome if review is not None else row.outcome
    path = suite_path or root / row.kind / "from-log.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    data = data or {
        "suite": f"{row.kind}-from-log",
        "kind": row.kind,
        "description": "Cases taken from the decision log.",
        "cases": [],
    }
    case_id = f"log-{decision_id}"
    if any(c["id"] == case_id for c in data["cases"]):
        raise Conflict(f"{path} already has case {case_id}")
    case, masked = row.case, list[str]()
    if not include_pii:
        masked_record, masked = mask_record({"case": row.case}, kinds.get(row.kind))
        case = masked_record["case"]
    tags = ["from-log", "reviewed" if review is not None else "as-decided"]
    note = f" Reviewer: {review.rationale}" if review is not None else ""
    data["cases"].append(
        {
            "id": case_id,
            "description": f"Decision {decision_id} ({row.source}, {row.outcome}).{note}",
            "tags": tags,
            "case": case,
            "expect": {"fields": {"outcome": expected}},
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path, case_id, expected, masked
