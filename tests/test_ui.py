"""The web pages: login, CSRF, escaping, review form (HTTP level; the browser test drives it)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conftest import contract


async def login(api: Any, scope: str = "admin") -> None:
    form = await api.client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    r = await api.client.post(
        "/ui/login", data={"api_key": api.keys[scope], "csrf": csrf, "next": "/ui/decisions"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/decisions"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")


async def test_pages_need_login(api: Any) -> None:
    r = await api.client.get("/ui/decisions")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")


async def test_login_rejects_bad_keys_and_forged_forms(api: Any) -> None:
    form = await api.client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    r = await api.client.post("/ui/login", data={"api_key": "arb_wrong", "csrf": csrf})
    assert r.headers["location"] == "/ui/login?error=denied"
    r = await api.client.post("/ui/login", data={"api_key": api.keys["decide"], "csrf": csrf})
    assert r.headers["location"] == "/ui/login?error=denied"  # decide-only keys can't log in
    api.client.cookies.clear()
    r = await api.client.post("/ui/login", data={"api_key": api.keys["admin"], "csrf": "forged"})
    assert r.headers["location"] == "/ui/login?error=expired"


async def test_pages_render_and_escape_customer_text(api: Any) -> None:
    case = contract("returns.request")
    case["order"]["id"] = "ORD-XSS"
    case["request"]["items"][0].update(
        condition="new",
        customer_comment=("<script>alert('x')</script><img src=x onerror=alert(1)>"),
    )
    d = (await api.decide("returns", case)).json()
    await login(api)
    for url in (
        "/ui/decisions",
        f"/ui/decisions/{d['decision_id']}",
        "/ui/reviews",
        "/ui/specs",
        "/ui/audit",
        "/ui/decisions?order_id=ORD-XSS",
    ):
        r = await api.client.get(url)
        assert r.status_code == 200, url
        assert "<script>alert" not in r.text and "<img src=x" not in r.text
    detail = (await api.client.get(f"/ui/decisions/{d['decision_id']}")).text
    assert "&lt;script&gt;alert(" in detail
    sha = d["spec"]["sha256"]
    assert (await api.client.get(f"/ui/specs/returns/diff?from={sha}&to=live")).status_code == 200


async def test_review_form_needs_csrf_and_supersedes(api: Any) -> None:
    case = contract("returns.request")
    case["request"]["items"][0].update(reason="defective", condition="new", customer_comment=None)
    d = (await api.decide("returns", case)).json()
    await login(api)
    page = (await api.client.get(f"/ui/decisions/{d['decision_id']}")).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    url = f"/ui/decisions/{d['decision_id']}/review"
    forged = await api.client.post(url, data={"csrf": "nope", "note": "x", "action": "accept"})
    assert forged.status_code == 403
    bad = await api.client.post(
        url, data={"csrf": csrf, "note": "x", "action": "override", "verdict_json": "{not json"}
    )
    assert "not%20JSON" in bad.headers["location"]
    # the proposal is 'needs_review' (R5): there is nothing to accept, a verdict is needed
    assert 'value="accept"' not in page
    refused = await api.client.post(
        url, data={"csrf": csrf, "note": "Checked the photos", "action": "accept"}
    )
    assert "decide" in refused.headers["location"]
    verdict = {
        **{k: v for k, v in d["verdict"].items() if k != "total_refund"},
        "outcome": "approve",
        "items": [
            {
                "sku": "JKT-RAIN-M",
                "quantity_approved": 1,
                "refund_amount": "129.00",
                "disposition": "refurbish",
            }
        ],
        "refund_method": "original_payment",
        "refund_timing": "on_carrier_scan",
        "label_required": True,
    }
    ok = await api.client.post(
        url,
        data={
            "csrf": csrf,
            "note": "Checked the photos",
            "action": "override",
            "verdict_json": json.dumps(verdict),
        },
    )
    assert ok.status_code == 303, ok.text
    page = (await api.client.get(f"/ui/decisions/{d['decision_id']}")).text
    assert "Superseded by a review" in page and "Checked the photos" in page
    again = await api.client.post(url, data={"csrf": csrf, "note": "x", "action": "accept"})
    assert "already" in again.headers["location"]
