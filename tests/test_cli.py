"""The `arbiter` command line: decide, keys create."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.log.store import Store
from service.settings import get_settings
from tests.conftest import FIXTURES


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("ARBITER_DATABASE_URL", url)
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
    store = Store(url=db)
    assert store.count() == 1
    store.close()


def test_decide_bad_case_names_the_field(db: str, tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "contract" / "returns.request.json").read_text())
    data["request"]["items"][0]["quantity"] = 0
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(data))
    r = CliRunner().invoke(cli, ["decide", "returns", str(f)])
    assert r.exit_code == 2
    assert "request.items.0.quantity" in r.output
    store = Store(url=db)
    store.create_all()
    assert store.count() == 0
    store.close()


def test_decide_unreadable_file(db: str, tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{nope")
    r = CliRunner().invoke(cli, ["decide", "returns", str(f)])
    assert r.exit_code == 2 and "cannot read a JSON case" in r.output


def test_keys_create(db: str) -> None:
    r = CliRunner().invoke(cli, ["keys", "create", "--scopes", "decide,audit", "--name", "oms"])
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip().splitlines()[0]
    store = Store(url=db)
    row = store.key_for_secret(secret=secret)
    assert row is not None and row.scopes == ["audit", "decide"] and row.key_hash != secret
    store.close()
    bad = CliRunner().invoke(cli, ["keys", "create", "--scopes", "root"])
    assert bad.exit_code == 2 and "unknown scopes" in bad.output
