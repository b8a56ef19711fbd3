"""The hash-chained decision log on SQLite and PostgreSQL, and `arbiter log verify`."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from service.cli import app as cli
from service.engine import Engine
from service.services import build_services
from tests.conftest import contract, make_settings


def decide_many(engine: Engine, n: int) -> list[str]:
    async def run() -> list[str]:
        ids = []
        for i in range(n):
            data = contract("returns.request")
            data["order"]["id"] = f"ORD-{i}"
            case = engine.parse_case("returns", data)
            ids.append((await engine.decide(kind="returns", case=case, caller="t")).decision_id)
        return ids

    return asyncio.run(run())


@pytest.fixture
def engine(db_url: str) -> Any:
    e = build_services(make_settings(db_url)).require_engine()
    yield e
    e.log.db.close()


def test_chain_verifies_after_many_decisions(engine: Engine) -> None:
    ids = decide_many(engine, 60)
    report = engine.log.verify()
    assert report.ok and report.checked == 60
    assert report.head is not None and report.head["count"] == 60
    assert len(set(ids)) == 60


def test_edited_row_is_named(engine: Engine) -> None:
    ids = decide_many(engine, 10)
    with engine.log.db.engine.begin() as conn:
        conn.execute(text("UPDATE decisions SET outcome = 'deny' WHERE id = :id"), {"id": ids[4]})
    report = engine.log.verify()
    assert not report.ok and report.checked == 4
    assert report.first_bad is not None and report.first_bad["id"] == ids[4]
    assert "altered" in report.first_bad["problem"]


def test_deleted_row_is_named(engine: Engine) -> None:
    ids = decide_many(engine, 10)
    with engine.log.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM decisions WHERE id = :id"), {"id": ids[6]})
    report = engine.log.verify()
    assert not report.ok and report.first_bad is not None
    assert report.first_bad["id"] == ids[7]
    assert "removed or altered" in report.first_bad["problem"]


def test_truncation_is_caught_by_the_head_checkpoint(engine: Engine) -> None:
    ids = decide_many(engine, 5)
    with engine.log.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM decisions WHERE id = :id"), {"id": ids[-1]})
    report = engine.log.verify()
    assert not report.ok and report.checked == 4
    assert "its head expects" in report.first_bad["problem"]  # type: ignore[index]


def test_concurrent_appends_form_one_linear_chain(engine: Engine) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: decide_many(engine, 5), range(8)))
    report = engine.log.verify()
    assert report.ok and report.checked == 40


def test_cli_log_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("ARBITER_DATABASE_URL", url)
    from service.settings import get_settings

    get_settings.cache_clear()
    e = build_services(make_settings(url)).require_engine()
    ids = decide_many(e, 20)
    runner = CliRunner()
    ok = runner.invoke(cli, ["log", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "chain OK" in ok.output and "20 records" in ok.output
    with e.log.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE decisions SET rationale = 'edited' WHERE id = :id"), {"id": ids[11]}
        )
    bad = runner.invoke(cli, ["log", "verify"])
    assert bad.exit_code == 1
    assert ids[11] in bad.output and "BROKEN" in bad.output
    e.log.db.close()
    get_settings.cache_clear()
