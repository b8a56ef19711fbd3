"""Spec versions: every version ever loaded, with its exact text."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from service.errors import LogTampered
from service.log.db import Database
from service.log.models import SpecVersionRow, utcnow


def checked_text(row: SpecVersionRow) -> str:
    """A stored version's text, if it still hashes to its sha256; LogTampered if not (the
    text was edited in the database: it must never be shown or used as the policy)."""
    if hashlib.sha256(row.text.encode("utf-8")).hexdigest() != row.sha256:
        raise LogTampered(
            f"the stored text of spec version {row.sha256[:12]} does not match its sha256: "
            "it was edited in the database and is not shown",
            details={"sha256": row.sha256},
        )
    return row.text


class SpecVersionStore:
    """The stored spec versions (kept forever)."""

    def __init__(self, *, db: Database):
        self.db = db

    def record(
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
        with self.db.session() as s:
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
            try:
                s.commit()
            except IntegrityError:
                # another process stored this very text at the same moment (several
                # workers starting on a new database): the sha256 is the content, so the
                # version is recorded either way
                s.rollback()
                if s.get(SpecVersionRow, sha256) is None:
                    raise

    def of_kind(self, *, kind: str) -> list[SpecVersionRow]:
        """Every stored version of a kind, newest first."""
        with self.db.session() as s:
            return list(
                s.exec(
                    select(SpecVersionRow)
                    .where(SpecVersionRow.kind == kind)
                    .order_by(col(SpecVersionRow.first_seen).desc())
                ).all()
            )

    def get(self, *, sha256: str) -> SpecVersionRow | None:
        with self.db.session() as s:
            return s.get(SpecVersionRow, sha256)

    def by_prefix(self, *, prefix: str, limit: int = 2) -> list[SpecVersionRow]:
        """Stored versions whose sha256 starts with `prefix` (at most `limit`)."""
        with self.db.session() as s:
            q = select(SpecVersionRow).where(col(SpecVersionRow.sha256).startswith(prefix))
            return list(s.exec(q.order_by(col(SpecVersionRow.sha256)).limit(limit)).all())
