"""The database away: down, black-holed, locked. Requests answer 503 with Retry-After and the
error JSON within the timeouts, never 500 and never a hang (docs/reliability.md)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from tests.conftest import contract
from tests.tcp_proxy import TcpProxy

TIMEOUTS = {"db_connect_timeout_s": 2, "db_statement_timeout_s": 1.0, "db_lock_timeout_s": 0.3}
WAIT_S = 3.0  # connect + statement: the longest a request waits for one database call


def records(api: Any) -> int:
    with api.engine.log.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM decisions")).scalar_one())


def assert_unavailable(r: Any) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "store_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    assert "decision_id" not in r.text


async def test_write_locked_sqlite_with_an_idempotency_key_is_503_then_decides(
    api_factory: Any, tmp_path: Path
) -> None:
    path = tmp_path / "locked.db"
    api, cm = await api_factory(db=f"sqlite:///{path}", **TIMEOUTS)
    try:
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        started = time.monotonic()
        r = await api.decide("returns", contract("returns.request"), **{"Idempotency-Key": "k1"})
        assert time.monotonic() - started < WAIT_S
        assert_unavailable(r)
        r = await api.decide("returns", contract("returns.request"))  # no key: the append waits
        assert_unavailable(r)
        locker.execute("ROLLBACK")
        locker.close()
        r = await api.decide("returns", contract("returns.request"), **{"Idempotency-Key": "k1"})
        assert r.status_code == 200, r.text  # the key was never held: the retry decides
        again = await api.decide(
            "returns", contract("returns.request"), **{"Idempotency-Key": "k1"}
        )
        assert again.headers.get("idempotent-replayed") == "true"
        assert records(api) == 1
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_sqlite_statement_timeout_interrupts_a_runaway_query(
    api_factory: Any,
) -> None:
    api, cm = await api_factory(**{**TIMEOUTS, "db_statement_timeout_s": 0.2})
    try:
        from sqlalchemy.exc import OperationalError

        runaway = text(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
        )
        started = time.monotonic()
        with pytest.raises(OperationalError, match="interrupted"):
            with api.engine.log.db.engine.connect() as conn:
                conn.execute(runaway)
        assert time.monotonic() - started < 2
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


@pytest.fixture
async def pg_behind_proxy(pg_url: str, api_factory: Any) -> AsyncIterator[tuple[Any, TcpProxy]]:
    """The app on PostgreSQL through a loopback proxy the test can switch off."""
    where = urlsplit(pg_url)
    proxy = TcpProxy((where.hostname or "127.0.0.1", where.port or 5432))
    url = pg_url.replace(f"{where.hostname}:{where.port}", f"127.0.0.1:{proxy.port}")
    api, cm = await api_factory(db=url, **TIMEOUTS)
    try:
        yield api, proxy
    finally:
        proxy.close()  # first: threads left on black-holed connections end with them
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_postgres_down_then_black_holed_is_503_never_a_hang(
    pg_behind_proxy: tuple[Any, TcpProxy],
) -> None:
    api, proxy = pg_behind_proxy
    case = contract("returns.request")
    assert (await api.decide("returns", case)).status_code == 200

    proxy.refuse()  # the server is down: connections refused
    for headers in ({}, {"Idempotency-Key": "k-down"}):
        r = await api.decide("returns", case, **headers)
        assert_unavailable(r)  # was 500 plain text: the key lookup ran outside any guard
    r = await api.client.get("/readyz")
    assert r.status_code == 503 and r.json()["database"] == "unavailable"

    proxy.restore()
    assert (await api.decide("returns", case)).status_code == 200  # pooled connections again
    proxy.blackhole()  # the network drops everything: no answer, no error
    timings = {}
    for name, call in (
        ("decide", lambda: api.decide("returns", case, **{"Idempotency-Key": "k-hole"})),
        ("audit list", lambda: api.client.get("/v1/decisions", headers=api.auth("audit"))),
        ("readyz", lambda: api.client.get("/readyz")),
    ):
        started = time.monotonic()
        r = await call()
        timings[name] = time.monotonic() - started
        assert r.status_code == 503, (name, r.text)
        if name != "readyz":
            assert_unavailable(r)
        else:
            assert r.json()["database"] == "unavailable"
    assert max(timings.values()) < WAIT_S + 1.5, timings
    print("black-holed PostgreSQL, seconds to 503:", {k: round(v, 2) for k, v in timings.items()})  # noqa: T201

    proxy.restore()  # the network is back
    r = await api.decide("returns", case, **{"Idempotency-Key": "k-hole"})
    assert r.status_code == 200, r.text
    assert (await api.client.get("/readyz")).status_code == 200
    assert records(api) == 3


async def test_sqlite_locked_between_claim_and_append_is_503_and_the_lease_frees_the_key(
    api_factory: Any, tmp_path: Path
) -> None:
    import asyncio

    from tests.fake_openai import FakeOpenAI, rules_answer

    path = tmp_path / "locked-late.db"
    with FakeOpenAI(answer=rules_answer, latency_s=0.6) as llm:
        api, cm = await api_factory(
            db=f"sqlite:///{path}", llm=True, llm_base_url=llm.base_url, deadline_s=2.0,
            **TIMEOUTS,
        )  # fmt: skip
        try:
            key = {"Idempotency-Key": "late"}
            request = asyncio.create_task(api.decide("returns", contract("returns.request"), **key))
            while not llm.chat_requests:  # claimed, now asking the model
                await asyncio.sleep(0.02)
            locker = sqlite3.connect(path, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")  # the append and the release both meet it
            r = await request
            assert_unavailable(r)  # was 500: the failed release replaced the 503
            locker.execute("ROLLBACK")
            locker.close()
            retry = await api.decide("returns", contract("returns.request"), **key)
            assert retry.status_code == 409  # the claim could not be released: its lease holds
            await asyncio.sleep(2.0 + WAIT_S - 0.5)  # the lease: deadline + database wait
            retry = await api.decide("returns", contract("returns.request"), **key)
            assert retry.status_code == 200, retry.text
            assert records(api) == 1
        finally:
            await api.client.aclose()
            await cm.__aexit__(None, None, None)
