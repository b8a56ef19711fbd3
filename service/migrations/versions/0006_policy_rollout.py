"""policies are data: spec_deployments (rollout state per kind) and policy_events

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from service.log.models import JSONType

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spec_deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("slot", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_spec_deployments_kind", "spec_deployments", ["kind"])
    op.create_index("ix_spec_deployments_ended_at", "spec_deployments", ["ended_at"])
    op.create_table(
        "policy_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("details", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_policy_events_at", "policy_events", ["at"])
    op.create_index("ix_policy_events_kind", "policy_events", ["kind"])
    op.create_index("ix_policy_events_sha256", "policy_events", ["sha256"])


def downgrade() -> None:
    op.drop_table("policy_events")
    op.drop_table("spec_deployments")
