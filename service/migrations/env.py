"""Alembic environment: runs on the connection Database.migrate() hands it."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import service.log.models
import service.specs.models  # noqa: F401  (both register their tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
