"""Chain heads and the chain walk shared by the decision shards and the admin chain."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, select, text, update
from sqlmodel import SQLModel

from service.errors import StoreUnavailable
from service.log.chain import GENESIS
from service.log.models import ADMIN_CHAIN, ChainHead, utcnow

HEADS = SQLModel.metadata.tables["chain_head"]


class ChainRow(Protocol):
    seq: int | None
    id: str
    prev_hash: str
    hash: str


def chain_name(chain: int) -> str:
    """The name of a chain in checkpoints and reports."""
    return "admin" if chain == ADMIN_CHAIN else f"shard-{chain}"


def lock_head(conn: Connection, chain: int) -> tuple[str, int]:
    """Take the chain's head row lock (SQLite: the write lock) and read (hash, count)."""
    # The UPDATE first takes the lock, so appenders of this chain, in this process or
    # another, queue here; appenders of other shards do not (PostgreSQL).
    conn.execute(text("UPDATE chain_head SET count = count WHERE id = :c"), {"c": chain})
    head = conn.execute(select(HEADS.c.hash, HEADS.c.count).where(HEADS.c.id == chain)).first()
    if head is None:
        raise StoreUnavailable(f"the head of chain {chain_name(chain)} is missing; migrate")
    return str(head[0]), int(head[1])


def move_head(conn: Connection, chain: int, *, seq: int, hash: str, count: int) -> None:
    conn.execute(
        update(HEADS)
        .where(HEADS.c.id == chain)
        .values(seq=seq, hash=hash, count=count, updated_at=utcnow())
    )


def next_seq(conn: Connection, table: str) -> int:
    """The next seq of a log table, taken before the insert so that it is hashed; called
    with the chain's head lock held (on SQLite that is the database's write lock)."""
    if conn.dialect.name == "postgresql":
        q = f"SELECT nextval(pg_get_serial_sequence('{table}', 'seq'))"
    else:
        q = f"SELECT coalesce(max(seq), 0) + 1 FROM {table}"
    return int(conn.execute(text(q)).scalar_one())


@dataclass
class Walk:
    """What walking one chain found."""

    checked: int
    first_bad: dict[str, Any] | None
    last_hash: str
    last: Any | None


R = TypeVar("R", bound=ChainRow)


def walk_chain(
    rows: Iterable[R],
    *,
    hash_of: Callable[[R], str],
    prev: str = GENESIS,
    chain: str,
    each: Callable[[int, R], dict[str, Any] | None] | None = None,
) -> Walk:
    """Check links and hashes in order; `each(index, row)` may name a further problem."""
    checked, last = 0, None
    for row in rows:
        problem = None
        if row.prev_hash != prev:
            problem = (
                "its link to the previous record is broken: the record before it was "
                "removed or altered"
            )
        elif hash_of(row) != row.hash:
            problem = "its content does not match its hash: the record was altered"
        if problem is None and each is not None:
            found = each(checked, row)
            if found is not None:
                return Walk(checked, {"chain": chain, **found}, prev, last)
        if problem is not None:
            bad = {"chain": chain, "id": row.id, "seq": row.seq, "problem": problem}
            return Walk(checked, bad, prev, last)
        prev, last = row.hash, row
        checked += 1
    return Walk(checked, None, prev, last)


def head_problem(
    head: ChainHead | None, walk: Walk, *, whole: bool, chain: str
) -> dict[str, Any] | None:
    """Whether the chain's end disagrees with its head row."""
    if (
        head is not None
        and head.hash == walk.last_hash
        and (not whole or head.count == walk.checked)
    ):
        return None
    last = walk.last
    return {
        "chain": chain,
        "id": last.id if last else None,
        "seq": last.seq if last else None,
        "problem": f"the chain ends after {walk.checked} records but its head expects "
        f"{head.count if head else '?'} ending in seq {head.seq if head else '?'}: records "
        "were removed from the end, or the head was altered",
    }


def head_info(heads: dict[int, ChainHead]) -> dict[str, Any]:
    """Heads as reports show them: the decision shards summed, and each chain."""
    shards = [h for i, h in sorted(heads.items()) if i != ADMIN_CHAIN]
    last = max(shards, key=lambda h: h.seq, default=None)
    return {
        "seq": last.seq if last else 0,
        "count": sum(h.count for h in shards),
        "hash": last.hash if last else GENESIS,
        "chains": {
            chain_name(i): {"seq": h.seq, "count": h.count, "hash": h.hash}
            for i, h in sorted(heads.items())
        },
    }
