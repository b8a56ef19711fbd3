"""The database: engine, sessions, migrations, ping and close; the stores share it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

from service.log.models import ChainHead, utcnow


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine; SQLite gets WAL, a busy timeout and full fsync."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    """One engine for the process; every store reads and writes through it."""

    def __init__(self, *, url: str):
        self.url = url
        self.engine = make_engine(url)

    def session(self, **kwargs: Any) -> Session:
        return Session(self.engine, **kwargs)

    def migrate(self) -> None:
        """Bring the schema to the latest migration and make sure the chain head exists."""
        from alembic import command
        from alembic.config import Config
        from sqlalchemy import inspect

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent.parent / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            tables = set(inspect(conn).get_table_names())
            if "decisions" in tables and "alembic_version" not in tables:
                command.stamp(cfg, "0001")  # made before migrations existed: same schema
            command.upgrade(cfg, "head")
        with Session(self.engine) as s:
            if s.get(ChainHead, 1) is None:
                s.add(ChainHead(id=1, updated_at=utcnow()))
                s.commit()

    def ping(self) -> bool:
        """Whether the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()
