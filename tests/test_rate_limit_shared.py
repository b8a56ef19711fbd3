"""The per-key rate limit shared by every worker and host through Redis (a real server)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.limits import RateLimiter, SharedRateLimiter
from tests.conftest import Api, contract, make_settings


async def test_two_processes_share_one_budget(
    api_factory: Any, redis_url: str, tmp_path: Any
) -> None:
    """Two apps (as two workers or hosts would be) on one database and one Redis."""
    limits = {"rate_limit_per_minute": 5, "redis_url": redis_url, "redis_prefix": uuid.uuid4().hex}
    a, cm = await api_factory(**limits)
    app_b = create_app(make_settings(f"sqlite:///{tmp_path / 'api.db'}", **limits))
    async with app_b.router.lifespan_context(app_b):
        transport = httpx.ASGITransport(app=app_b)
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as b:
            codes = []
            for client in (a.client, b, a.client, b, a.client, b):
                r = await client.post(
                    "/v1/decisions/returns", json=contract("returns.request"), headers=a.auth()
                )
                codes.append(r.status_code)
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) >= 1
            ready = (await b.get("/readyz")).json()
    await a.client.aclose()
    await cm.__aexit__(None, None, None)
    assert codes == [200] * 5 + [429]  # per process, each would have allowed all three
    assert ready["rate_limit"].startswith("shared: 5/min per key across processes")


async def test_without_redis_the_limit_is_per_process_and_says_so(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    ready = (await api.client.get("/readyz")).json()
    assert ready["rate_limit"].startswith("per process")
    assert "ARBITER_REDIS_URL" in ready["rate_limit"]


async def test_redis_down_counts_per_process_and_says_so(
    api_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    a, cm = await api_factory(rate_limit_per_minute=3, redis_url="redis://:hunter2@127.0.0.1:1/0")
    try:
        assert "rate limit: per process: Redis at redis://:***@127.0.0.1:1/0" in caplog.text
        codes = [
            (await a.decide("returns", contract("returns.request"))).status_code for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]  # still limited, by this process alone
        ready = (await a.client.get("/readyz")).json()
        assert ready["status"] == "ready" and "unavailable" in ready["rate_limit"]
        assert "hunter2" not in caplog.text and "hunter2" not in str(ready)
    finally:
        await a.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_shared_limiter_refills_like_the_local_bucket(redis_url: str) -> None:
    prefix = uuid.uuid4().hex
    shared = SharedRateLimiter(120, url=redis_url, prefix=prefix)
    local = RateLimiter(120)
    try:
        waits = [await shared.take("k") for _ in range(121)]
        assert waits[:120] == [0.0] * 120 and 0 < waits[120] <= 0.5  # 2 per second refill
        assert [await local.take("k") for _ in range(120)] == [0.0] * 120
        assert await shared.take("other key") == 0.0  # budgets are per key
    finally:
        await shared.aclose()
