"""A peer for `python -m bench --peers`: a minimal FastAPI endpoint doing one instructor call.

What a team writes in an afternoon: the case in, one structured call through instructor
(openai SDK defaults, Mode.TOOLS) to the same fake LLM, the verdict out. No policy, no
guard, no log: the floor of what "FastAPI + instructor" costs per decision.
"""

from __future__ import annotations

import json
import os
from typing import Any

import instructor
import openai
from fastapi import FastAPI
from pydantic import BaseModel


class ItemVerdict(BaseModel):
    sku: str
    quantity_approved: int
    refund_amount: str
    disposition: str | None = None


class ReturnVerdict(BaseModel):
    """The decision on a return request."""

    outcome: str
    items: list[ItemVerdict]
    refund_method: str
    refund_timing: str
    restocking_fee: str
    label_required: bool
    customer_message: str | None = None
    cited_clauses: list[str]
    rationale: str
    confidence: float


app = FastAPI()
client = instructor.from_openai(
    openai.AsyncOpenAI(
        base_url=os.environ.get("PEER_LLM_URL", "http://127.0.0.1:9/v1"),
        api_key="bench",
        max_retries=0,
    ),
    mode=instructor.Mode.TOOLS,
)


@app.post("/decide")
async def decide(case: dict[str, Any]) -> ReturnVerdict:
    verdict: ReturnVerdict = await client.chat.completions.create(
        model="gpt-4o-mini",
        response_model=ReturnVerdict,
        max_retries=1,
        temperature=0,
        messages=[
            {"role": "system", "content": "Decide this return request under the returns policy."},
            {"role": "user", "content": json.dumps(case)},
        ],
    )
    return verdict
