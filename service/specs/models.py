"""Tables of policy rollout: which stored version serves each kind, and the policy events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime
from sqlmodel import Field, SQLModel

from service.log.models import JSONType


class SpecDeploymentRow(SQLModel, table=True):
    """One stored version serving a kind in a role, from `started_at` until `ended_at`.

    The rows with no `ended_at` are the rollout state every replica serves: each `active`
    row is one entry of the kind's schedule (its slot is the policy name, e.g. `returns`
    or `returns.holiday`; the version's `effective_from` orders the schedule), and at most
    one `shadow` or `canary:N` row is the candidate. Rows are never deleted: ended rows are
    the history that rollback reads.
    """

    __tablename__ = "spec_deployments"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True, max_length=32)
    slot: str = Field(max_length=64)
    sha256: str = Field(max_length=64)
    role: str = Field(max_length=16)  # active | shadow | canary:N
    source: str = Field(max_length=80)  # api | cli | file:<name>.md
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    started_by: str = Field(max_length=64)
    ended_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )
    ended_by: str | None = Field(default=None, max_length=64)


class PolicyEventRow(SQLModel, table=True):
    """Who did what to which policy version, when: draft, eval, shadow, promote, rollback."""

    __tablename__ = "policy_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    actor: str = Field(max_length=64)
    kind: str = Field(index=True, max_length=32)
    action: str = Field(max_length=32)
    sha256: str | None = Field(default=None, index=True, max_length=64)
    details: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
