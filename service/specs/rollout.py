"""How a shadow or canary candidate compares with the live version."""

from __future__ import annotations

from typing import Any

from service.log.decisions import DecisionLog
from service.specs.registry import SpecRegistry


def rollout_report(
    registry: SpecRegistry, kind: str, *, log: DecisionLog, limit: int = 1000
) -> dict[str, Any] | None:
    """Outcome agreement on shadow pairs, or the canary's share of live traffic."""
    snapshot = registry.snapshot
    cand = snapshot.candidate(kind)
    if cand is None:
        return None
    report: dict[str, Any] = {
        "kind": kind,
        "candidate": {
            "file": f"{cand.name}.md",
            "sha256": cand.sha256,
            "version": cand.version,
            "rollout": cand.meta.rollout,
        },
        "live": [
            {"file": f"{s.name}.md", "sha256": s.sha256, "version": s.version}
            for s in snapshot.active_specs(kind)
        ],
    }
    if cand.meta.rollout == "shadow":
        pairs = log.shadow_pairs(kind=kind, candidate_sha=cand.sha256, limit=limit)
        disagree = [
            {
                "live_decision": live.id,
                "shadow_decision": shadow.id,
                "order_id": live.order_id,
                "live_outcome": live.outcome,
                "candidate_outcome": shadow.outcome,
                "live_source": live.source,
                "candidate_source": shadow.source,
            }
            for live, shadow in pairs
            if live.outcome != shadow.outcome
        ]
        report["compared"] = len(pairs)
        report["agreement_rate"] = round(1 - len(disagree) / len(pairs), 4) if pairs else None
        report["disagreements"] = disagree
    else:
        served = log.served_by(kind=kind, limit=limit)
        total = sum(served.values())
        report["canary_percent"] = cand.meta.canary_percent
        report["recent_decisions"] = total
        report["served_by_candidate"] = served.get(cand.sha256, 0)
        report["candidate_share"] = round(served.get(cand.sha256, 0) / total, 4) if total else None
    return report
