"""Expired Idempotency-Keys are removed: bounded deletes, run from the app's lifespan."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select

from service.log.models import IdempotencyRow, utcnow
from service.log.stores import Stores, open_stores
from tests.conftest import contract


def seed(stores: Stores, *, expired: int, fresh: int) -> None:
    now = utcnow()
    with stores.db.session() as s:
        for i in range(expired + fresh):
            old = i < expired
            s.add(
                IdempotencyRow(
                    scope=f"key_x:returns:{'old' if old else 'new'}-{i}",
                    request_sha256="0" * 64,
                    state="done",
                    decision_id=None,
                    response="{}",
                    created_at=now - timedelta(hours=48),
                    expires_at=now - timedelta(hours=24 - i) if old else now + timedelta(hours=1),
                )
            )
        s.commit()


def scopes(stores: Stores) -> list[str]:
    with stores.db.session() as s:
        return sorted(s.exec(select(IdempotencyRow.scope)).all())


def test_purge_is_bounded_and_keeps_live_keys(db_url: str) -> None:
    stores = open_stores(db_url)
    seed(stores, expired=5, fresh=2)
    assert stores.idempotency.purge(limit=3) == 3
    assert stores.idempotency.purge(limit=3) == 2
    assert stores.idempotency.purge(limit=3) == 0
    assert scopes(stores) == ["key_x:returns:new-5", "key_x:returns:new-6"]
    stores.close()


async def test_the_app_purges_expired_keys_while_it_runs(api_factory: Any, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'purge.db'}"
    store = open_stores(db)
    seed(store, expired=7, fresh=1)
    api, cm = await api_factory(db=db, idempotency_purge_s=0.05, idempotency_purge_batch=2)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(scopes(store)) > 1:
            assert loop.time() < deadline, f"expired keys were not purged: {scopes(store)}"
            await asyncio.sleep(0.02)
        assert scopes(store) == ["key_x:returns:new-7"]
        # keys in use still replay
        r = await api.decide("returns", contract("returns.request"), **{"Idempotency-Key": "k-1"})
        again = await api.decide(
            "returns", contract("returns.request"), **{"Idempotency-Key": "k-1"}
        )
        assert again.headers.get("Idempotent-Replayed") == "true" and again.text == r.text
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)
        store.close()
