"""A fake OpenAI-compatible endpoint with a fixed latency, for benchmarks (loopback only).

The reply is built once with the test suite's scripted server (tests/fake_openai.py) so both
speak the same OpenAI shape; this one stays a bare ASGI app with a pre-serialised body, so
the fake costs as little CPU as possible while the service is measured. A request that offers
another kind's tool (ExceptionVerdict, RoutingChoice) is answered with what the rules would
say for the case in its prompt, as the test server does (tests.fake_openai.rules_answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json

import uvicorn

from tests.fake_openai import completion_body, offered_tool, rules_answer

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
MODELS = ("gpt-4o-mini", "gpt-4o")
BODY = json.dumps(
    completion_body(
        model="gpt-4o-mini",
        tool_calls=[("ReturnVerdict", json.dumps(REPLY))],
        tokens=(1500, 120),
    )
).encode()
MODELS_BODY = json.dumps(
    {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "bench"} for m in MODELS]}
).encode()


OTHER_TOOLS = (b"ExceptionVerdict", b"RoutingChoice")


def answer(raw: bytes) -> bytes:
    """The pre-serialised returns reply, or the rules' answer for another kind's tool."""
    if not any(name in raw for name in OTHER_TOOLS):
        return BODY
    body = json.loads(raw)
    name = offered_tool(body)
    if name is None:
        return BODY
    model = str(body.get("model", MODELS[0]))
    reply = completion_body(
        model=model, tool_calls=[(name, json.dumps(rules_answer(body)))], tokens=(1500, 120)
    )
    return json.dumps(reply).encode()


def make_app(latency: float):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        models = scope["method"] == "GET" and scope["path"].endswith("/models")
        reply = MODELS_BODY if models else answer(b"".join(chunks))
        if not models:
            await asyncio.sleep(latency)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": reply})

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
