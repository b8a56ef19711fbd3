"""Idempotency keys: claim, release and purge; completed with the decision's append."""

from __future__ import annotations

from datetime import UTC, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from service.errors import StoreUnavailable
from service.log.db import Database
from service.log.models import IdempotencyRow, utcnow


class IdempotencyStore:
    """Idempotency-Key rows (the decision log completes them in its append transaction)."""

    def __init__(self, *, db: Database):
        self.db = db

    def begin(self, *, scope: str, request_sha256: str, ttl_hours: int) -> IdempotencyRow | None:
        """Claim a key (None), or return the row of the request that holds it."""
        now = utcnow()
        for _ in range(2):
            try:
                with self.db.session() as s:
                    s.add(
                        IdempotencyRow(
                            scope=scope,
                            request_sha256=request_sha256,
                            state="in_flight",
                            created_at=now,
                            expires_at=now + timedelta(hours=ttl_hours),
                        )
                    )
                    s.commit()
                return None
            except IntegrityError:
                with self.db.session() as s:
                    row = s.get(IdempotencyRow, scope)
                    if row is None:
                        continue  # released meanwhile: claim again
                    expires = (
                        row.expires_at
                        if row.expires_at.tzinfo
                        else row.expires_at.replace(tzinfo=UTC)
                    )
                    if expires > now:
                        return row
                    s.delete(row)  # expired: the key may be used afresh
                    s.commit()
        raise StoreUnavailable("could not claim the idempotency key; retry")

    def release(self, *, scope: str) -> None:
        """Forget an in-flight key whose request failed, so the caller can retry it."""
        with self.db.session() as s:
            row = s.get(IdempotencyRow, scope)
            if row is not None and row.state == "in_flight":
                s.delete(row)
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
