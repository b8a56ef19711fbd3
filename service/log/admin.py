"""The admin chain: key creation, revocation and scope changes, sessions opened, spec
promotions and rollbacks, as hash-chained records covered by the signed checkpoints.

Review overrides need no event here: a review is itself a decision record (it supersedes
the decision) in the decision chains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, insert
from sqlmodel import SQLModel, col, select
from ulid import ULID

from service.log.chain import canonical, utc_iso
from service.log.db import Database
from service.log.heads import lock_head, move_head, next_seq
from service.log.models import ADMIN_CHAIN, AdminEventRow, ApiKeyRow, UiSession, utcnow

EVENTS = SQLModel.metadata.tables["admin_events"]
ACTIONS = frozenset(
    {"key.create", "key.revoke", "key.expire", "key.scopes", "session.open"}
    | {  # policy changes (service/specs/deployments.py ACTIONS)
        f"spec.{a}"
        for a in ("import", "remove", "draft", "eval", "shadow", "canary", "stop")
        + ("promote", "rollback")
    }
)


def admin_hash(row: AdminEventRow) -> str:
    """sha256 over the canonical JSON of every column but `hash` (seq included)."""
    data = row.model_dump(exclude={"hash"})
    data["created_at"] = utc_iso(row.created_at)
    return hashlib.sha256(canonical(data)).hexdigest()


def record_admin(
    conn: Connection, *, actor: str, action: str, subject: str, details: dict[str, Any]
) -> AdminEventRow:
    """Append an admin event in the caller's transaction (with the change it records)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown admin action {action!r}")
    head_hash, count = lock_head(conn, ADMIN_CHAIN)
    row = AdminEventRow(
        seq=next_seq(conn, "admin_events"),
        id=f"adm_{ULID()}",
        created_at=utcnow(),
        actor=actor,
        action=action,
        subject=subject,
        details=details,
        prev_hash=head_hash,
        hash="",
    )
    row.hash = admin_hash(row)
    conn.execute(insert(EVENTS).values(row.model_dump()))
    move_head(conn, ADMIN_CHAIN, seq=row.seq or 0, hash=row.hash, count=count + 1)
    return row


class AdminLog:
    """Reads of the admin chain, and the check that key and session rows match it."""

    def __init__(self, *, db: Database):
        self.db = db

    def record(
        self, *, actor: str, action: str, subject: str, details: dict[str, Any]
    ) -> AdminEventRow:
        """Append an admin event in a transaction of its own."""
        with self.db.engine.begin() as conn:
            return record_admin(conn, actor=actor, action=action, subject=subject, details=details)

    def iter_rows(self, *, batch: int = 500) -> Iterator[AdminEventRow]:
        last = 0
        while True:
            with self.db.session() as s:
                rows = s.exec(
                    select(AdminEventRow)
                    .where(col(AdminEventRow.seq) > last)
                    .order_by(col(AdminEventRow.seq))
                    .limit(batch)
                ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq or last

    def untraced(self) -> dict[str, Any] | None:
        """The first key or session row that no admin event accounts for: a key inserted,
        re-scoped, given another secret or un-revoked in the database, or a session
        inserted. Call it after the admin chain itself has verified."""
        keys: dict[str, dict[str, Any]] = {}
        sessions: set[str] = set()
        for ev in self.iter_rows():
            if ev.action == "key.create":
                keys[ev.subject] = {**ev.details, "revoked": False}
            elif ev.action == "key.scopes" and ev.subject in keys:
                keys[ev.subject]["scopes"] = ev.details.get("scopes")
            elif ev.action == "key.expire" and ev.subject in keys:  # rotated with a grace
                keys[ev.subject]["expires_at"] = ev.details.get("expires_at")
            elif ev.action == "key.revoke" and ev.subject in keys:
                keys[ev.subject]["revoked"] = True
            elif ev.action == "session.open":
                sessions.add(ev.subject)
        with self.db.session() as s:
            key_rows = s.exec(select(ApiKeyRow).order_by(col(ApiKeyRow.created_at))).all()
            session_rows = s.exec(select(UiSession).order_by(col(UiSession.created_at))).all()
        for k in key_rows:
            known = keys.get(k.id)
            problem = None
            if known is None:
                problem = "no admin event created it: it was inserted in the database"
            elif known.get("key_hash") != k.key_hash:
                problem = "its secret's hash differs from the one recorded at creation"
            elif sorted(known.get("scopes") or []) != sorted(k.scopes):
                problem = (
                    f"its scopes {sorted(k.scopes)} differ from the recorded "
                    f"{sorted(known.get('scopes') or [])}"
                )
            elif "expires_at" in known and known["expires_at"] != (
                utc_iso(k.expires_at) if k.expires_at else None
            ):
                problem = "its expiry differs from the one recorded at creation"
            elif known["revoked"] and k.revoked_at is None:
                problem = "it was revoked, and the revocation was undone in the database"
            if problem is not None:
                return {
                    "chain": "admin",
                    "id": k.id,
                    "seq": None,
                    "problem": f"API key {k.id}: {problem}",
                }
        for sess in session_rows:
            if sess.token_hash not in sessions:
                return {
                    "chain": "admin",
                    "id": f"session of {sess.key_id}",
                    "seq": None,
                    "problem": f"a web session of key {sess.key_id} has no admin event: "
                    "it was inserted in the database",
                }
        return None
