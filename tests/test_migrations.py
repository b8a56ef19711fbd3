"""Alembic migrations build exactly the schema of the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from service.log.db import Database


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    db = Database(url=db_url)
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert diff == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"
    db.migrate()  # idempotent
    db.close()


def test_a_database_made_before_migrations_is_stamped(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    db = Database(url=url)
    SQLModel.metadata.create_all(db.engine)  # the pre-migration way, schema 0001:
    with db.engine.begin() as conn:  # without what later migrations add
        conn.execute(text("DROP INDEX ix_decisions_request_id"))
        conn.execute(text("ALTER TABLE decisions DROP COLUMN request_id"))
        for table, column in (
            ("idempotency_keys", "claim"),
            ("idempotency_keys", "lease_until"),
            ("api_keys", "expires_at"),
            ("api_keys", "last_used_at"),
        ):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(text("DROP INDEX ix_decisions_shard"))
        for column in ("response_sha256", "shard", "hash_version"):
            conn.execute(text(f"ALTER TABLE decisions DROP COLUMN {column}"))
        conn.execute(text("DROP TABLE admin_events"))
        conn.execute(text("DROP TABLE spec_deployments"))
        conn.execute(text("DROP TABLE policy_events"))
    db.migrate()
    assert "request_id" in {c["name"] for c in inspect(db.engine).get_columns("decisions")}
    assert "lease_until" in {c["name"] for c in inspect(db.engine).get_columns("idempotency_keys")}
    assert "alembic_version" in inspect(db.engine).get_table_names()
    db.close()
