"""API keys and the web pages' sessions, both stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import SQLModel, select

from service.log.admin import record_admin
from service.log.chain import utc_iso
from service.log.db import Database
from service.log.models import ApiKeyRow, UiSession, utcnow


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_details(row: ApiKeyRow) -> dict[str, Any]:
    """What the admin chain records of a new key (and verify compares with its row)."""
    return {
        "name": row.name,
        "scopes": sorted(row.scopes),
        "key_hash": row.key_hash,
        "expires_at": utc_iso(row.expires_at) if row.expires_at else None,
    }


def insert_recorded(
    db: Database, row: SQLModel, *, actor: str, action: str, subject: str, details: dict[str, Any]
) -> None:
    """Insert a row and the admin event that accounts for it, in one transaction."""
    table = SQLModel.metadata.tables[str(row.__tablename__)]
    with db.engine.begin() as conn:
        conn.execute(insert(table).values(row.model_dump()))
        record_admin(conn, actor=actor, action=action, subject=subject, details=details)


class KeyStore:
    """API keys; the secret is shown once at creation and stored as its sha256."""

    def __init__(self, *, db: Database):
        self.db = db

    def create(self, *, name: str, scopes: list[str], actor: str = "cli") -> tuple[ApiKeyRow, str]:
        """A new key, recorded in the admin chain in the same transaction; the secret is
        returned once and stored only as a hash."""
        secret = "arb_" + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(6),
            name=name,
            key_hash=hash_key(secret),
            scopes=sorted(set(scopes)),
            created_at=utcnow(),
        )
        insert_recorded(
            self.db,
            row,
            actor=actor,
            action="key.create",
            subject=row.id,
            details=key_details(row),
        )
        return row, secret

    def revoke(self, *, key_id: str, actor: str = "cli") -> bool:
        """Revoke a key (recorded in the admin chain); False when it is unknown or revoked."""
        keys = SQLModel.metadata.tables["api_keys"]
        with self.db.engine.begin() as conn:
            done = conn.execute(
                update(keys)
                .where(keys.c.id == key_id, keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if not done.rowcount:
                return False
            record_admin(conn, actor=actor, action="key.revoke", subject=key_id, details={})
        return True

    def by_secret(self, *, secret: str) -> ApiKeyRow | None:
        with self.db.session() as s:
            row = s.exec(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(secret))).first()
            return row if row is not None and row.revoked_at is None else None

    def by_id(self, *, key_id: str) -> ApiKeyRow | None:
        with self.db.session() as s:
            row = s.get(ApiKeyRow, key_id)
            return row if row is not None and row.revoked_at is None else None

    def count(self) -> int:
        with self.db.session() as s:
            return len(s.exec(select(ApiKeyRow.id)).all())


class SessionStore:
    """Browser sessions of the web pages, opened with an API key."""

    def __init__(self, *, db: Database):
        self.db = db

    def create(
        self, *, key_id: str, hours: int = 8, idle_minutes: int | None = None
    ) -> tuple[str, str]:
        """A new session: (token for the cookie, CSRF token for forms). It ends after
        `hours`, or sooner after `idle_minutes` without a request (see get())."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = utcnow()
        ends = now + timedelta(hours=hours)
        if idle_minutes is not None:
            ends = min(ends, now + timedelta(minutes=idle_minutes))
        row = UiSession(
            token_hash=hash_key(token), key_id=key_id, csrf=csrf, created_at=now, expires_at=ends
        )
        insert_recorded(
            self.db,
            row,
            actor=key_id,
            action="session.open",
            subject=row.token_hash,
            details={"key_id": key_id},
        )
        return token, csrf

    def get(
        self, *, token: str, hours: int = 8, idle_minutes: int | None = None
    ) -> UiSession | None:
        """A live session, its idle expiry moved on (at most once a minute, never past
        `hours` after it began); None when it is unknown, idle too long, or too old."""
        now = utcnow()
        with self.db.session() as s:
            row = s.get(UiSession, hash_key(token))
            if row is None:
                return None
            expires, created = (
                t if t.tzinfo else t.replace(tzinfo=UTC) for t in (row.expires_at, row.created_at)
            )
            last = created + timedelta(hours=hours)
            if expires <= now or last <= now:
                return None
            if idle_minutes is not None:
                moved = min(last, now + timedelta(minutes=idle_minutes))
                if moved - expires >= timedelta(minutes=1):
                    row.expires_at = moved
                    s.add(row)
                    s.commit()
                    s.refresh(row)
            return row

    def end(self, *, token: str) -> None:
        with self.db.session() as s:
            row = s.get(UiSession, hash_key(token))
            if row is not None:
                s.delete(row)
                s.commit()
