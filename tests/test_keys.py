"""API keys: list, revoke, rotate, expiry and last use; the first admin key and the database
password never reach a log."""

from __future__ import annotations

import io
import logging
import re
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.http import SecretsFilter
from service.log.admin import AdminLog
from service.log.models import utcnow
from service.log.stores import open_stores
from service.settings import get_settings
from tests.conftest import contract
from tests.test_cli import db  # noqa: F401  (fixture)

SECRET = re.compile(r"arb_[A-Za-z0-9_-]{20,}")


def test_keys_list_revoke_and_rotate(db: str) -> None:  # noqa: F811
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "--scopes", "decide", "--name", "oms"])
    assert made.exit_code == 0, made.output
    old_secret = SECRET.search(made.stdout).group(0)  # type: ignore[union-attr]
    stores = open_stores(db)
    old = stores.keys.by_secret(secret=old_secret)
    assert old is not None and old.last_used_at is not None  # that lookup was a use

    listed = runner.invoke(cli, ["keys", "list"])
    assert listed.exit_code == 0, listed.output
    assert old.id in listed.stdout and "oms" in listed.stdout and "active" in listed.stdout
    assert not SECRET.search(listed.output)  # never a secret, nor a hash
    assert old.key_hash not in listed.output

    rotated = runner.invoke(cli, ["keys", "rotate", old.id, "--grace-minutes", "10"])
    assert rotated.exit_code == 0, rotated.output
    new_secret = SECRET.search(rotated.stdout).group(0)  # type: ignore[union-attr]
    new = stores.keys.by_secret(secret=new_secret)
    assert new is not None and new.id != old.id
    assert (new.name, new.scopes) == ("oms", ["decide"])
    assert stores.keys.by_secret(secret=old_secret) is not None  # the grace period

    revoked = runner.invoke(cli, ["keys", "revoke", old.id])
    assert revoked.exit_code == 0, revoked.output
    assert stores.keys.by_secret(secret=old_secret) is None
    assert stores.keys.by_secret(secret=new_secret) is not None
    listed = runner.invoke(cli, ["keys", "list"]).stdout
    assert re.search(rf"{old.id}.*revoked", listed) and re.search(rf"{new.id}.*active", listed)

    assert runner.invoke(cli, ["keys", "revoke", "key_nope"]).exit_code == 2
    assert runner.invoke(cli, ["keys", "revoke", old.id]).exit_code == 2  # already revoked
    assert runner.invoke(cli, ["keys", "rotate", old.id]).exit_code == 2  # revoked: no rotate
    # every change is an admin-chain event: the key rows match the chain
    events = [(e.action, e.subject) for e in AdminLog(db=stores.db).iter_rows()]
    assert ("key.expire", old.id) in events and ("key.revoke", old.id) in events
    assert ("key.create", new.id) in events
    assert AdminLog(db=stores.db).untraced() is None
    stores.close()


def test_rotation_without_grace_stops_the_old_key_at_once(db: str) -> None:  # noqa: F811
    stores = open_stores(db)
    row, secret = stores.keys.create(name="n", scopes=["audit"])
    _, fresh = stores.keys.rotate(key_id=row.id)
    assert stores.keys.by_secret(secret=secret) is None
    assert stores.keys.by_secret(secret=fresh) is not None
    stores.close()


async def test_expired_keys_are_refused_and_use_is_recorded_once_a_minute(api: Any) -> None:
    keys = api.app.state.services.stores.keys
    _, expired = keys.create(name="old", scopes=["decide"], expires_at=utcnow())
    row, live = keys.create(name="live", scopes=["decide"], expires_at=utcnow() + timedelta(days=1))
    case = contract("returns.request")
    r = await api.client.post(
        "/v1/decisions/returns", json=case, headers={"Authorization": f"Bearer {expired}"}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert keys.get(key_id=row.id).last_used_at is None
    for _ in range(2):
        r = await api.client.post(
            "/v1/decisions/returns", json=case, headers={"Authorization": f"Bearer {live}"}
        )
        assert r.status_code == 200
        if _ == 0:
            first = keys.get(key_id=row.id).last_used_at
            assert first is not None
    assert keys.get(key_id=row.id).last_used_at == first  # no write per request


def test_first_admin_key_goes_to_a_0600_file_when_stdout_is_no_terminal(
    db: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    key_file = tmp_path / "admin.key"
    monkeypatch.setenv("ARBITER_ADMIN_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    caplog.set_level(logging.DEBUG)
    r = CliRunner().invoke(cli, ["serve"])
    assert r.exit_code == 0, r.output
    secret = key_file.read_text().strip()
    assert SECRET.fullmatch(secret)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert secret not in r.output and secret not in caplog.text
    assert str(key_file) in r.output
    stores = open_stores(db)
    assert stores.keys.by_secret(secret=secret).scopes == ["admin"]  # type: ignore[union-attr]
    stores.close()


def test_first_admin_key_is_printed_on_a_terminal_only(
    db: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import uvicorn

    import service.cli

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    monkeypatch.setattr(service.cli, "on_terminal", lambda: True)
    monkeypatch.setenv("ARBITER_ADMIN_KEY_FILE", str(tmp_path / "admin.key"))
    get_settings.cache_clear()
    caplog.set_level(logging.DEBUG)
    r = CliRunner().invoke(cli, ["serve"])
    assert r.exit_code == 0, r.output
    secret = SECRET.search(r.stdout).group(0)  # type: ignore[union-attr]
    assert secret not in caplog.text
    assert not (tmp_path / "admin.key").exists()


def test_database_password_never_logged(
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import uvicorn

    password = "hunter2-not-logged"
    url = pg_url.replace("://postgres@", f"://postgres:{password}@")  # trust: any password
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    monkeypatch.setenv("ARBITER_DATABASE_URL", url)
    monkeypatch.setenv("ARBITER_ADMIN_KEY_FILE", str(tmp_path / "admin.key"))
    get_settings.cache_clear()
    caplog.set_level(logging.DEBUG)
    r = CliRunner().invoke(cli, ["serve"])
    get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    assert "postgres:***@" in r.output  # the start-up line
    assert password not in r.output and password not in caplog.text
    # an error quoting the URL, whoever logs it, is scrubbed by the serve log filter
    monkeypatch.setenv("ARBITER_DATABASE_URL", url.replace(pg_url.rsplit(":", 1)[1], "1/x"))
    get_settings.cache_clear()
    failed = CliRunner().invoke(cli, ["serve"])
    get_settings.cache_clear()
    assert failed.exit_code != 0
    assert password not in failed.output and password not in caplog.text
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretsFilter([password]))
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    try:
        raise RuntimeError(f"could not connect to {url}")
    except RuntimeError:
        logger.exception("failed with %s", url)
    finally:
        logger.removeHandler(handler)
    assert "***" in stream.getvalue() and password not in stream.getvalue()
