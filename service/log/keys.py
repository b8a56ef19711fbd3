"""API keys and the web pages' sessions, both stored only as hashes."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel, col, select

from service.log.admin import record_admin
from service.log.chain import utc_iso
from service.log.db import Database
from service.log.models import ApiKeyRow, UiSession, aware, utcnow

log = logging.getLogger("arbiter")

LAST_USED_EVERY = timedelta(minutes=1)
"""A key's last-used time is written at most this often (reads do not write each request)."""


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


def usable(row: ApiKeyRow | None, now: datetime) -> ApiKeyRow | None:
    """The key unless it is missing, revoked or expired."""
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and aware(row.expires_at) <= now:
        return None
    return row


class KeyStore:
    """API keys; the secret is shown once at creation and stored as its sha256. Every
    change (create, revoke, expire) is an admin-chain event in the same transaction."""

    def __init__(self, *, db: Database):
        self.db = db
        self._touched: dict[str, datetime] = {}  # key id -> when this process wrote its use
        self._touch_lock = threading.Lock()

    def _due(self, row: ApiKeyRow, now: datetime) -> bool:
        """Whether this lookup writes the key's last-used time: not within a minute of the
        last write, by any process (the row) or this one (concurrent lookups write once)."""
        with self._touch_lock:
            last = max(
                (aware(t) for t in (row.last_used_at, self._touched.get(row.id)) if t),
                default=None,
            )
            if last is not None and now - last < LAST_USED_EVERY:
                return False
            self._touched[row.id] = now
            return True

    def create(
        self,
        *,
        name: str,
        scopes: list[str],
        actor: str = "cli",
        expires_at: datetime | None = None,
        rotated_from: str | None = None,
    ) -> tuple[ApiKeyRow, str]:
        """A new key, recorded in the admin chain in the same transaction; the secret is
        returned once and stored only as a hash."""
        secret = "arb_" + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(6),
            name=name,
            key_hash=hash_key(secret),
            scopes=sorted(set(scopes)),
            created_at=utcnow(),
            expires_at=expires_at,
        )
        details = key_details(row)
        if rotated_from:
            details["rotated_from"] = rotated_from
        insert_recorded(
            self.db, row, actor=actor, action="key.create", subject=row.id, details=details
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

    def expire(self, *, key_id: str, at: datetime, actor: str = "cli") -> bool:
        """Let a key work until `at` (never later than its expiry), recorded in the admin
        chain; False when it is unknown or revoked."""
        keys = SQLModel.metadata.tables["api_keys"]
        with self.db.engine.begin() as conn:
            row = conn.execute(
                select(keys.c.expires_at).where(keys.c.id == key_id, keys.c.revoked_at.is_(None))
            ).first()
            if row is None:
                return False
            ends = min(aware(row.expires_at), at) if row.expires_at else at
            conn.execute(update(keys).where(keys.c.id == key_id).values(expires_at=ends))
            record_admin(
                conn,
                actor=actor,
                action="key.expire",
                subject=key_id,
                details={"expires_at": utc_iso(ends)},
            )
        return True

    def rotate(
        self, *, key_id: str, grace: timedelta = timedelta(0), actor: str = "cli"
    ) -> tuple[ApiKeyRow, str]:
        """A new key with the old one's name, scopes and expiry; the old one stops now, or
        after `grace` so callers can switch. KeyError if the key is unknown or revoked."""
        old = self.get(key_id=key_id)
        if old is None or old.revoked_at is not None:
            raise KeyError(key_id)
        row, secret = self.create(
            name=old.name,
            scopes=old.scopes,
            actor=actor,
            expires_at=old.expires_at,
            rotated_from=key_id,
        )
        if grace:
            self.expire(key_id=key_id, at=utcnow() + grace, actor=actor)
        else:
            self.revoke(key_id=key_id, actor=actor)
        return row, secret

    def by_secret(self, *, secret: str) -> ApiKeyRow | None:
        """The live key with this secret; its last-used time moves on (at most once a
        minute, and never at the cost of the request when the write cannot be made)."""
        now = utcnow()
        with self.db.session() as s:
            row = usable(
                s.exec(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(secret))).first(),
                now,
            )
        if row is not None and self._due(row, now):
            try:
                with self.db.engine.begin() as conn:
                    conn.execute(
                        update(ApiKeyRow)
                        .where(col(ApiKeyRow.id) == row.id)
                        .values(last_used_at=now)
                    )
                row.last_used_at = now
            except OperationalError:  # locked or away: the time is written on a later use
                log.debug("last-used time of %s not written", row.id)
        return row

    def by_id(self, *, key_id: str) -> ApiKeyRow | None:
        with self.db.session() as s:
            return usable(s.get(ApiKeyRow, key_id), utcnow())

    def get(self, *, key_id: str) -> ApiKeyRow | None:
        """The key with this id, whatever its state."""
        with self.db.session() as s:
            return s.get(ApiKeyRow, key_id)

    def all(self) -> list[ApiKeyRow]:
        """Every key, revoked and expired ones too, oldest first."""
        with self.db.session() as s:
            return list(s.exec(select(ApiKeyRow).order_by(col(ApiKeyRow.created_at))).all())

    def names(self) -> dict[str, str]:
        """Key id → name, for pages that show who did what."""
        with self.db.session() as s:
            return dict(s.exec(select(ApiKeyRow.id, ApiKeyRow.name)).all())

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
