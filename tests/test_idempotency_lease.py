"""In-flight Idempotency-Keys carry a lease: a claim whose process died is taken over by a
retry after the lease, and still exactly one record is written per key."""

from __future__ import annotations

import time
from typing import Any

import pytest

from service.errors import Conflict
from service.log.idempotency import IdempotencyStore
from service.log.models import DecisionRow, IdempotencyRow
from service.log.stores import open_stores
from tests.conftest import contract


def _row(**kw: Any) -> DecisionRow:
    from service.engine import new_decision_id
    from service.log.models import utcnow

    base: dict[str, Any] = {
        "id": new_decision_id(), "kind": "returns", "created_at": utcnow(), "caller": "c",
        "idempotency_key": "k", "outcome": "approve", "source": "rules", "needs_review": False,
        "case": {}, "verdict": {}, "checks": [], "review_reasons": [], "cited_clauses": ["R1"],
        "rationale": "r", "confidence": 1.0, "spec_name": "returns", "spec_version": "1",
        "spec_sha256": "0" * 64, "guardrails_version": "g", "attempts": [], "usage": {},
        "latency_ms": {}, "prev_hash": "", "hash": "",
    }  # fmt: skip
    return DecisionRow(**{**base, **kw})


def _records(stores: Any, key: str) -> int:
    from sqlmodel import select

    with stores.db.session() as s:
        return len(s.exec(select(DecisionRow).where(DecisionRow.idempotency_key == key)).all())


def test_a_lapsed_claim_is_taken_over_and_the_late_writer_is_refused(db_url: str) -> None:
    stores = open_stores(db_url)
    keys: IdempotencyStore = stores.idempotency
    first = keys.begin(scope="c:returns:k", request_sha256="a" * 64, ttl_hours=24, lease_s=0.3)
    assert isinstance(first, str)
    held = keys.begin(scope="c:returns:k", request_sha256="a" * 64, ttl_hours=24, lease_s=0.3)
    assert isinstance(held, IdempotencyRow) and held.state == "in_flight"  # 409 meanwhile
    time.sleep(0.4)
    other = keys.begin(scope="c:returns:k", request_sha256="b" * 64, ttl_hours=24, lease_s=5)
    assert isinstance(other, IdempotencyRow)  # another request never takes the key over
    second = keys.begin(scope="c:returns:k", request_sha256="a" * 64, ttl_hours=24, lease_s=5)
    assert isinstance(second, str) and second != first
    # the first holder was only slow: its write and its release no longer count
    with pytest.raises(Conflict, match="lease"):
        stores.log.append(row=_row(), idempotency=("c:returns:k", "{}", first))
    keys.release(scope="c:returns:k", claim=first)
    assert _records(stores, "k") == 0 and stores.log.count() == 0
    stores.log.append(row=_row(), idempotency=("c:returns:k", '{"ok": 1}', second))
    done = keys.begin(scope="c:returns:k", request_sha256="a" * 64, ttl_hours=24, lease_s=5)
    assert isinstance(done, IdempotencyRow) and done.response == '{"ok": 1}'
    assert _records(stores, "k") == 1 and stores.log.count() == 1
    stores.close()


def test_racing_retries_after_the_lease_one_takes_the_key(db_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    stores = open_stores(db_url)
    keys = stores.idempotency
    assert isinstance(
        keys.begin(scope="s", request_sha256="a" * 64, ttl_hours=24, lease_s=0.1), str
    )
    time.sleep(0.2)
    with ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(
                lambda _: keys.begin(scope="s", request_sha256="a" * 64, ttl_hours=24, lease_s=5),
                range(8),
            )
        )
    assert sum(isinstance(g, str) for g in got) == 1
    stores.close()


async def test_the_lease_is_the_request_deadline_plus_the_database_wait(
    api_factory: Any,
) -> None:
    api, cm = await api_factory(deadline_s=3.0, db_connect_timeout_s=2, db_statement_timeout_s=1.0)
    try:
        keys = api.engine.idempotency
        seen: list[float] = []
        real = keys.begin

        def spy(**kw: Any) -> Any:
            seen.append(kw["lease_s"])
            return real(**kw)

        keys.begin = spy
        await api.decide("returns", contract("returns.request"), **{"Idempotency-Key": "a"})
        r = await api.client.post(
            "/v1/decisions/returns?deadline_ms=1500",
            json=contract("returns.request"),
            headers={**api.auth("decide"), "Idempotency-Key": "b"},
        )
        assert r.status_code == 200
        assert seen == [3.0 + 3.0, 1.5 + 3.0]
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)
