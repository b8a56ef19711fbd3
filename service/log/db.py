"""The database: engine, sessions, migrations, ping and close; the stores share it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine, select

from service.errors import StoreUnavailable
from service.log.models import ADMIN_CHAIN, ChainHead, utcnow

T = TypeVar("T")


@dataclass(frozen=True)
class Timeouts:
    """How long the database may take: to connect (and to wait for a pooled connection),
    to run one statement, to wait for a lock (SQLite: its busy timeout)."""

    connect_s: int = 5
    statement_s: float = 10.0
    lock_s: float = 5.0

    @property
    def wait_s(self) -> float:
        """The longest a request waits for one database call before it answers 503."""
        return self.connect_s + self.statement_s


def make_engine(url: str, timeouts: Timeouts | None = None) -> Engine:
    """A SQLAlchemy engine with connect, statement and lock timeouts; SQLite gets WAL and
    full fsync."""
    t = timeouts or Timeouts()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": t.lock_s})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={int(t.lock_s * 1000)}")
            cur.close()
            # a statement timeout: SQLite calls this every 10,000 VM steps; non-zero aborts
            started = record.info["statement_started"] = [0.0]
            dbapi_connection.set_progress_handler(
                lambda: int(time.monotonic() - started[0] > t.statement_s), 10_000
            )

        @event.listens_for(engine, "before_cursor_execute")
        def _started(conn: Any, *_: Any) -> None:
            conn.info["statement_started"][0] = time.monotonic()

        return engine
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        pool_timeout=t.connect_s,
        connect_args={
            "connect_timeout": t.connect_s,
            "options": f"-c statement_timeout={int(t.statement_s * 1000)} "
            f"-c lock_timeout={int(t.lock_s * 1000)} "
            f"-c idle_in_transaction_session_timeout={int(t.wait_s * 2000)}",
            # a network that drops packets: sent data unacknowledged for this long, or an
            # idle connection that stops answering keepalives, ends the connection
            "tcp_user_timeout": int(t.wait_s * 1000),
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    )


class Database:
    """One engine for the process; every store reads and writes through it."""

    def __init__(self, *, url: str, timeouts: Timeouts | None = None):
        self.url = url
        self.timeouts = timeouts or Timeouts()
        self.engine = make_engine(url, self.timeouts)

    async def call(self, fn: Callable[[], T]) -> T:
        """`fn` in a worker thread; StoreUnavailable (503) when it takes longer than
        `timeouts.wait_s` (a database that stopped answering mid-statement): the request
        answers, the thread is left to end with its connection."""
        try:
            with anyio.fail_after(self.timeouts.wait_s):
                return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
        except TimeoutError:
            raise StoreUnavailable(
                f"the database did not answer within {self.timeouts.wait_s:g} s; retry",
                details={"error": "timeout"},
            ) from None

    def session(self, **kwargs: Any) -> Session:
        return Session(self.engine, **kwargs)

    def migrate(self, *, shards: int = 1) -> None:
        """Bring the schema to the latest migration and make sure the chain heads exist:
        the admin chain's, and on a new log `shards` decision shards (a count fixed from
        then on: the shard of a record is a function of it)."""
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
            have = {h.id for h in s.exec(select(ChainHead)).all()}
            missing = [] if ADMIN_CHAIN in have else [ADMIN_CHAIN]
            if not have - {ADMIN_CHAIN}:
                missing += range(1, shards + 1)
            if missing:
                s.add_all(ChainHead(id=i, updated_at=utcnow()) for i in missing)
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
