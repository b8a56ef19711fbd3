"""decisions.request_id: the X-Request-Id of the request that made the decision

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(
            sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
        batch.create_index("ix_decisions_request_id", ["request_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_index("ix_decisions_request_id")
        batch.drop_column("request_id")
