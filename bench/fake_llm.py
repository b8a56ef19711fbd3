"""A fake OpenAI-compatible endpoint with a fixed latency, for benchmarks (loopback only)."""

from __future__ import annotations

import argparse
import asyncio
import json

import uvicorn

REPLY = {
    "outcome": "approve",
    "items": [
        {
            "sku": "JKT-RAIN-M",
            "quantity_approved": 1,
            "refund_amount": "129.00",
            "disposition": "refurbish",
        }
    ],
    "refund_method": "original_payment",
    "refund_timing": "on_carrier_scan",
    "restocking_fee": "0.00",
    "label_required": True,
    "customer_message": "Your return is approved.",
    "cited_clauses": ["R2"],
    "rationale": "Defect within the defect window (R2).",
    "confidence": 0.9,
}
BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "ReturnVerdict", "arguments": json.dumps(REPLY)},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 1500, "completion_tokens": 120, "total_tokens": 1620},
    }
).encode()


def make_app(latency: float):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await asyncio.sleep(latency)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": BODY})

    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency", type=float, default=0.2)
    a = ap.parse_args()
    uvicorn.run(
        make_app(a.latency),
        host="127.0.0.1",
        port=a.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )
