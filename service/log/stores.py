"""The stores over one Database, built together."""

from __future__ import annotations

from dataclasses import dataclass

from service.log.admin import AdminLog
from service.log.db import Database, Timeouts
from service.log.decisions import DecisionLog, NullDecisionLog
from service.log.idempotency import IdempotencyStore
from service.log.keys import KeyStore, SessionStore
from service.log.spec_versions import SpecVersionStore


@dataclass(frozen=True)
class Stores:
    """Decision log, idempotency keys, spec versions, API keys and UI sessions."""

    db: Database
    log: DecisionLog
    idempotency: IdempotencyStore
    spec_versions: SpecVersionStore
    keys: KeyStore
    sessions: SessionStore
    admin: AdminLog

    def close(self) -> None:
        self.db.close()


def open_stores(
    url: str,
    *,
    migrate: bool = True,
    null_log: bool = False,
    timeouts: Timeouts | None = None,
    shards: int = 1,
) -> Stores:
    """Every store on one database; `migrate` brings the schema up to date first (and
    gives a new log `shards` decision chains)."""
    db = Database(url=url, timeouts=timeouts)
    if migrate:
        db.migrate(shards=shards)
    return Stores(
        db=db,
        log=(NullDecisionLog if null_log else DecisionLog)(db=db),
        idempotency=IdempotencyStore(db=db),
        spec_versions=SpecVersionStore(db=db),
        keys=KeyStore(db=db),
        sessions=SessionStore(db=db),
        admin=AdminLog(db=db),
    )
