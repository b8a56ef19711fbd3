"""The decision log: append to the hash chain, read, verify, and the audit queries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, insert, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel, col, select

from service.errors import Conflict, StoreUnavailable
from service.log.chain import GENESIS, record_hash
from service.log.db import Database
from service.log.models import ChainHead, DecisionRow, utcnow

TABLES: tuple[Table, Table, Table] = (
    SQLModel.metadata.tables["decisions"],
    SQLModel.metadata.tables["chain_head"],
    SQLModel.metadata.tables["idempotency_keys"],
)


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


class DecisionLog:
    """Append-only decision records in one hash chain; routes and the engine never write SQL."""

    def __init__(self, *, db: Database):
        self.db = db
        self._append_lock = threading.Lock()

    def append(
        self, *, row: DecisionRow, idempotency: tuple[str, str, str] | None = None
    ) -> DecisionRow:
        """Link the row to the chain and write it with the new head, in one transaction;
        with `idempotency=(scope, response, claim)` the key is completed in that transaction
        too, if that claim still holds it."""
        decisions, heads, keys = TABLES
        try:
            # Core statements, not the ORM unit of work: this is the hot path of every decision.
            with self._append_lock, self.db.engine.begin() as conn:
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
                    scope, response, claim = idempotency
                    done = conn.execute(
                        update(keys)
                        .where(
                            keys.c.scope == scope,
                            keys.c.state == "in_flight",
                            keys.c.claim == claim,
                        )
                        .values(state="done", response=response, decision_id=row.id)
                    )
                    if done.rowcount != 1:  # rolled back: the retry that took it over decides
                        raise Conflict(
                            "this request outlived its Idempotency-Key's lease and a retry "
                            "took the key over; retry to get that answer",
                            headers={"Retry-After": "1"},
                        )
                return row
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                "the decision could not be written to the log; no decision was made",
                details={"error": type(exc).__name__},
            ) from exc

    def get(self, *, decision_id: str) -> DecisionRow | None:
        with self.db.session() as s:
            return s.exec(select(DecisionRow).where(DecisionRow.id == decision_id)).first()

    def superseding(self, *, decision_id: str) -> DecisionRow | None:
        """The newest record that supersedes a decision (a human review), if any."""
        with self.db.session() as s:
            return s.exec(
                select(DecisionRow)
                .where(DecisionRow.supersedes == decision_id)
                .order_by(col(DecisionRow.seq).desc())
            ).first()

    def decisions_since(self, *, kind: str, since: datetime, limit: int) -> list[DecisionRow]:
        """Live (not shadow, not review) decisions of a kind since a time, oldest first."""
        with self.db.session() as s:
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
        with self.db.session() as s:
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
            with self.db.session() as s:
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
            with self.db.session() as s:
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
        with self.db.session() as s:
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
        with self.db.session() as s:
            return list(s.exec(q.order_by(col(DecisionRow.seq).desc()).limit(limit)).all())

    def stream(self, *, filters: DecisionFilter, batch: int = 200) -> Iterator[DecisionRow]:
        """Matching decisions oldest first, in batches: constant memory for any size."""
        last = 0
        while True:
            q = filters.apply(select(DecisionRow)).where(col(DecisionRow.seq) > last)
            with self.db.session() as s:
                rows = s.exec(q.order_by(col(DecisionRow.seq)).limit(batch)).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq or last

    def related(self, *, decision_id: str) -> tuple[list[DecisionRow], list[DecisionRow]]:
        """(shadow records of a decision, records that supersede it)."""
        with self.db.session() as s:
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
        """Decisions (and reviews awaiting a second reviewer) that need review and are not
        yet superseded (or, resolved ones)."""
        reviewed = select(DecisionRow.supersedes).where(col(DecisionRow.supersedes).is_not(None))
        q = select(DecisionRow).where(
            DecisionRow.needs_review == True,  # noqa: E712
            col(DecisionRow.shadow_of).is_(None),
        )
        q = q.where(
            col(DecisionRow.id).in_(reviewed) if resolved else col(DecisionRow.id).not_in(reviewed)
        )
        if kind:
            q = q.where(DecisionRow.kind == kind)
        if before_seq is not None:
            q = q.where(col(DecisionRow.seq) < before_seq)
        with self.db.session() as s:
            return list(s.exec(q.order_by(col(DecisionRow.seq).desc()).limit(limit)).all())

    def shadow_pairs(
        self, *, kind: str, candidate_sha: str, limit: int = 1000
    ) -> list[tuple[DecisionRow, DecisionRow]]:
        """(live, shadow) pairs for a candidate version, newest first."""
        with self.db.session() as s:
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
        with self.db.session() as s:
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


class NullDecisionLog(DecisionLog):
    """Benchmarks only (ARBITER_UNSAFE_NULL_LOG=1): decisions are hashed but not written,
    to measure what the durable log costs. Never use it to serve: decisions would be lost."""

    def append(
        self, *, row: DecisionRow, idempotency: tuple[str, str, str] | None = None
    ) -> DecisionRow:
        del idempotency  # nothing is stored, so no key is completed
        row.prev_hash = GENESIS
        row.hash = record_hash(row)
        return row
