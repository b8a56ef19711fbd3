"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from service.api.schemas import Health, Readiness, errors
from service.deps import EngineDep, ServicesDep, metrics_reader
from service.errors import StoreUnavailable
from service.llm.client import describe_probe, model_names

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {"model": Readiness, "description": "Not ready: `reasons` says why"},
        **errors(500),
    },
)
async def readyz(request: Request, engine: EngineDep) -> JSONResponse:
    """The database answers and every kind has a usable spec; how the rate limit is kept."""
    try:
        db = await engine.log.db.call(engine.log.db.ping)
    except StoreUnavailable:  # it did not answer in time
        db = False
    snapshot = engine.registry.snapshot
    specs = {k: bool(snapshot.active_specs(k)) for k in engine.kinds}
    reasons = [] if db else ["database unavailable"]
    reasons += [f"no usable {k} spec" for k, ok in specs.items() if not ok]
    llm: Any = "disabled (rules only)"
    if engine.llm is not None:
        llm = await engine.llm.probe(model_names(snapshot.live_specs()))
        reasons += [
            f"LLM {name}: {describe_probe(p)}" for name, p in llm.items() if p["status"] != "ok"
        ]
    body = {
        "status": "not_ready" if reasons else "ready",
        "database": "ok" if db else "unavailable",
        "specs": {k: "ok" if ok else "no usable spec" for k, ok in specs.items()},
        "llm": llm,
        "reasons": reasons,
        "rate_limit": await request.app.state.limiter.describe(),
    }
    return JSONResponse(body, status_code=503 if reasons else 200)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    response_model=None,
    dependencies=[Depends(metrics_reader)],
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **errors(401, 403, 429, 500, 503, media="application/json"),
    },
)
async def metrics(engine: EngineDep, services: ServicesDep) -> str:
    """Prometheus counters and gauges; no ids, keys or personal data."""
    shadow = services.shadow
    gauges: dict[str, float] = {
        "llm_in_flight": engine.llm.in_flight if engine.llm else 0,
        "shadow_queue": shadow.queue.qsize() if shadow else 0,
        "shadow_dropped": shadow.dropped if shadow else 0,
        "chain_records": await anyio.to_thread.run_sync(engine.log.count),
    }
    breakers = engine.llm.breakers.snapshot() if engine.llm else {}
    return engine.metrics.render(gauges, breakers)
