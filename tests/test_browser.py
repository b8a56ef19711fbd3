"""Headless Chromium (Debian's) drives the pages: login, filter, open, review, escaping."""

from __future__ import annotations

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
    _, ops = keys.create(name="returns-ops", scopes=["policy:edit", "policy:publish"])
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
    yield {"base": base, "admin": admin, "review": reviewer, "ops": ops, "decide": decide}
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
        # a form built from the verdict schema, not JSON; masked fields are not in it
        assert page.locator("textarea[name=verdict_json]").count() == 0
        assert page.locator("[name='v:customer_message']").count() == 0
        assert "[masked]" not in page.inner_html("form[action$='/review']")
        assert page.locator("button[value=accept]").count() == 0  # 'needs_review' (R5)
        page.select_option("[name='v:outcome']", "approve")
        page.fill("[name='v:items.0.quantity_approved']", "one")  # a slip of the keyboard
        page.fill("[name='v:items.0.refund_amount']", "999.00")
        page.select_option("[name='v:items.0.disposition']", "refurbish")
        page.select_option("[name='v:refund_method']", "original_payment")
        page.select_option("[name='v:refund_timing']", "on_carrier_scan")
        page.select_option("[name='v:label_required']", "true")
        note = "Photo shows it is dead on arrival; approve."
        page.fill("#note", note)
        page.click("button[value=override]")
        page.wait_for_load_state()
        assert "Not recorded" in page.inner_text("body")
        assert page.input_value("#note") == note  # nothing typed is lost
        assert page.input_value("[name='v:items.0.quantity_approved']") == "one"
        assert page.input_value("[name='v:items.0.refund_amount']") == "999.00"
        assert page.input_value("[name='v:outcome']") == "approve"
        assert page.locator(".field-error").count() == 1
        page.screenshot(path=str(shots / "review-form.png"), full_page=True)
        page.fill("[name='v:items.0.quantity_approved']", "1")
        page.click("button[value=override]")
        page.wait_for_load_state()
        body = page.inner_text("body")
        assert "Not recorded" in body and "999.00 → 129.00" in body  # the guard repairs it
        assert page.input_value("[name='v:items.0.refund_amount']") == "129.00"
        assert page.input_value("#note") == note
        page.click("button[value=override]")  # confirm the repaired verdict
        page.wait_for_load_state()
        assert "Superseded by a review" in page.inner_text("body")
        assert "by reviewer at" in page.inner_text("body")  # the key's name, not its id
        page.goto(f"{base}/ui/reviews?status=resolved")
        resolved = page.inner_text("table")
        assert "reviewer" in resolved and note in resolved and "approve" in resolved
        page.goto(f"{base}/ui/reviews")
        assert "Nothing waits for review." in page.inner_text("body")
        page.click("header button")
        page.wait_for_url("**/ui/login")
        page.fill("#api_key", server["admin"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/decisions")

        page.goto(f"{base}/ui/audit")
        assert "intact" in page.inner_text("body")
        # one day of data: one bar of normal size among 14 days, not one giant bar
        bars = page.locator("svg rect")
        assert bars.count() == 14
        today = bars.nth(13).bounding_box()
        chart = page.locator("svg").bounding_box()
        assert today is not None and chart is not None
        assert today["width"] < chart["width"] / 10 and today["height"] <= 220
        label = page.locator("svg text").last.bounding_box()
        assert label is not None and label["height"] < 30
        page.screenshot(path=str(shots / "audit.png"), full_page=True)
        for link, first in (("CSV", "seq"), ("JSON lines", "{")):
            with page.expect_download() as download:  # the session's cookie, no API key
                page.click(f"a:text-is('{link}')")
            text = Path(download.value.path()).read_text()
            assert text.startswith(first) if first == "{" else "," in text.splitlines()[0]
            assert len(text.strip().splitlines()) >= 9
        page.goto(f"{base}/ui/specs")
        page.screenshot(path=str(shots / "specs.png"), full_page=True)
        assert "diff with live" not in page.inner_text("#serving")  # all live: nothing to diff
        page.click("#serving >> text=text >> nth=0")
        page.wait_for_load_state()
        assert "version 1" in page.inner_text("h1") and "live" in page.inner_text("h1")
        assert page.locator(".clause code").count() > 0  # clause Markdown is rendered
        assert "`" not in page.inner_text(".clause >> nth=0")
        browser.close()


def test_an_ops_expert_changes_the_return_window_in_a_browser(
    server: dict[str, Any], tmp_path: Path
) -> None:
    """An ops-only key (policy:edit, policy:publish) edits the return window, sees lint
    fail on a defect window shorter than it, fixes it, runs the suite, shadows, promotes;
    a decision made afterwards cites the new version. No file is written."""
    from playwright.sync_api import sync_playwright

    shots = SHOTS if os.environ.get("ARBITER_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    base = server["base"]
    on_disk = (PROJECT_ROOT / "specs" / "returns.md").read_text()
    late = contract("returns.request")  # change of mind on day 38: denied at 30 days
    late["order"]["id"] = "ORD-LATE"
    late["request"]["requested_at"] = "2026-11-13T10:00:00Z"
    late["request"]["items"] = [
        {"sku": "JKT-RAIN-M", "quantity": 1, "reason": "changed_mind", "condition": "new"}
    ]
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {server['decide']}"})
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(180_000)  # the eval suite runs twice on a loaded machine
        page.goto(f"{base}/ui/login?next=/ui/specs")
        page.fill("#api_key", server["ops"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/specs")
        page.click("#edit-returns")
        page.wait_for_url("**/ui/specs/returns/edit")
        text = page.input_value("#spec-text")
        edited = (
            text.replace("version: 1", "version: 2", 1)
            .replace("return_window_days: 30", "return_window_days: 45", 1)
            .replace("defect_window_days: 90", "defect_window_days: 40", 1)
        )
        page.fill("#spec-text", edited)
        page.click("button[value=save]")
        page.wait_for_selector("#lint-errors")
        errors = page.inner_text("#lint-errors")
        assert "line 11" in errors and "shorter than return_window_days (45)" in errors
        assert "defect_window_days" in page.inner_text("#numbered .finding")
        page.screenshot(path=str(shots / "editor-lint.png"), full_page=True)

        page.fill("#spec-text", edited.replace("defect_window_days: 40", "defect_window_days: 90"))
        page.click("button[value=save]")
        page.wait_for_url("**/ui/specs/returns/drafts/**")
        sha = page.url.rsplit("/", 1)[1].split("?")[0]
        assert "return_window_days" in page.inner_text("#param-diff")

        page.click("#run-eval")
        page.wait_for_selector("#eval-result")
        assert "r1-day-31" in page.inner_text("#moved")  # the case the change moves
        page.click("#start-shadow")
        page.wait_for_selector("#done")
        assert api.post("/v1/decisions/returns", json=late).json()["outcome"] == "deny"
        for _ in range(100):  # the shadow judges it off the request path
            page.reload()
            if "of 1 decision" in page.inner_text("#agreement"):
                break
            time.sleep(0.2)
        assert "0.0 %" in page.inner_text("#agreement")  # 45 days approve what 30 deny
        assert page.locator("#agreement-chart rect").count() == 1
        page.screenshot(path=str(shots / "editor-draft.png"), full_page=True)

        page.check("#accept-moved")
        page.click("#promote")
        page.wait_for_selector("#done")
        assert "promoted" in page.inner_text("#done")
        browser.close()
    after = api.post("/v1/decisions/returns", json=late).json()
    assert after["spec"] == {"name": "returns", "version": "2", "sha256": sha}
    assert after["outcome"] == "approve"
    assert (PROJECT_ROOT / "specs" / "returns.md").read_text() == on_disk
    api.close()
