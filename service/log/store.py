"""The store: decision log, spec versions and API keys on SQLite or PostgreSQL."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, col, create_engine, select

from service.errors import StoreUnavailable
from service.log.chain import GENESIS, record_hash
from service.log.models import ApiKeyRow, ChainHead, DecisionRow, SpecVersionRow, utcnow


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine; SQLite gets WAL, a busy timeout and full fsync."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


@dataclass
class VerifyReport:
    """The result of walking the chain."""

    ok: bool
    checked: int
    first_bad: dict[str, Any] | None = None
    head: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_bad": self.first_bad,
            "head": self.head,
        }


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Store:
    """All persistence goes through here; routes and the engine never write SQL."""

    def __init__(self, *, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._append_lock = threading.Lock()

    def create_all(self) -> None:
        """Create missing tables and the chain head row."""
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as s:
            if s.get(ChainHead, 1) is None:
                s.add(ChainHead(id=1, updated_at=utcnow()))
                s.commit()

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        """Whether the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    # -- the decision log --
    def append(self, *, row: DecisionRow) -> DecisionRow:
        """Link the row to the chain and write it with the new head, in one transaction."""
        try:
            with self._append_lock, Session(self.engine, expire_on_commit=False) as s:
                # The UPDATE first takes the write lock (SQLite) or the row lock (PostgreSQL),
                # so concurrent appenders, in this process or another, queue here.
                s.execute(text("UPDATE chain_head SET count = count WHERE id = 1"))
                head = s.get(ChainHead, 1)
                if head is None:
                    raise StoreUnavailable("the chain head is missing; run create_all")
                row.prev_hash = head.hash
                row.hash = record_hash(row)
                s.add(row)
                s.flush()
                assert row.seq is not None
                head.seq, head.hash, head.count = row.seq, row.hash, head.count + 1
                head.updated_at = utcnow()
                s.add(head)
                s.commit()
                return row
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                "the decision could not be written to the log; no decision was made",
                details={"error": type(exc).__name__},
            ) from exc

    def get(self, *, decision_id: str) -> DecisionRow | None:
        with Session(self.engine) as s:
            return s.exec(select(DecisionRow).where(DecisionRow.id == decision_id)).first()

    def superseding(self, *, decision_id: str) -> DecisionRow | None:
        """The newest record that supersedes a decision (a human review), if any."""
        with Session(self.engine) as s:
            return s.exec(
                select(DecisionRow)
                .where(DecisionRow.supersedes == decision_id)
                .order_by(col(DecisionRow.seq).desc())
            ).first()

    def decisions_since(self, *, kind: str, since: datetime, limit: int) -> list[DecisionRow]:
        """Live (not shadow, not review) decisions of a kind since a time, oldest first."""
        with Session(self.engine) as s:
            return list(
                s.exec(
                    select(DecisionRow)
                    .where(
                        DecisionRow.kind == kind,
                        col(DecisionRow.created_at) >= since,
                        col(DecisionRow.shadow_of).is_(None),
                        DecisionRow.source != "review",
                    )
                    .order_by(col(DecisionRow.seq))
                    .limit(limit)
                ).all()
            )

    def count(self) -> int:
        with Session(self.engine) as s:
            head = s.get(ChainHead, 1)
            return head.count if head else 0

    def iter_rows(self, *, batch: int = 500) -> Iterator[DecisionRow]:
        """Every record in chain order, fetched in batches (constant memory)."""
        last = 0
        while True:
            with Session(self.engine) as s:
                rows = s.exec(
                    select(DecisionRow)
                    .where(col(DecisionRow.seq) > last)
                    .order_by(col(DecisionRow.seq))
                    .limit(batch)
                ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq or last

    def verify(self) -> VerifyReport:
        """Walk the chain; name the first record whose link or content is wrong."""
        prev = GENESIS
        checked = 0
        last: DecisionRow | None = None
        for row in self.iter_rows():
            if row.prev_hash != prev:
                return VerifyReport(
                    False,
                    checked,
                    {
                        "id": row.id,
                        "seq": row.seq,
                        "problem": "its link to the previous record is broken: the record before "
                        "it was removed or altered",
                    },
                )
            if record_hash(row) != row.hash:
                return VerifyReport(
                    False,
                    checked,
                    {
                        "id": row.id,
                        "seq": row.seq,
                        "problem": "its content does not match its hash: the record was altered",
                    },
                )
            prev = row.hash
            checked += 1
            last = row
        with Session(self.engine) as s:
            head = s.get(ChainHead, 1)
        head_info = {"seq": head.seq, "count": head.count, "hash": head.hash} if head else None
        if head is None or head.count != checked or head.hash != prev:
            return VerifyReport(
                False,
                checked,
                {
                    "id": last.id if last else None,
                    "seq": last.seq if last else None,
                    "problem": f"the chain ends after {checked} records but the head checkpoint "
                    f"expects {head.count if head else '?'}: records were removed "
                    "from the end, or the head was altered",
                },
                head_info,
            )
        return VerifyReport(True, checked, None, head_info)

    def shadow_pairs(
        self, *, kind: str, candidate_sha: str, limit: int = 1000
    ) -> list[tuple[DecisionRow, DecisionRow]]:
        """(live, shadow) pairs for a candidate version, newest first."""
        with Session(self.engine) as s:
            shadows = s.exec(
                select(DecisionRow)
                .where(
                    DecisionRow.kind == kind,
                    DecisionRow.spec_sha256 == candidate_sha,
                    col(DecisionRow.shadow_of).is_not(None),
                )
                .order_by(col(DecisionRow.seq).desc())
                .limit(limit)
            ).all()
            ids = [r.shadow_of for r in shadows]
            live = {
                r.id: r
                for r in s.exec(select(DecisionRow).where(col(DecisionRow.id).in_(ids))).all()
            }
        return [(live[r.shadow_of], r) for r in shadows if r.shadow_of in live]

    def served_by(self, *, kind: str, limit: int = 1000) -> dict[str, int]:
        """How many of the latest live decisions of a kind each spec sha served."""
        with Session(self.engine) as s:
            rows = s.exec(
                select(DecisionRow.spec_sha256)
                .where(DecisionRow.kind == kind, col(DecisionRow.shadow_of).is_(None))
                .order_by(col(DecisionRow.seq).desc())
                .limit(limit)
            ).all()
        counts: dict[str, int] = {}
        for sha in rows:
            counts[sha] = counts.get(sha, 0) + 1
        return counts

    # -- spec versions --
    def record_spec(
        self,
        *,
        sha256: str,
        kind: str,
        name: str,
        version: str,
        rollout: str,
        text: str,
        parameters: dict[str, Any],
        effective_from: Any,
    ) -> None:
        """Keep a spec version forever; refresh last_seen when it is seen again."""
        now = utcnow()
        with Session(self.engine) as s:
            row = s.get(SpecVersionRow, sha256)
            if row is None:
                row = SpecVersionRow(
                    sha256=sha256,
                    kind=kind,
                    name=name,
                    version=version,
                    rollout=rollout,
                    text=text,
                    parameters=parameters,
                    effective_from=effective_from,
                    first_seen=now,
                    last_seen=now,
                )
            else:
                row.last_seen = now
            s.add(row)
            s.commit()

    def spec_versions(self, *, kind: str) -> list[SpecVersionRow]:
        """Every stored version of a kind, newest first."""
        with Session(self.engine) as s:
            return list(
                s.exec(
                    select(SpecVersionRow)
                    .where(SpecVersionRow.kind == kind)
                    .order_by(col(SpecVersionRow.first_seen).desc())
                ).all()
            )

    def spec_version(self, *, sha256: str) -> SpecVersionRow | None:
        with Session(self.engine) as s:
            return s.get(SpecVersionRow, sha256)

    # -- API keys --
    def create_key(self, *, name: str, scopes: list[str]) -> tuple[ApiKeyRow, str]:
        """A new key; the secret is returned once and stored only as a hash."""
        secret = "arb_" + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(6),
            name=name,
            key_hash=hash_key(secret),
            scopes=sorted(set(scopes)),
            created_at=utcnow(),
        )
        with Session(self.engine, expire_on_commit=False) as s:
            s.add(row)
            s.commit()
        return row, secret

    def key_for_secret(self, *, secret: str) -> ApiKeyRow | None:
        with Session(self.engine) as s:
            row = s.exec(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(secret))).first()
            return row if row is not None and row.revoked_at is None else None

    def key_count(self) -> int:
        with Session(self.engine) as s:
            return len(s.exec(select(ApiKeyRow.id)).all())
