"""The rollout state in the database: which stored version serves each kind, and how it
got there. Every replica reads the same rows, so every replica serves the same policy.

Files in `specs/` are one way in: a file whose content differs from what was last
imported from it is deployed in the role its front matter names (`rollout:`), and a
removed file's deployment ends. A file seen again unchanged (a restart, another replica)
changes nothing, so a promotion or rollback made through the API survives restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, insert
from sqlmodel import Session, col, select

from service.errors import NotFound
from service.log.admin import record_admin
from service.log.db import Database
from service.log.models import utcnow
from service.specs.loader import Spec
from service.specs.models import PolicyEventRow, SpecDeploymentRow

ACTIVE = "active"
REMOVED = "file:removed"
ACTOR_MAX = 64
"""An actor is an API key id, `file`, `push`, `file:removed` or `cli:<user>` (cut to this)."""
ACTIONS = ("import", "remove", "draft", "eval", "shadow", "canary", "stop", "promote", "rollback")
EVENTS = PolicyEventRow.__table__  # type: ignore[attr-defined]


def record_policy_event(
    conn: Connection,
    *,
    actor: str,
    kind: str,
    action: str,
    sha256: str | None,
    details: dict[str, Any],
) -> None:
    """Append one policy event in the caller's transaction (with the change it records).

    The one place policy events are written: each is also appended to the admin chain
    (hash-chained, covered by the signed checkpoints) in the same transaction; the
    `policy_events` row is its index by kind and version, for the editor and the API.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown policy action {action!r}")
    record_admin(
        conn,
        actor=actor,
        action=f"spec.{action}",
        subject=f"{kind}:{sha256 or '-'}",
        details={"kind": kind, "sha256": sha256, **details},
    )
    conn.execute(
        insert(EVENTS).values(
            at=utcnow(), actor=actor, kind=kind, action=action, sha256=sha256, details=details
        )
    )


def is_candidate(role: str) -> bool:
    return role != ACTIVE


