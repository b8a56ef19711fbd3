"""The review queue: GET /v1/reviews, POST /v1/decisions/{id}/review (scope `review`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from service.api.filters import decode_cursor, encode_cursor, summary
from service.api.schemas import AUTHED, ReviewOut, ReviewPage, errors
from service.audit import submit_review
from service.auth import Caller
from service.deps import KindsDep, LogDep, RegistryDep, json_body, require
from service.kinds.base import storable
from service.log.masking import for_reader

router = APIRouter(prefix="/v1", tags=["reviews"], responses=errors(*AUTHED, 422))
ReviewCaller = Annotated[Caller, Depends(require("review"))]


class ReviewIn(BaseModel):
    """A reviewer's decision: the verdict to act on (omit it to accept the proposed one)."""

    verdict: dict[str, Any] | None = None
    note: str = Field(min_length=1, max_length=2000)

    check_storable = field_validator("*", mode="after")(storable)


@router.get("/reviews", response_model=ReviewPage)
async def list_reviews(
    log: LogDep,
    kinds: KindsDep,
    caller: ReviewCaller,
    status: Literal["open", "resolved"] = "open",
    kind: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Decisions that need a person (open), or that a person has settled (resolved)."""
    before = decode_cursor(cursor)
    rows = await anyio.to_thread.run_sync(
        lambda: log.open_reviews(
            kind=kind, limit=limit + 1, before_seq=before, resolved=status == "resolved"
        )
    )
    page = rows[:limit]
    nxt = encode_cursor(page[-1].seq) if len(rows) > limit and page[-1].seq else None
    return {
        "status": status,
        "reviews": [
            {**summary(r, kinds, pii=caller.has("audit:pii")), "review_reasons": r.review_reasons}
            for r in page
        ],
        "next_cursor": nxt,
    }


@router.post(
    "/decisions/{decision_id}/review",
    status_code=201,
    response_model=ReviewOut,
    responses={
        201: {"description": "Settled: the review supersedes the decision"},
        202: {"model": ReviewOut, "description": "Awaiting a second reviewer"},
        **errors(400, 404, 409, 413, 415),
    },
    dependencies=[Depends(json_body)],
)
async def review(
    decision_id: str,
    body: ReviewIn,
    log: LogDep,
    kinds: KindsDep,
    registry: RegistryDep,
    caller: ReviewCaller,
) -> JSONResponse:
    """Record the reviewer's verdict as a new record that supersedes the decision.

    The verdict passes the kind's guard under the spec version of the decision (422 names
    every failed check, or lists the repairs and the repaired verdict to confirm). An
    override of a decision that needed no review, or one the policy reserves to a person
    (R7, E9, E11), waits for a second reviewer: 202, and that reviewer reviews this record.
    """
    row = await submit_review(
        log,
        kinds,
        registry,
        decision_id=decision_id,
        verdict=body.verdict,
        note=body.note,
        reviewer=caller.key_id,
        pii=caller.has("audit:pii"),
    )
    pii = caller.has("audit:pii")
    out = {
        **summary(row, kinds, pii=pii),
        "settled": not row.needs_review,
        "verdict": for_reader({"verdict": row.verdict}, kinds.get(row.kind), pii=pii)["verdict"],
        "checks": row.checks,
        "review_reasons": row.review_reasons,
    }
    return JSONResponse(out, status_code=202 if row.needs_review else 201)
