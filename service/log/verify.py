"""The auditor's check: every chain against its head and every published checkpoint, spec
texts against their sha256, key and session rows against the admin chain, and an exported
file against the checkpoints, offline."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from service.log import merkle
from service.log.admin import AdminLog, admin_hash
from service.log.chain import GENESIS, export_hash, record_hash
from service.log.checkpoints import Checkpoint, Leaf, Published, leaf_of, opened
from service.log.decisions import VerifyReport
from service.log.heads import chain_name, head_info, head_problem, walk_chain
from service.log.models import ADMIN_CHAIN, SpecVersionRow


@dataclass
class AuditReport(VerifyReport):
    """What `arbiter log verify --checkpoints` found; `first_bad` names the first changed
    record."""

    checkpoints: int = 0
    latest: dict[str, Any] | None = None
    uncovered: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "checkpoints": self.checkpoints,
            "latest_checkpoint": self.latest,
            "uncovered": self.uncovered,
        }


def _open(published: Published, verifier: str) -> tuple[list[Checkpoint], AuditReport | None]:
    """The signed checkpoints, or the report of why what was published is refused."""
    cps, refused = opened(published, verifier)
    problem = (
        "a published checkpoint is refused: " + refused[0]
        if refused
        else check_published(published, cps)
    )
    return cps, None if problem is None else AuditReport(False, 0, {"problem": problem})


def _where(cp: Checkpoint) -> str:
    return f"checkpoint {cp.source or cp.time} (size {cp.size}, {cp.time})"


def _leaf_problem(index: int, leaf: Leaf, row: Any, chain: str) -> dict[str, Any]:
    seq, rid, h = leaf
    if row.id == rid and row.seq != seq:
        how = f"was renumbered: published as seq {seq}, now seq {row.seq}"
    elif row.id == rid:
        how = (
            f"was altered and the chain re-hashed after it: published hash {h[:16]}…, "
            f"now {row.hash[:16]}…"
        )
    else:
        how = (
            f"is no longer at its place (position {index} of {chain}): the database has "
            f"{row.id} (seq {row.seq}) there; it was deleted or a record was inserted, and "
            "the rest relinked"
        )
    return {"id": rid, "seq": seq, "problem": f"record {rid} (seq {seq}) {how}"}


def check_published(pub: Published, cps: list[Checkpoint]) -> str | None:
    """Whether the published leaves agree with every checkpoint that they reach."""
    for chain, leaves in pub.leaves.items():
        sizes = sorted({c.size for cp in cps if (c := cp.chain(chain)) and c.size})
        r = merkle.Range()
        for i in range(max(sizes, default=0)):
            if i not in leaves:
                break
            r.append(leaf_of(leaves[i][2]))
            for cp in cps:
                c = cp.chain(chain)
                if c is not None and c.size == r.size and c.root != r.root():
                    return (
                        f"the published leaves of {chain} disagree with {_where(cp)}: the "
                        "checkpoint directory was altered"
                    )
    return None


def _chain_rows(stores: Any, chain: int) -> Iterator[Any]:
    if chain == ADMIN_CHAIN:
        return AdminLog(db=stores.db).iter_rows()
    return iter(stores.log.iter_rows(shard=chain))


def audit(stores: Any, *, published: Published | None, verifier: str | None) -> AuditReport:
    """Walk every chain; with published checkpoints, check the database against each."""
    cps: list[Checkpoint] = []
    if published is not None:
        if verifier is None:
            return AuditReport(
                False,
                0,
                {
                    "problem": "no verifier key: pin one (ARBITER_CHECKPOINT_PUBLIC_KEY or "
                    "--public-key) to check the checkpoints"
                },
            )
        cps, refusal = _open(published, verifier)
        if refusal is not None:
            return refusal
    heads = stores.log.heads()
    report = AuditReport(True, 0, head=head_info(heads), checkpoints=len(cps))
    if cps:
        last = cps[-1]
        report.latest = {"time": last.time, "size": last.size, "where": last.source}
    names = {chain_name(i) for i in heads}
    for cp in cps:
        extra = [c.name for c in cp.chains if c.name not in names]
        if extra:
            report.ok = False
            report.first_bad = {
                "chain": extra[0],
                "problem": f"{_where(cp)} covers chain {extra[0]}, which the database no "
                "longer has",
            }
            return report
    for chain in sorted(heads):
        name = chain_name(chain)
        leaves = published.leaves.get(name, {}) if published else {}
        points = sorted(
            ((c, cp) for cp in cps if (c := cp.chain(name)) is not None), key=lambda x: x[0].size
        )
        r = merkle.Range()
        ok_upto = [0]

        def each(
            index: int,
            row: Any,
            *,
            name: str = name,
            leaves: dict[int, Leaf] = leaves,
            points: list[Any] = points,
            r: merkle.Range = r,
            ok_upto: list[int] = ok_upto,
        ) -> dict[str, Any] | None:
            leaf = leaves.get(index)
            if leaf is not None and leaf != (row.seq, row.id, row.hash):
                return _leaf_problem(index, leaf, row, name)
            r.append(leaf_of(row.hash))
            for c, cp in points:
                if c.size == r.size:
                    if c.root != r.root():
                        return {
                            "id": row.id,
                            "seq": row.seq,
                            "problem": f"the first {c.size} records of {name} do not match "
                            f"{_where(cp)}: a record after position {ok_upto[0]} and up to "
                            f"this one (seq {row.seq}) was changed",
                        }
                    ok_upto[0] = c.size
            return None

        walk = walk_chain(
            _chain_rows(stores, chain),
            hash_of=admin_hash if chain == ADMIN_CHAIN else record_hash,
            chain=name,
            each=each,
        )
        report.checked += walk.checked
        if walk.first_bad is not None:
            report.ok, report.first_bad = False, walk.first_bad
            return report
        covered = points[-1] if points else None
        if covered is not None and covered[0].size > walk.checked:
            leaf = leaves.get(walk.checked)
            who = (
                f"record {leaf[1]} (seq {leaf[0]})"
                if leaf
                else f"the record at position {walk.checked}"
            )
            report.ok = False
            report.first_bad = {
                "chain": name,
                "id": leaf[1] if leaf else None,
                "seq": leaf[0] if leaf else None,
                "problem": f"{who} of {name} is gone: {_where(covered[1])} covers "
                f"{covered[0].size} records, the database has {walk.checked}; records were "
                "removed from the end and the head moved back",
            }
            return report
        moved = head_problem(heads.get(chain), walk, whole=True, chain=name)
        if moved is not None:
            report.ok, report.first_bad = False, moved
            return report
        report.uncovered[name] = walk.checked - (covered[0].size if covered else 0)
    spec = tampered_spec(stores)
    untraced = spec or AdminLog(db=stores.db).untraced()
    if untraced is not None:
        report.ok, report.first_bad = False, untraced
    return report


def tampered_spec(stores: Any) -> dict[str, Any] | None:
    """The first stored spec version whose text does not hash to its sha256."""
    with stores.db.session() as s:
        for row in s.exec(select(SpecVersionRow).order_by(col(SpecVersionRow.first_seen))).all():
            if hashlib.sha256(row.text.encode("utf-8")).hexdigest() != row.sha256:
                return {
                    "chain": None,
                    "id": f"spec {row.sha256[:12]}",
                    "seq": None,
                    "problem": f"the stored text of spec version {row.sha256[:12]} ({row.name} "
                    f"v{row.version}) does not match its sha256: it was edited in the database",
                }
    return None


# -- an exported file, offline --


def _export_rows(path: Path) -> Iterator[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)
        return
    for rec in csv.DictReader(io.StringIO(text)):
        yield {**rec, "seq": int(rec["seq"]), "shard": int(rec["shard"]), "csv": True}


def verify_export(path: Path, *, published: Published, verifier: str) -> AuditReport:
    """Each exported record against the published leaves and checkpoints: its place, its
    hash and its link; an unmasked JSON-lines record's content against its hash too."""
    cps, refusal = _open(published, verifier)
    if refusal is not None:
        return refusal
    by_seq = {
        chain: {leaf[0]: (i, leaf) for i, leaf in leaves.items()}
        for chain, leaves in published.leaves.items()
    }
    covered = {
        name: max((c.size for cp in cps if (c := cp.chain(name))), default=0)
        for name in published.leaves
    }
    report = AuditReport(True, 0, checkpoints=len(cps))
    for rec in _export_rows(path):
        chain = chain_name(int(rec.get("shard") or 1))
        rid, seq = rec.get("id"), rec.get("seq")
        problem = None
        if not rec.get("csv") and not rec.get("masked") and export_hash(rec) != rec.get("hash"):
            problem = "its content does not match its hash: the exported record was altered"
        else:
            found = by_seq.get(chain, {}).get(int(seq)) if seq is not None else None
            last_seq = max(by_seq.get(chain, {}), default=0)
            if found is None and seq is not None and int(seq) <= last_seq:
                problem = (
                    f"{chain} was published up to seq {last_seq} without this record: it is "
                    "not in the log"
                )
            elif found is None or found[0] >= covered.get(chain, 0):
                report.uncovered[chain] = report.uncovered.get(chain, 0) + 1
            else:
                index, (_, pid, ph) = found
                prev = published.leaves[chain].get(index - 1)
                if pid != rid or ph != rec.get("hash"):
                    problem = (
                        f"published as {pid} with hash {ph[:16]}…, exported as {rid} with "
                        f"hash {str(rec.get('hash'))[:16]}…"
                    )
                elif rec.get("prev_hash") != (prev[2] if prev else GENESIS):
                    problem = "its prev_hash is not the published hash of the record before it"
        if problem is not None:
            report.ok = False
            report.first_bad = {"chain": chain, "id": rid, "seq": seq, "problem": problem}
            return report
        report.checked += 1
    return report
