"""The decision log: append to the hash chain, read, verify, and the audit queries."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, insert, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel, col, select

from service.errors import Conflict, StoreUnavailable
from service.log.chain import GENESIS, HASH_VERSION, record_hash, shard_of
from service.log.db import Database
from service.log.group import GroupCommit, Pending
from service.log.heads import (
    chain_name,
    head_info,
    head_problem,
    lock_head,
    move_head,
    next_seq,
    walk_chain,
)
from service.log.models import ChainHead, DecisionRow

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


@dataclass
class _Append:
    row: DecisionRow
    idempotency: tuple[str, str, str] | None


class DecisionLog:
    """Append-only decision records in `shards` hash chains (a fixed count, set when the
    database is created); routes and the engine never write SQL."""

    def __init__(self, *, db: Database):
        self.db = db
        self._group: GroupCommit[_Append] = GroupCommit(self._write_batch)
        self._shards: int | None = None

    @property
    def shards(self) -> int:
        """How many decision chains this log has (the `chain_head` rows 1..n)."""
        if self._shards is None:
            with self.db.engine.connect() as conn:
                n = conn.execute(
                    select(func.count()).select_from(TABLES[1]).where(TABLES[1].c.id >= 1)
                ).scalar_one()
            if not n:
                raise StoreUnavailable("the chain heads are missing; run the migrations")
            self._shards = int(n)
        return self._shards

    def shard_for(self, row: DecisionRow) -> int:
        """Records of one order share a shard, so an order's decision and its reviews are
        serialised by one head."""
        return shard_of(row.order_id or row.supersedes or row.id, self.shards)

    def _lane(self, shard: int) -> int:
        # SQLite has one writer per database: one lane for every shard avoids busy waits
        return 0 if self.db.url.startswith("sqlite") else shard

    def append(
        self, *, row: DecisionRow, idempotency: tuple[str, str, str] | None = None
    ) -> DecisionRow:
        """Link the row to its shard's chain and write it with the new head, in one
        transaction; with `idempotency=(scope, response, claim)` the key is completed in that
        transaction too, if that claim still holds it, and the response's sha256 is hashed
        into the record.

        Group commit: appends that wait at the same moment share that transaction and its
        one fsync (service/log/group.py); this returns once the row is durable. A failed
        transaction is StoreUnavailable for every append in it: none was answered."""
        shard = self.shard_for(row)
        written: DecisionRow = self._group.submit(self._lane(shard), _Append(row, idempotency))
        return written

    def _write_batch(self, batch: list[Pending[_Append]]) -> None:
        """One transaction for the batch: each row linked after the one before it in its
        shard, the heads moved once, one commit. A row whose own check fails (already
        reviewed, lease lost) gets its Conflict and writes nothing; the others go on."""
        decisions, _, keys = TABLES
        heads: dict[int, tuple[str, int]] = {}  # shard -> (hash, count) as this batch moves it
        moved: dict[int, int] = {}  # shard -> seq of its last row in this batch
        try:
            # Core statements, not the ORM unit of work: this is the hot path of every decision.
            with self.db.engine.begin() as conn:
                for p in batch:
                    row, idempotency = p.item.row, p.item.idempotency
                    shard = self.shard_for(row)
                    if shard not in heads:  # the head's lock, held to the commit
                        heads[shard] = lock_head(conn, shard)
                    if (
                        row.supersedes is not None
                        and conn.execute(
                            select(decisions.c.id).where(decisions.c.supersedes == row.supersedes)
                        ).first()
                    ):
                        p.error = Conflict(
                            f"{row.supersedes} has already been reviewed",
                            details={"decision_id": row.supersedes},
                        )
                        continue
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
                        if done.rowcount != 1:  # the retry that took the key over decides
                            p.error = Conflict(
                                "this request outlived its Idempotency-Key's lease and a retry "
                                "took the key over; retry to get that answer",
                                headers={"Retry-After": "1"},
                            )
                            continue
                        row.response_sha256 = hashlib.sha256(response.encode()).hexdigest()
                    head_hash, head_count = heads[shard]
                    row.shard, row.hash_version = shard, HASH_VERSION
                    row.seq = next_seq(conn, "decisions")
                    row.prev_hash = head_hash
                    row.hash = record_hash(row)
                    conn.execute(insert(decisions).values(row.model_dump()))
                    heads[shard], moved[shard] = (row.hash, head_count + 1), row.seq
                    p.result = row
                for shard, seq in moved.items():
                    head_hash, count = heads[shard]
                    move_head(conn, shard, seq=seq, hash=head_hash, count=count)
        except SQLAlchemyError as exc:
            for p in batch:  # rolled back: no row of this batch was written
                p.result = None
                p.error = StoreUnavailable(
                    "the decision could not be written to the log; no decision was made",
                    details={"error": type(exc).__name__},
                )
                p.error.__cause__ = exc

    def response_matches(self, *, decision_id: str | None, response: str) -> bool:
        """Whether a stored idempotent response is the one its decision record was logged
        with: the record's own hash holds and it names this response's sha256 (a record
        from before migration 0005 names none: its key, 24 hours at most, replays as is)."""
        row = self.get(decision_id=decision_id) if decision_id else None
        if row is None or record_hash(row) != row.hash:
            return False
        if row.hash_version == 1:  # logged before responses were bound (migration 0005)
            return True
        return row.response_sha256 == hashlib.sha256(response.encode()).hexdigest()

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
        with self.db.engine.connect() as conn:
            n = conn.execute(
                select(func.coalesce(func.sum(TABLES[1].c.count), 0)).where(TABLES[1].c.id >= 1)
            ).scalar_one()
        return int(n)

    def heads(self) -> dict[int, ChainHead]:
        """Every chain's head row by chain id (0 is the admin chain)."""
        with self.db.session() as s:
            return {h.id: h for h in s.exec(select(ChainHead)).all()}

    def iter_rows(
        self,
        *,
        batch: int = 500,
        after: int = 0,
        until: int | None = None,
        shard: int | None = None,
    ) -> Iterator[DecisionRow]:
        """Records in seq order (of one shard's chain, or of all), fetched in batches."""
        last = after
        while True:
            q = select(DecisionRow).where(col(DecisionRow.seq) > last)
            if until is not None:
                q = q.where(col(DecisionRow.seq) <= until)
            if shard is not None:
                q = q.where(DecisionRow.shard == shard)
            with self.db.session() as s:
                rows = s.exec(q.order_by(col(DecisionRow.seq)).limit(batch)).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq or last

    def verify(self, *, from_seq: int | None = None, to_seq: int | None = None) -> VerifyReport:
        """Walk every shard's chain (or a seq range of it); name the first wrong record.

        Each head is compared when the walk reaches the end of its chain. That catches
        records removed from the end by anyone who does not also move the head back; the
        signed checkpoints (service/log/checkpoints.py) catch those who do.
        """
        heads = self.heads()
        checked = 0
        for shard in range(1, self.shards + 1):
            prev, start = GENESIS, 0
            if from_seq is not None and from_seq > 1:
                with self.db.session() as s:
                    before = s.exec(
                        select(DecisionRow)
                        .where(col(DecisionRow.seq) < from_seq, DecisionRow.shard == shard)
                        .order_by(col(DecisionRow.seq).desc())
                    ).first()
                if before is not None:
                    prev, start = before.hash, before.seq or 0
            walk = walk_chain(
                self.iter_rows(after=start, until=to_seq, shard=shard),
                hash_of=record_hash,
                prev=prev,
                chain=chain_name(shard),
            )
            checked += walk.checked
            if walk.first_bad is not None:
                return VerifyReport(False, checked, walk.first_bad)
            head = heads.get(shard)
            if to_seq is not None and head is not None and to_seq < head.seq:
                continue  # the range ends before the head
            bad = head_problem(head, walk, whole=from_seq in (None, 1), chain=chain_name(shard))
            if bad is not None:
                return VerifyReport(False, checked, bad, head_info(heads))
        return VerifyReport(True, checked, None, head_info(heads))

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
        row.shard, row.hash_version = 1, HASH_VERSION
        row.prev_hash = GENESIS
        row.hash = record_hash(row)
        return row
