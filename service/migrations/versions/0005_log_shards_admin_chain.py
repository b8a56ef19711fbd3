"""The log proves itself: hash version 2 (seq inside the hash), decision shards, the admin
chain, idempotent responses bound to their record, and on PostgreSQL an insert-only role

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Existing decision records keep their hash (hash_version 1, verified as written; hashes an
auditor already holds stay valid) in shard 1; new records are version 2. Existing API keys
and sessions get a backfilled admin event each (actor "migration 0005"), so that later
rows without one stand out.
"""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

WRITER_ROLE = "arbiter_writer"
INSERT_ONLY = ("decisions", "admin_events")
"""Log tables: the writer role may read and insert, never update or delete."""
READ_WRITE = ("idempotency_keys", "ui_sessions", "spec_versions", "api_keys")


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(
            sa.Column("response_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch.add_column(sa.Column("shard", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(
            sa.Column("hash_version", sa.Integer(), nullable=False, server_default="1")
        )
        batch.create_index("ix_decisions_shard", ["shard"], unique=False)
    op.create_table(
        "admin_events",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("admin_events") as batch:
        batch.create_index("ix_admin_events_id", ["id"], unique=True)
        batch.create_index("ix_admin_events_action", ["action"], unique=False)
        batch.create_index("ix_admin_events_subject", ["subject"], unique=False)
    _backfill_admin_events()
    if op.get_bind().dialect.name == "postgresql":
        # seqs are now taken with nextval() before the insert: start past every row
        op.execute(
            "SELECT setval(pg_get_serial_sequence('decisions', 'seq'), "
            "coalesce((SELECT max(seq) FROM decisions), 0) + 1, false)"
        )
        _writer_role()


def _backfill_admin_events() -> None:
    from service.log.admin import record_admin
    from service.log.chain import utc_iso
    from service.log.models import ADMIN_CHAIN, utcnow

    conn = op.get_bind()
    heads = sa.table(
        "chain_head",
        sa.column("id", sa.Integer),
        sa.column("seq", sa.Integer),
        sa.column("count", sa.Integer),
        sa.column("hash", sa.String),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    if conn.execute(sa.select(heads.c.id).where(heads.c.id == ADMIN_CHAIN)).first() is None:
        conn.execute(
            sa.insert(heads).values(
                id=ADMIN_CHAIN, seq=0, count=0, hash="0" * 64, updated_at=utcnow()
            )
        )
    actor = "migration 0005"
    for kid, name, key_hash, scopes, revoked, expires in conn.execute(
        sa.text(
            "SELECT id, name, key_hash, scopes, revoked_at, expires_at FROM api_keys "
            "ORDER BY created_at"
        )
    ).all():
        scopes = scopes if isinstance(scopes, list) else json.loads(scopes)
        if isinstance(expires, str):  # SQLite
            expires = datetime.fromisoformat(expires)
        details = {
            "name": name,
            "scopes": sorted(scopes),
            "key_hash": key_hash,
            "expires_at": utc_iso(expires) if expires else None,
        }
        record_admin(conn, actor=actor, action="key.create", subject=kid, details=details)
        if revoked is not None:
            record_admin(conn, actor=actor, action="key.revoke", subject=kid, details={})
    for token_hash, key_id in conn.execute(
        sa.text("SELECT token_hash, key_id FROM ui_sessions ORDER BY created_at")
    ).all():
        record_admin(
            conn, actor=actor, action="session.open", subject=token_hash, details={"key_id": key_id}
        )


def _writer_role() -> None:
    """The role the service should run as (grant it to the login role of the service):
    log tables insert-only; the heads may move (a head moved back is caught by the signed
    checkpoints); everything else read-write. Skipped when the migrating user may not
    create roles."""
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WRITER_ROLE}')
             AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user)
          THEN CREATE ROLE {WRITER_ROLE} NOLOGIN;
          END IF;
        END $$;
        """
    )
    grants = [
        f"GRANT SELECT, INSERT ON {', '.join(INSERT_ONLY)} TO {WRITER_ROLE}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {', '.join(INSERT_ONLY)} FROM {WRITER_ROLE}",
        f"GRANT SELECT, UPDATE ON chain_head TO {WRITER_ROLE}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(READ_WRITE)} TO {WRITER_ROLE}",
        f"GRANT SELECT ON alembic_version TO {WRITER_ROLE}",
        f"GRANT USAGE ON SEQUENCE decisions_seq_seq, admin_events_seq_seq TO {WRITER_ROLE}",
    ]
    body = "; ".join(f"EXECUTE '{g}'" for g in grants)
    op.execute(
        f"""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WRITER_ROLE}') THEN {body};
          END IF;
        END $$;
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            DO $$ BEGIN
              IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WRITER_ROLE}') THEN
                EXECUTE 'REVOKE ALL ON {", ".join((*INSERT_ONLY, *READ_WRITE))}, chain_head,
                  alembic_version FROM {WRITER_ROLE}';
                EXECUTE 'REVOKE ALL ON SEQUENCE decisions_seq_seq, admin_events_seq_seq
                  FROM {WRITER_ROLE}';
              END IF;
            END $$;
            """
        )
    op.execute("DELETE FROM chain_head WHERE id = 0")
    with op.batch_alter_table("admin_events") as batch:
        batch.drop_index("ix_admin_events_subject")
        batch.drop_index("ix_admin_events_action")
        batch.drop_index("ix_admin_events_id")
    op.drop_table("admin_events")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_index("ix_decisions_shard")
        batch.drop_column("hash_version")
        batch.drop_column("shard")
        batch.drop_column("response_sha256")
