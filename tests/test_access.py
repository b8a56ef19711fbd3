"""Who may read what, and how long a browser session lasts (issue 19)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from service.cli import app as cli
from service.log.models import UiSession
from tests.conftest import Api
from tests.test_cli import db  # noqa: F401  (fixture)
from tests.test_ui import login


async def _api(api_factory: Any, **overrides: Any) -> Any:
    a, cm = await api_factory(**overrides)
    for scope in ("metrics", "policy:read"):
        _, a.keys[scope] = a.app.state.services.stores.keys.create(name=scope, scopes=[scope])
    return a, cm


# --- cookies behind a TLS-terminating proxy -------------------------------------------


def _session_cookie(r: httpx.Response) -> str:
    return next(c for c in r.headers.get_list("set-cookie") if c.startswith("arb_session="))


async def _login_via(client: httpx.AsyncClient, key: str, **headers: str) -> httpx.Response:
    form = await client.get("/ui/login", headers=headers)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    # sent by hand: the client keeps a Secure cookie from going back over its plain http
    cookie = {"Cookie": f"arb_login_csrf={form.cookies.get('arb_login_csrf')}"}
    return await client.post(
        "/ui/login", data={"api_key": key, "csrf": csrf}, headers={**headers, **cookie}
    )


async def test_session_cookie_is_secure_when_configured(api_factory: Any) -> None:
    a, cm = await _api(api_factory, secure_cookies=True)
    try:
        r = await _login_via(a.client, a.keys["audit"])  # plain http, as a proxy forwards it
        assert r.status_code == 303 and "Secure" in _session_cookie(r)
    finally:
        await a.client.aclose()
        await cm.__aexit__(None, None, None)


@pytest.mark.parametrize(("peer", "secure"), [("10.0.0.5", True), ("10.9.9.9", False)])
async def test_session_cookie_secure_behind_a_trusted_proxy(
    api: Api, peer: str, secure: bool
) -> None:
    """What uvicorn --proxy-headers --forwarded-allow-ips does: the proxy's https counts."""
    app = ProxyHeadersMiddleware(api.app, trusted_hosts="10.0.0.5")
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://arbiter.test") as c:
        r = await _login_via(c, api.keys["audit"], **{"X-Forwarded-Proto": "https"})
        assert ("Secure" in _session_cookie(r)) is secure


def test_serve_passes_the_trusted_proxies_to_uvicorn(
    db: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setenv("ARBITER_FORWARDED_ALLOW_IPS", "10.0.0.5,10.0.0.6")
    from service.settings import get_settings

    get_settings.cache_clear()
    r = CliRunner().invoke(cli, ["serve"])
    assert r.exit_code == 0, r.output
    assert seen["proxy_headers"] is True and seen["forwarded_allow_ips"] == "10.0.0.5,10.0.0.6"


# --- session idle timeout -------------------------------------------------------------


def _age(api: Api, **shift: timedelta) -> None:
    """Move the session's times into the past, as if time had passed."""
    with Session(api.engine.log.db.engine) as s:
        row = s.exec(select(UiSession)).one()
        for column, delta in shift.items():
            value = getattr(row, column)
            value = value if value.tzinfo else value.replace(tzinfo=UTC)
            setattr(row, column, value - delta)
        s.add(row)
        s.commit()


def _expires(api: Api) -> datetime:
    with Session(api.engine.log.db.engine) as s:
        value = s.exec(select(UiSession)).one().expires_at
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_session_ends_after_idle_time_and_activity_extends_it(api_factory: Any) -> None:
    a, cm = await _api(api_factory, session_idle_minutes=30)
    try:
        await login(a, "audit")
        now = datetime.now(UTC)
        assert _expires(a) <= now + timedelta(minutes=31)  # idle limit, not 8 hours
        _age(a, expires_at=timedelta(minutes=29), created_at=timedelta(minutes=29))
        assert (await a.client.get("/ui/decisions")).status_code == 200  # activity...
        assert _expires(a) >= datetime.now(UTC) + timedelta(minutes=29)  # ...slides the limit
        _age(a, expires_at=timedelta(minutes=31), created_at=timedelta(minutes=31))
        r = await a.client.get("/ui/decisions")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    finally:
        await a.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_session_ends_after_its_hours_even_when_active(api_factory: Any) -> None:
    a, cm = await _api(api_factory, session_idle_minutes=30, session_hours=8)
    try:
        await login(a, "audit")
        _age(a, created_at=timedelta(hours=8, minutes=1))
        r = await a.client.get("/ui/decisions")
        assert r.status_code == 303
    finally:
        await a.client.aclose()
        await cm.__aexit__(None, None, None)


# --- /metrics and policy text ---------------------------------------------------------


async def test_metrics_can_require_a_key(api_factory: Any) -> None:
    a, cm = await _api(api_factory, metrics_require_key=True)
    try:
        assert (await a.client.get("/metrics")).status_code == 401
        assert (await a.client.get("/metrics", headers=a.auth("decide"))).status_code == 403
        for scope in ("metrics", "admin"):
            r = await a.client.get("/metrics", headers=a.auth(scope))
            assert r.status_code == 200 and "arbiter_decisions_total" in r.text
    finally:
        await a.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_metrics_open_by_default(api: Api) -> None:
    assert (await api.client.get("/metrics")).status_code == 200


async def test_policy_text_needs_a_scope_that_reads_policy(api_factory: Any) -> None:
    a, cm = await _api(api_factory)
    try:
        sha = a.engine.registry.live_specs()[0].sha256
        kind = a.engine.registry.live_specs()[0].kind
        urls = [
            "/v1/specs",
            f"/v1/specs/{kind}/versions",
            f"/v1/specs/{kind}/versions/{sha}",
            f"/v1/specs/{kind}/diff?from=live&to=live",
        ]
        for url in urls:
            r = await a.client.get(url, headers=a.auth("decide"))
            assert r.status_code == 403, url
            assert r.json()["error"]["details"]["required"] == [
                "policy:read",
                "policy:edit",
                "policy:publish",
                "audit",
                "review",
            ]
            for scope in ("policy:read", "audit", "review", "admin"):
                assert (await a.client.get(url, headers=a.auth(scope))).status_code == 200
        rollout = await a.client.get(f"/v1/specs/{kind}/rollout", headers=a.auth("decide"))
        assert rollout.status_code == 403
    finally:
        await a.client.aclose()
        await cm.__aexit__(None, None, None)