class DeploymentStore:
    """Reads and changes of the rollout state; each change is one transaction with its event."""

    def __init__(self, *, db: Database):
        self.db = db

    # -- reads --
    def current(self) -> list[SpecDeploymentRow]:
        """The rows in force now, oldest first."""
        with self.db.session() as s:
            q = select(SpecDeploymentRow).where(col(SpecDeploymentRow.ended_at).is_(None))
            return list(s.exec(q.order_by(col(SpecDeploymentRow.id))).all())

    def history(self, *, kind: str, limit: int = 200) -> list[SpecDeploymentRow]:
        """Every deployment of a kind, newest first."""
        with self.db.session() as s:
            q = select(SpecDeploymentRow).where(SpecDeploymentRow.kind == kind)
            return list(s.exec(q.order_by(col(SpecDeploymentRow.id).desc()).limit(limit)).all())

    def events(
        self, *, kind: str, sha256: str | None = None, limit: int = 200
    ) -> list[PolicyEventRow]:
        """Policy events of a kind (of one version), newest first."""
        with self.db.session() as s:
            q = select(PolicyEventRow).where(PolicyEventRow.kind == kind)
            if sha256 is not None:
                q = q.where(PolicyEventRow.sha256 == sha256)
            return list(s.exec(q.order_by(col(PolicyEventRow.id).desc()).limit(limit)).all())

    def record(
        self, *, actor: str, kind: str, action: str, sha256: str | None, details: dict[str, Any]
    ) -> None:
        """An event that changes no rollout state (a draft saved, an eval run)."""
        with self.db.engine.begin() as conn:
            record_policy_event(
                conn, actor=actor, kind=kind, action=action, sha256=sha256, details=details
            )

    # -- changes --
    def deploy(
        self,
        *,
        kind: str,
        slot: str,
        sha256: str,
        role: str,
        actor: str,
        source: str,
        action: str,
        details: dict[str, Any] | None = None,
    ) -> SpecDeploymentRow:
        """Put a version in a role: an active version replaces the one in its slot (and
        stops being the candidate); a candidate replaces the kind's candidate."""
        with self.db.session() as s:
            now = utcnow()
            rows = self._locked(s, kind)
            before = [r for r in rows if self._replaced(r, slot=slot, sha256=sha256, role=role)]
            for r in before:
                r.ended_at, r.ended_by = now, actor
                s.add(r)
            row = SpecDeploymentRow(
                kind=kind,
                slot=slot,
                sha256=sha256,
                role=role,
                source=source,
                started_at=now,
                started_by=actor,
            )
            s.add(row)
            s.flush()
            record_policy_event(
                s.connection(),
                actor=actor,
                kind=kind,
                action=action,
                sha256=sha256,
                details={
                    "slot": slot,
                    "role": role,
                    "source": source,
                    "replaced": [
                        {"sha256": r.sha256, "role": r.role, "slot": r.slot} for r in before
                    ],
                    **(details or {}),
                },
            )
            s.commit()
            s.refresh(row)
            return row

    @staticmethod
    def _replaced(r: SpecDeploymentRow, *, slot: str, sha256: str, role: str) -> bool:
        if is_candidate(role):
            return is_candidate(r.role)
        if r.role == ACTIVE:
            return r.slot == slot
        return r.sha256 == sha256  # the candidate being promoted

    @staticmethod
    def _locked(s: Session, kind: str) -> list[SpecDeploymentRow]:
        """The kind's rows in force, locked until the transaction ends (PostgreSQL)."""
        q = (
            select(SpecDeploymentRow)
            .where(SpecDeploymentRow.kind == kind, col(SpecDeploymentRow.ended_at).is_(None))
            .order_by(col(SpecDeploymentRow.id))
            .with_for_update()
        )
        return list(s.exec(q).all())

    def stop_candidate(self, *, kind: str, actor: str) -> SpecDeploymentRow:
        """End the kind's shadow or canary."""
        with self.db.session() as s:
            rows = [r for r in self._locked(s, kind) if is_candidate(r.role)]
            if not rows:
                raise NotFound(f"{kind} has no shadow or canary version")
            for r in rows:
                r.ended_at, r.ended_by = utcnow(), actor
                s.add(r)
            record_policy_event(
                s.connection(),
                actor=actor,
                kind=kind,
                action="stop",
                sha256=rows[-1].sha256,
                details={"role": rows[-1].role, "slot": rows[-1].slot},
            )
            s.commit()
            return rows[-1]

    def previous_active(self, *, kind: str, slot: str) -> str | None:
        """The sha256 that served `slot` before the version serving it now."""
        rows = [
            r for r in self.history(kind=kind, limit=1000) if r.role == ACTIVE and r.slot == slot
        ]
        now = next((r.sha256 for r in rows if r.ended_at is None), None)
        return next((r.sha256 for r in rows if r.ended_at is not None and r.sha256 != now), None)

    # -- the specs/ folder as a way in --
    def sync_files(
        self, *, files: Mapping[str, Spec], present: Iterable[str], via: str = "file"
    ) -> list[str]:
        """Deploy each file whose content is new since its last import `via` the folder
        ("file") or `arbiter spec push` ("push"); for the folder, end what a removed file
        deployed (but never the last active version of a kind). Returns what changed."""
        present = set(present)
        with self.db.session() as s:
            imported = list(
                s.exec(
                    select(SpecDeploymentRow)
                    .where(col(SpecDeploymentRow.source).startswith(f"{via}:"))
                    .order_by(col(SpecDeploymentRow.id).desc())
                ).all()
            )
        last: dict[str, SpecDeploymentRow] = {}
        for r in imported:
            last.setdefault(r.source.removeprefix(f"{via}:").removesuffix(".md"), r)
        changes = []
        for name, spec in files.items():
            prev = last.get(name)
            if prev is not None and prev.sha256 == spec.sha256 and prev.ended_by != REMOVED:
                continue  # seen before: whatever the API did with it since stands
            role = spec.meta.rollout
            self.deploy(
                kind=spec.kind,
                slot=name,
                sha256=spec.sha256,
                role=role,
                actor=via,
                source=f"{via}:{name}.md",
                action="import",
                details={"version": spec.version},
            )
            changes.append(f"{name}.md: deployed {spec.sha256[:12]} ({role})")
        for name, row in last.items():
            if via != "file" or name in present or row.ended_at is not None:
                continue
            if self._end_removed(row):
                changes.append(f"{name}.md: removed, {row.sha256[:12]} ({row.role}) ended")
        return changes

    def _end_removed(self, row: SpecDeploymentRow) -> bool:
        with self.db.session() as s:
            rows = self._locked(s, row.kind)
            mine = next((r for r in rows if r.id == row.id), None)
            actives = [r for r in rows if r.role == ACTIVE]
            if mine is None or (mine.role == ACTIVE and len(actives) == 1):
                return False
            mine.ended_at, mine.ended_by = utcnow(), REMOVED
            s.add(mine)
            record_policy_event(
                s.connection(),
                actor="file",
                kind=row.kind,
                action="remove",
                sha256=row.sha256,
                details={"slot": row.slot, "role": row.role, "source": row.source},
            )
            s.commit()
            return True
