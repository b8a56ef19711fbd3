"""Headless Chromium (Debian's) drives the pages: login, filter, open, review, escaping."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.settings import PROJECT_ROOT
from tests.conftest import contract, make_settings

CHROMIUM = "/usr/bin/chromium"
SHOTS = PROJECT_ROOT / "docs" / "screenshots"


def _browser_or_skip() -> None:
    why = None
    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            why = "playwright is not installed (pip install -e '.[dev]')"
    if why:
        if os.environ.get("ARBITER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ARBITER_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A real uvicorn server in a thread, on loopback, with seeded decisions and keys."""
    _browser_or_skip()
    settings = make_settings(f"sqlite:///{tmp_path / 'ui.db'}", spec_poll_s=0)
    app = create_app(settings)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    keys = app.state.services.stores.keys
    _, admin = keys.create(name="browser", scopes=["admin"])
    _, decide = keys.create(name="seed", scopes=["decide"])
    _, reviewer = keys.create(name="reviewer", scopes=["review"])
    h = {"Authorization": f"Bearer {decide}"}
    with httpx.Client(base_url=base, headers=h) as c:
        for i in range(6):
            case = contract("returns.request")
            case["order"]["id"] = f"ORD-{1000 + i}"
            case["request"]["items"][0]["customer_comment"] = None
            c.post("/v1/decisions/returns", json=case).raise_for_status()
        xss = contract("returns.request")
        xss["order"]["id"] = "ORD-XSS"
        xss["request"]["items"][0].update(
            reason="defective",
            condition="new",
            customer_comment="<script>window.pwned=1;alert('pwned')</script> still sealed?",
        )
        c.post("/v1/decisions/returns", json=xss).raise_for_status()
        c.post("/v1/decisions/exceptions", json=contract("exceptions.request")).raise_for_status()
        c.post("/v1/decisions/routing", json=contract("routing.request")).raise_for_status()
    yield {"base": base, "admin": admin, "review": reviewer}
    srv.should_exit = True
    thread.join(timeout=10)


def test_auditor_and_reviewer_in_a_browser(server: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shots = SHOTS if os.environ.get("ARBITER_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    base = server["base"]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        page.goto(f"{base}/ui/decisions")
        assert "/ui/login" in page.url
        page.screenshot(path=str(shots / "login.png"))
        page.fill("#api_key", server["admin"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/decisions")
        page.screenshot(path=str(shots / "decisions.png"), full_page=True)

        page.fill("input[name=order_id]", "ORD-XSS")
        page.click("text=Filter")
        page.wait_for_url("**order_id=ORD-XSS**")
        rows = page.locator("table tr td a")
        assert rows.count() == 1
        rows.first.click()
        page.wait_for_load_state()
        body = page.inner_text("body")
        assert "<script>window.pwned=1;alert('pwned')</script>" in body  # shown as text
        assert page.evaluate("window.pwned") is None and dialogs == []
        page.screenshot(path=str(shots / "decision.png"), full_page=True)

        page.click("text=Review queue")
        page.wait_for_url(f"{base}/ui/reviews")
        page.screenshot(path=str(shots / "reviews.png"), full_page=True)

        # a review-only key, without audit:pii, works the queue
        page.click("header button")
        page.wait_for_url("**/ui/login")
        page.goto(f"{base}/ui/login?next=/ui/reviews")
        page.fill("#api_key", server["review"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/reviews")
        page.click("td a:text-is('Review')")
        page.wait_for_load_state()
        form = page.locator("textarea[name=verdict_json]")
        prefilled = json.loads(form.input_value())
        assert "[masked]" not in json.dumps(prefilled) and "customer_message" not in prefilled
        assert page.locator("button[value=accept]").count() == 0  # 'needs_review' (R5)
        verdict = {
            **prefilled,
            "outcome": "approve",
            "items": [
                {
                    "sku": "JKT-RAIN-M",
                    "quantity_approved": 1,
                    "refund_amount": "999.00",
                    "disposition": "refurbish",
                }
            ],
            "refund_method": "original_payment",
            "refund_timing": "on_carrier_scan",
            "label_required": True,
        }
        form.fill(json.dumps(verdict))
        page.fill("#note", "Photo shows it is dead on arrival; approve.")
        page.click("button[value=override]")
        page.wait_for_load_state()
        body = page.inner_text("body")
        assert "Not recorded" in body and "999.00 → 129.00" in body
        repaired = json.loads(page.locator("textarea[name=verdict_json]").input_value())
        assert repaired["items"][0]["refund_amount"] == "129.00"
        page.fill("#note", "Photo shows it is dead on arrival; approve at the price paid.")
        page.click("button[value=override]")
        page.wait_for_load_state()
        assert "Superseded by a review" in page.inner_text("body")
        page.goto(f"{base}/ui/reviews")
        assert "Nothing waits for review." in page.inner_text("body")
        page.click("header button")
        page.wait_for_url("**/ui/login")
        page.fill("#api_key", server["admin"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/decisions")

        page.goto(f"{base}/ui/audit")
        assert "intact" in page.inner_text("body")
        page.screenshot(path=str(shots / "audit.png"), full_page=True)
        page.goto(f"{base}/ui/specs")
        page.screenshot(path=str(shots / "specs.png"), full_page=True)
        page.click("text=diff with live >> nth=0")
        page.wait_for_load_state()
        assert "what changed" in page.inner_text("body")
        browser.close()
