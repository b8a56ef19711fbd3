"""API keys and the web pages' sessions, both stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, timedelta

from sqlmodel import select

from service.log.db import Database
from service.log.models import ApiKeyRow, UiSession, utcnow


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """API keys; the secret is shown once at creation and stored as its sha256."""

    def __init__(self, *, db: Database):
        self.db = db

    def create(self, *, name: str, scopes: list[str]) -> tuple[ApiKeyRow, str]:
        """A new key; the secret is returned once and stored only as a hash."""
        secret = "arb_" + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(6),
            name=name,
            key_hash=hash_key(secret),
            scopes=sorted(set(scopes)),
            created_at=utcnow(),
        )
        with self.db.session(expire_on_commit=False) as s:
            s.add(row)
            s.commit()
        return row, secret

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
        with self.db.session() as s:
            s.add(
                UiSession(
                    token_hash=hash_key(token),
                    key_id=key_id,
                    csrf=csrf,
                    created_at=now,
                    expires_at=ends,
                )
            )
            s.commit()
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
