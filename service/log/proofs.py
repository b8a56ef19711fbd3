"""Inclusion and consistency proofs (RFC 6962) over the chains, for /v1/audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from service.errors import InvalidInput
from service.limits import MAX_SEQ
from service.log import merkle
from service.log.checkpoints import (
    Checkpoint,
    chain_leaves,
    leaf_of,
    parse_body,
    read_directory,
    verifier_from,
)
from service.log.heads import chain_name
from service.log.models import ADMIN_CHAIN, DecisionRow


def chain_id(name: str) -> int:
    return ADMIN_CHAIN if name == "admin" else int(name.removeprefix("shard-"))


def published_checkpoints(settings: Any, *, leaves: bool) -> dict[str, Any]:
    """What the checkpoint directory holds (none when it is not configured)."""
    if settings.checkpoint_dir is None:
        return {"configured": False, "verifier_key": None, "checkpoints": [], "leaves": {}}
    directory = Path(settings.checkpoint_dir)
    data = read_directory(directory).as_dict() if directory.is_dir() else {"checkpoints": []}
    if not leaves:
        data.pop("leaves", None)
    return {"configured": True, "verifier_key": verifier_from(settings), **data}


def _covering(settings: Any, chain: str, index: int) -> tuple[Checkpoint, str] | None:
    """The newest published checkpoint whose tree of `chain` holds leaf `index`."""
    if settings.checkpoint_dir is None or not Path(settings.checkpoint_dir).is_dir():
        return None
    best: tuple[Checkpoint, str] | None = None
    for text, where in read_directory(Path(settings.checkpoint_dir)).notes:
        try:
            cp = parse_body(text.partition("\n\n")[0] + "\n", source=where)
        except ValueError:
            continue
        c = cp.chain(chain)
        if c is not None and c.size > index and (best is None or cp.time > best[0].time):
            best = (cp, text)
    return best


def _hashes(stores: Any, chain: int, size: int) -> list[bytes]:
    got = chain_leaves(stores.db, chain, upto_seq=MAX_SEQ, count=size)
    if len(got) < size:
        raise InvalidInput(
            f"{chain_name(chain)} has {len(got)} records, not {size}",
            details=[{"field": "size", "reason": "beyond the chain"}],
        )
    return [leaf_of(h) for _, _, h in got]


def inclusion(stores: Any, settings: Any, *, decision_id: str) -> dict[str, Any] | None:
    """The audit path of a decision: against the newest checkpoint covering it, else
    against the chain as it is now (unsigned; `checkpoint` is null)."""
    row = stores.log.get(decision_id=decision_id)
    if row is None:
        return None
    name = chain_name(row.shard)
    with stores.db.engine.connect() as conn:
        index = conn.execute(
            select(func.count())
            .select_from(DecisionRow)
            .where(col(DecisionRow.shard) == row.shard, col(DecisionRow.seq) < row.seq)
        ).scalar_one()
    covering = _covering(settings, name, int(index))
    size = covering[0].chain(name).size if covering else stores.log.heads()[row.shard].count  # type: ignore[union-attr]
    leaves = _hashes(stores, row.shard, size)
    return {
        "decision_id": row.id,
        "chain": name,
        "seq": row.seq,
        "index": int(index),
        "tree_size": size,
        "record_hash": row.hash,
        "leaf_hash": leaf_of(row.hash).hex(),
        "proof": [h.hex() for h in merkle.inclusion_proof(int(index), leaves)],
        "root": merkle.root(leaves).hex(),
        "checkpoint": covering[1] if covering else None,
    }


def consistency(stores: Any, *, chain: str, first: int, second: int) -> dict[str, Any]:
    """PROOF(first, D[second]) of one chain, with both roots."""
    cid = chain_id(chain)
    if cid not in stores.log.heads():
        raise InvalidInput(
            f"chain: no chain {chain}", details=[{"field": "chain", "reason": "unknown"}]
        )
    leaves = _hashes(stores, cid, second)
    return {
        "chain": chain,
        "first": first,
        "second": second,
        "first_root": merkle.root(leaves[:first]).hex(),
        "second_root": merkle.root(leaves).hex(),
        "proof": [h.hex() for h in merkle.consistency_proof(first, leaves)],
    }
