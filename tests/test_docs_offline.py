"""/docs and /redoc render in a browser with every non-loopback request refused: their
assets come from the installed package, and Swagger UI offers Authorize for the key."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn

from service.app import create_app
from tests.conftest import make_settings
from tests.test_browser import CHROMIUM, _browser_or_skip, _free_port

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


@pytest.fixture
def docs_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    _browser_or_skip()
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'docs.db'}", spec_poll_s=0))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    _, key = app.state.services.stores.keys.create(name="docs", scopes=["audit"])
    yield {"base": f"http://127.0.0.1:{port}", "key": key}
    srv.should_exit = True
    thread.join(timeout=10)


def test_docs_render_with_the_network_off(docs_server: dict[str, Any]) -> None:
    from playwright.sync_api import Route, sync_playwright

    base = docs_server["base"]
    blocked: list[str] = []
    problems: list[str] = []

    def offline(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", offline)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(f"{base}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
        assert "Arbiter" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/v1/decisions/returns" in t for t in paths), paths
        authorize = page.locator("button.authorize")
        assert authorize.count() == 1
        authorize.click()
        page.wait_for_selector(".auth-container input", timeout=10_000)
        page.fill(".auth-container input", docs_server["key"])
        page.click(".auth-btn-wrapper button.authorize")
        page.locator(".auth-btn-wrapper button", has_text="Logout").wait_for(timeout=10_000)
        page.click(".auth-btn-wrapper button.btn-done")
        assert page.locator("button.authorize.locked").count() == 1  # the key is in use

        page.goto(f"{base}/redoc")
        page.wait_for_selector("h1", timeout=30_000)
        assert "Arbiter" in page.inner_text("h1")
        assert "Decide a returns case" in page.inner_text("body")
        browser.close()

    assert blocked == [], f"the docs reached outside the machine: {blocked}"
    # ReDoc's "powered by" logo points at its CDN: the page's CSP refuses it (nothing leaves
    # the machine, nothing else is missing)
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    assert [m for m in problems if ("Content Security Policy" in m and logo not in m)] == []
    assert [m for m in problems if "net::" in m] == []
