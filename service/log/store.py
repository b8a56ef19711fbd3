"""The store: decision log, spec versions and API keys on SQLite or PostgreSQL."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, event, func, insert, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, SQLModel, col, create_engine, select

from service.errors import Conflict, StoreUnavailable
from service.log.chain import GENESIS, record_hash
from service.log.models import (
    ApiKeyRow,
    ChainHead,
    DecisionRow,
    IdempotencyRow,
    SpecVersionRow,
    UiSession,
    utcnow,
)

TABLES: tuple[Table, Table, Table] = (
    SQLModel.metadata.tables["decisions"],
    SQLModel.metadata.tables["chain_head"],
    SQLModel.metadata.tables["idempotency_keys"],
)


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
class DecisionFilter:
    """Filters of the decision list and export; every field optional."""

    kind: str | None = None
    source: str | None = None
    outcome: str | None = None
    needs_review: bool | None = None
    fallback_reason: str | None = None
    spec_sha: str | None = None
    model: str | None = None
    order_id: str | None = None
    customer_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    include_shadow: bool = False

    def apply(self, query: Any) -> Any:
        d = DecisionRow
        for column, value in (
            (d.kind, self.kind),
            (d.source, self.source),
            (d.outcome, self.outcome),
            (d.needs_review, self.needs_review),
            (d.fallback_reason, self.fallback_reason),
            (d.model, self.model),
            (d.order_id, self.order_id),
            (d.customer_id, self.customer_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.spec_sha:
            query = query.where(col(d.spec_sha256).startswith(self.spec_sha.lower()))
        if self.since is not None:
            query = query.where(col(d.created_at) >= self.since)
        if self.until is not None:
            query = query.where(col(d.created_at) < self.until)
        if self.q:
            query = query.where(func.lower(col(d.rationale)).contains(self.q.lower()))
        if not self.include_shadow:
            query = query.where(col(d.shadow_of).is_(None))
        return query


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
        """Bring the schema to the latest migration and make sure the chain head exists."""
        from alembic import command
        from alembic.config import Config
        from sqlalchemy import inspect

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent.parent / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            tables = set(inspect(conn).get_table_names())
            if "decisions" in tables and "alembic_version" not in tables:
                command.stamp(cfg, "0001")  # made before migrations existed: same schema
            command.upgrade(cfg, "head")
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
    def append(
        self, *, row: DecisionRow, idempotency: tuple[str, str] | None = None
    ) -> DecisionRow:
        """Link the row to the chain and write it with the new head, in one transaction;
        with `idempotency=(scope, response)` the key is completed in that transaction too."""
        decisions, heads, keys = TABLES
        try:
            # Core statements, not the ORM unit of work: this is the hot path of every decision.
            with self._append_lock, self.engine.begin() as conn:
                # The UPDATE first takes the write lock (SQLite) or the row lock (PostgreSQL),
                # so concurrent appenders, in this process or another, queue here.
                conn.execute(text("UPDATE chain_head SET count = count WHERE id = 1"))
                head = conn.execute(
                    select(heads.c.hash, heads.c.count).where(heads.c.id == 1)
                ).first()
                if head is None:
                    raise StoreUnavailable("the chain head is missing; run create_all")
                head_hash, head_count = head
                if (
                    row.supersedes is not None
                    and conn.execute(
                        select(decisions.c.id).where(decisions.c.supersedes == row.supersedes)
                    ).first()
                ):
                    raise Conflict(
                        f"{row.supersedes} has already been reviewed",
                        details={"decision_id": row.supersedes},
                    )
                row.prev_hash = head_hash
                row.hash = record_hash(row)
                result = conn.execute(insert(decisions).values(row.model_dump(exclude={"seq"})))
                row.seq = int(result.inserted_primary_key[0])  # type: ignore[index]
                conn.execute(
                    update(heads)
                    .where(heads.c.id == 1)
                    .values(seq=row.seq, hash=row.hash, count=head_count + 1, updated_at=utcnow())
                )
                if idempotency is not None:
                    conn.execute(
                        update(keys)
                        .where(keys.c.scope == idempotency[0])
                        .values(state="done", response=idempotency[1], decision_id=row.id)
                    )
                return row
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                "the decision could not be written to the log; no decision was made",
                details={"error": type(exc).__name__},
            ) from exc

    # -- idempotency --
    def idem_begin(
        self, *, scope: str, request_sha256: str, ttl_hours: int
    ) -> IdempotencyRow | None:
        """Claim a key (None), or return the row of the request that holds it."""
        now = utcnow()
        for _ in range(2):
            try:
                with Session(self.engine) as s:
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
                with Session(self.engine) as s:
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

    def idem_release(self, *, scope: str) -> None:
        """Forget an in-flight key whose request failed, so the caller can retry it."""
        with Session(self.engine) as s:
            row = s.get(IdempotencyRow, scope)
            if row is not None and row.state == "in_flight":
                s.delete(row)
                s.commit()

    def idem_purge(self) -> int:
        """Delete expired keys; returns how many."""
        with Session(self.engine) as s:
            rows = s.exec(
                select(IdempotencyRow).where(col(IdempotencyRow.expires_at) < utcnow())
            ).all()
            for r in rows:
                s.delete(r)
            s.commit()
            return len(rows)

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

    def iter_rows(
        self, *, batch: int = 500, after: int = 0, until: int | None = None
    ) -> Iterator[DecisionRow]:
        """Records in chain order, fetched in batches (constant memory)."""
        last = after
        while True:
            q = select(DecisionRow).where(col(DecisionRow.seq) > last)
            if until is not None:
                q = q.where(col(DecisionRow.seq) <= until)
            with Session(self.engine) as s:
                rows = s.exec(q.order_by(col(DecisionRow.seq)).limit(batch)).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq or last

    def verify(self, *, from_seq: int | None = None, to_seq: int | None = None) -> VerifyReport:
        """Walk the chain (or a seq range of it); name the first record that is wrong.

        The head checkpoint, kept apart from the records, is compared when the walk
        reaches the end of the chain, which catches records removed from the end.
        """
        prev = GENESIS
        start = 0
        if from_seq is not None and from_seq > 1:
            with Session(self.engine) as s:
                before = s.exec(
                    select(DecisionRow)
                    .where(col(DecisionRow.seq) < from_seq)
                    .order_by(col(DecisionRow.seq).desc())
                ).first()
            if before is not None:
                prev, start = before.hash, before.seq or 0
        checked = 0
        last: DecisionRow | None = None
        for row in self.iter_rows(after=start, until=to_seq):
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
        if to_seq is not None and head is not None and to_seq < head.seq:
            return VerifyReport(True, checked, None, head_info)  # the range ends before the head
        if head is None or head.hash != prev or (from_seq in (None, 1) and head.count != checked):
            return VerifyReport(
                False,
                checked,
                {
                    "id": last.id if last else None,
                    "seq": last.seq if last else None,
                    "problem": f"the chain ends after {checked} records but the head checkpoint "
                    f"expects {head.count if head else '?'} ending in seq "
                    f"{head.seq if head else '?'}: records were removed from the end, "
                    "or the head was altered",
                },
                head_info,
            )
        return VerifyReport(True, checked, None, head_info)

    # -- audit queries --
    def list_decisions(
        self, *, filters: DecisionFilter, before_seq: int | None, limit: int
    ) -> list[DecisionRow]:
        """Decisions newest first, filtered; `before_seq` pages stably under inserts."""
        q = filters.apply(select(DecisionRow))
        if before_seq is not None:
            q = q.where(col(DecisionRow.seq) < before_seq)
        with Session(self.engine) as s:
            return list(s.exec(q.order_by(col(DecisionRow.seq).desc()).limit(limit)).all())

    def stream(self, *, filters: DecisionFilter, batch: int = 200) -> Iterator[DecisionRow]:
        """Matching decisions oldest first, in batches: constant memory for any size."""
        last = 0
        while True:
            q = filters.apply(select(DecisionRow)).where(col(DecisionRow.seq) > last)
            with Session(self.engine) as s:
                rows = s.exec(q.order_by(col(DecisionRow.seq)).limit(batch)).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq or last

    def related(self, *, decision_id: str) -> tuple[list[DecisionRow], list[DecisionRow]]:
        """(shadow records of a decision, records that supersede it)."""
        with Session(self.engine) as s:
            shadows = s.exec(
                select(DecisionRow)
                .where(DecisionRow.shadow_of == decision_id)
                .order_by(col(DecisionRow.seq))
            ).all()
            sup = s.exec(
                select(DecisionRow)
                .where(DecisionRow.supersedes == decision_id)
                .order_by(col(DecisionRow.seq))
            ).all()
        return list(shadows), list(sup)

    def open_reviews(
        self, *, kind: str | None, limit: int, before_seq: int | None, resolved: bool = False
    ) -> list[DecisionRow]:
        """Decisions that need review and are not yet superseded (or, resolved ones)."""
        reviewed = select(DecisionRow.supersedes).where(col(DecisionRow.supersedes).is_not(None))
        q = select(DecisionRow).where(
            DecisionRow.needs_review == True,  # noqa: E712
            col(DecisionRow.shadow_of).is_(None),
            DecisionRow.source != "review",
        )
        q = q.where(
            col(DecisionRow.id).in_(reviewed) if resolved else col(DecisionRow.id).not_in(reviewed)
        )
        if kind:
            q = q.where(DecisionRow.kind == kind)
        if before_seq is not None:
            q = q.where(col(DecisionRow.seq) < before_seq)
        with Session(self.engine) as s:
            return list(s.exec(q.order_by(col(DecisionRow.seq).desc()).limit(limit)).all())

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

    def key_by_id(self, *, key_id: str) -> ApiKeyRow | None:
        with Session(self.engine) as s:
            row = s.get(ApiKeyRow, key_id)
            return row if row is not None and row.revoked_at is None else None

    # -- web sessions --
    def create_session(self, *, key_id: str, hours: int = 8) -> tuple[str, str]:
        """A new session: (token for the cookie, CSRF token for forms)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = utcnow()
        with Session(self.engine) as s:
            s.add(
                UiSession(
                    token_hash=hash_key(token),
                    key_id=key_id,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + timedelta(hours=hours),
                )
            )
            s.commit()
        return token, csrf

    def session(self, *, token: str) -> UiSession | None:
        with Session(self.engine) as s:
            row = s.get(UiSession, hash_key(token))
        if row is None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        return row if expires > utcnow() else None

    def end_session(self, *, token: str) -> None:
        with Session(self.engine) as s:
            row = s.get(UiSession, hash_key(token))
            if row is not None:
                s.delete(row)
                s.commit()

    def key_count(self) -> int:
        with Session(self.engine) as s:
            return len(s.exec(select(ApiKeyRow.id)).all())


class NullStore(Store):
    """Benchmarks only (ARBITER_UNSAFE_NULL_LOG=1): decisions are hashed but not written,
    to measure what the durable log costs. Never use it to serve: decisions would be lost."""

    def append(
        self, *, row: DecisionRow, idempotency: tuple[str, str] | None = None
    ) -> DecisionRow:
        del idempotency  # nothing is stored, so no key is completed
        row.prev_hash = GENESIS
        row.hash = record_hash(row)
        return row
