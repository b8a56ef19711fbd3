"""Alembic migrations build exactly the schema of the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from service.log.store import Store


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    store = Store(url=db_url)
    store.create_all()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert diff == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    store.create_all()  # idempotent
    store.close()


def test_a_database_made_before_migrations_is_stamped(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    store = Store(url=url)
    SQLModel.metadata.create_all(store.engine)  # the pre-migration way
    store.create_all()
    assert "alembic_version" in inspect(store.engine).get_table_names()
    store.close()
