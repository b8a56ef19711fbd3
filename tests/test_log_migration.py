"""Migration 0005 on a log written before it, and the insert-only writer role (PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, Table, create_engine, insert, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from bench.log_writers import sample_row
from service.log.chain import GENESIS, record_hash
from service.log.checkpoints import checkpoint_now, new_key_text, read_directory, verifier_from
from service.log.db import Database
from service.log.models import utcnow
from service.log.stores import open_stores
from service.log.verify import audit
from tests.conftest import make_settings

V1_COLUMNS = {"response_sha256", "shard", "hash_version"}
OLD_DECISIONS = Table(
    "decisions",
    MetaData(),
    *(c._copy() for c in SQLModel.metadata.tables["decisions"].columns if c.name not in V1_COLUMNS),
)
"""The decisions table as migration 0004 left it."""


def _at_0004(url: str) -> Database:
    db = Database(url=url)
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(Path(__file__).parent.parent / "service" / "migrations")
    )
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    return db


def test_a_log_written_before_0005_migrates_and_still_verifies(db_url: str, tmp_path: Path) -> None:
    db = _at_0004(db_url)
    prev = GENESIS
    old_ids = []
    with db.engine.begin() as conn:
        for i in range(5):
            row = sample_row(f"OLD-{i}")
            row.hash_version, row.seq, row.prev_hash = 1, i + 1, prev
            row.hash = record_hash(row)  # the version 1 hash: seq not in it
            conn.execute(insert(OLD_DECISIONS).values(row.model_dump(exclude=V1_COLUMNS)))
            prev = row.hash
            old_ids.append(row.id)
        conn.execute(
            text(
                "INSERT INTO chain_head (id, seq, count, hash, updated_at) VALUES (1, 5, 5, :h, :t)"
            ),
            {"h": prev, "t": utcnow()},
        )
        conn.execute(
            text(
                "INSERT INTO api_keys (id, name, key_hash, scopes, created_at) "
                "VALUES ('key_old', 'old', :h, :s, :t)"
            ),
            {"h": "a" * 64, "s": json.dumps(["admin"]), "t": utcnow()},
        )
    db.close()
    settings = make_settings(
        db_url,
        log_shards=4,  # ignored: the log already exists, with one chain
        checkpoint_key=new_key_text(),
        checkpoint_dir=tmp_path / "cp",
    )
    stores = open_stores(db_url, shards=4)
    try:
        assert stores.log.shards == 1
        old = stores.log.get(decision_id=old_ids[0])
        assert old is not None and old.hash_version == 1 and old.shard == 1
        for i in range(3):
            stores.log.append(row=sample_row(f"NEW-{i}"))
        new = list(stores.log.iter_rows())[5:]
        assert [r.hash_version for r in new] == [2, 2, 2] and new[0].prev_hash == prev
        assert stores.log.verify().ok
        checkpoint_now(stores, settings)
        pub = read_directory(tmp_path / "cp")
        report = audit(stores, published=pub, verifier=verifier_from(settings))
        assert report.ok, report.first_bad  # the old key got a backfilled admin event
        assert report.checked == 8 + 1
        # a version 1 record renumbered is caught by the published leaves
        with stores.db.engine.begin() as conn:
            conn.execute(text("UPDATE decisions SET seq = 100 WHERE seq = 5"))
            conn.execute(text("UPDATE decisions SET seq = 5 WHERE seq = 4"))
            conn.execute(text("UPDATE decisions SET seq = 4 WHERE seq = 100"))
        report = audit(stores, published=pub, verifier=verifier_from(settings))
        assert not report.ok and report.first_bad is not None
    finally:
        stores.close()


def test_the_writer_role_can_only_insert_into_the_log(pg_url: str) -> None:
    owner = open_stores(pg_url)
    owner.log.append(row=sample_row("ORD-1"))
    with owner.db.engine.begin() as conn:
        conn.execute(
            text(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
                "'arbiter_test_service') THEN CREATE ROLE arbiter_test_service LOGIN; END IF; "
                "END $$"
            )
        )
        conn.execute(text("GRANT arbiter_writer TO arbiter_test_service"))
    owner.close()
    as_service = pg_url.replace("postgres@", "arbiter_test_service@", 1)
    stores = open_stores(as_service)  # start-up migrates: a no-op at head
    try:
        stores.log.append(row=sample_row("ORD-2"))
        stores.keys.create(name="svc", scopes=["decide"])
        assert stores.log.verify().ok and stores.log.count() == 2
        forbidden = [
            "UPDATE decisions SET outcome = 'deny'",
            "DELETE FROM decisions",
            "TRUNCATE decisions",
            "UPDATE admin_events SET actor = 'x'",
            "DELETE FROM admin_events",
        ]
        for statement in forbidden:
            with pytest.raises(DBAPIError, match="permission denied"):
                with stores.db.engine.begin() as conn:
                    conn.execute(text(statement))
    finally:
        stores.close()
    engine: Any = create_engine(pg_url)
    with engine.connect() as conn:
        grants = conn.execute(
            text(
                "SELECT privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = 'arbiter_writer' AND table_name = 'decisions'"
            )
        ).scalars()
        assert sorted(grants) == ["INSERT", "SELECT"]
    engine.dispose()
