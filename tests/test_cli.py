"""The `arbiter` command line: decide, keys create."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.log.stores import open_stores
from service.settings import get_settings
from tests.conftest import FIXTURES


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("ARBITER_DATABASE_URL", url)
    monkeypatch.setenv("ARBITER_ADMIN_KEY_FILE", str(tmp_path / "admin.key"))  # not the cwd
    monkeypatch.delenv("ARBITER_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("ARBITER_LLM_API_KEY", raising=False)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_decide_prints_the_envelope(db: str) -> None:
    r = CliRunner().invoke(
        cli, ["decide", "returns", str(FIXTURES / "contract" / "returns.request.json")]
    )
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["outcome"] == "approve" and body["fallback_reason"] == "llm_disabled"
    stores = open_stores(db, migrate=False)
    assert stores.log.count() == 1
    stores.close()


def test_decide_bad_case_names_the_field(db: str, tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "contract" / "returns.request.json").read_text())
    data["request"]["items"][0]["quantity"] = 0
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(data))
    r = CliRunner().invoke(cli, ["decide", "returns", str(f)])
    assert r.exit_code == 2
    assert "request.items.0.quantity" in r.output
    stores = open_stores(db)
    assert stores.log.count() == 0
    stores.close()


def test_decide_unreadable_file(db: str, tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{nope")
    r = CliRunner().invoke(cli, ["decide", "returns", str(f)])
    assert r.exit_code == 2 and "cannot read a JSON case" in r.output


def test_keys_create(db: str) -> None:
    r = CliRunner().invoke(cli, ["keys", "create", "--scopes", "decide,audit", "--name", "oms"])
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip().splitlines()[0]
    stores = open_stores(db, migrate=False)
    row = stores.keys.by_secret(secret=secret)
    assert row is not None and row.scopes == ["audit", "decide"] and row.key_hash != secret
    stores.close()
    bad = CliRunner().invoke(cli, ["keys", "create", "--scopes", "root"])
    assert bad.exit_code == 2 and "unknown scopes" in bad.output


def test_log_export_only_reads(db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Streaming rows needs no migration, no spec lint and no LLM client."""
    ok = CliRunner().invoke(
        cli, ["decide", "returns", str(FIXTURES / "contract" / "returns.request.json")]
    )
    assert ok.exit_code == 0, ok.output

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("log export must only read the log")

    from service.llm.client import LLMClient
    from service.log.db import Database
    from service.specs.registry import SpecRegistry

    monkeypatch.setattr(Database, "migrate", forbidden)
    monkeypatch.setattr(SpecRegistry, "load", forbidden)
    monkeypatch.setattr(LLMClient, "__init__", forbidden)
    monkeypatch.setenv("ARBITER_LLM_BASE_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    out = tmp_path / "log.jsonl"
    r = CliRunner().invoke(cli, ["log", "export", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 1
