"""Idempotency keys: claim (with a lease), release and purge; completed with the decision's
append."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col

from service.errors import StoreUnavailable
from service.log.db import Database
from service.log.models import IdempotencyRow, aware, utcnow


class IdempotencyStore:
    """Idempotency-Key rows (the decision log completes them in its append transaction)."""

    def __init__(self, *, db: Database):
        self.db = db

    def begin(
        self, *, scope: str, request_sha256: str, ttl_hours: int, lease_s: float
    ) -> str | IdempotencyRow:
        """Claim a key for `lease_s` seconds: the claim token; or the row of the request that
        holds it. An in-flight claim whose lease has run out (its process died) is taken
        over by the same request: it is decided afresh."""
        now = utcnow()
        claim = secrets.token_hex(16)
        lease = now + timedelta(seconds=lease_s)
        for _ in range(3):
            try:
                with self.db.session() as s:
                    s.add(
                        IdempotencyRow(
                            scope=scope,
                            request_sha256=request_sha256,
                            state="in_flight",
                            created_at=now,
                            expires_at=now + timedelta(hours=ttl_hours),
                            claim=claim,
                            lease_until=lease,
                        )
                    )
                    s.commit()
                return claim
            except IntegrityError:
                with self.db.session() as s:
                    row = s.get(IdempotencyRow, scope)
                    if row is None:
                        continue  # released meanwhile: claim again
                    if aware(row.expires_at) <= now:
                        s.delete(row)  # expired: the key may be used afresh
                        s.commit()
                        continue
                    lapsed = row.lease_until is None or aware(row.lease_until) <= now
                    if not (
                        row.state == "in_flight" and lapsed and row.request_sha256 == request_sha256
                    ):
                        return row
                    # compare-and-set on the old claim: of several retries, one takes it over
                    keys = IdempotencyRow
                    took = s.execute(
                        update(keys)
                        .where(
                            col(keys.scope) == scope,
                            col(keys.state) == "in_flight",
                            col(keys.claim).is_(None)
                            if row.claim is None
                            else col(keys.claim) == row.claim,
                        )
                        .values(claim=claim, lease_until=lease)
                    )
                    s.commit()
                    if took.rowcount == 1:  # type: ignore[attr-defined]
                        return claim
        raise StoreUnavailable("could not claim the idempotency key; retry")

    def release(self, *, scope: str, claim: str) -> None:
        """Forget an in-flight key whose request failed, so the caller can retry it (unless
        a retry has taken it over meanwhile)."""
        keys = IdempotencyRow
        with self.db.session() as s:
            s.execute(
                delete(keys).where(
                    col(keys.scope) == scope,
                    col(keys.state) == "in_flight",
                    col(keys.claim) == claim,
                )
            )
            s.commit()

    def purge(self, *, limit: int = 1000) -> int:
        """Delete up to `limit` expired keys, oldest first, in one short transaction;
        returns how many."""
        keys = SQLModel.metadata.tables["idempotency_keys"]
        expired = (
            select(keys.c.scope)
            .where(keys.c.expires_at < utcnow())
            .order_by(keys.c.expires_at)
            .limit(limit)
        )
        with self.db.engine.begin() as conn:
            gone = conn.execute(delete(keys).where(keys.c.scope.in_(expired.scalar_subquery())))
            return int(gone.rowcount or 0)
