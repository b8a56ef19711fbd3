"""The web pages: login, CSRF, escaping, review form (HTTP level; the browser test drives it)."""

from __future__ import annotations

import html
import re
from typing import Any

from tests.conftest import contract


def form_values(verdict: dict[str, Any], prefix: str = "v:") -> dict[str, str]:
    """A verdict as the review form posts it: one field per value, named by its path;
    lists of plain values comma-separated, booleans "true"/"false", null empty."""
    out: dict[str, str] = {}
    for key, value in verdict.items():
        name = prefix + key
        if isinstance(value, dict):
            out.update(form_values(value, name + "."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                out.update(form_values(item, f"{name}.{i}."))
        elif isinstance(value, list):
            out[name] = ", ".join(map(str, value))
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = "" if value is None else str(value)
    return out


def page_form(page: str) -> dict[str, str]:
    """The verdict fields of the review form on a page, as the browser would post them."""
    form = page[page.index('id="review"') :]
    fields = {
        m["name"]: html.unescape(m["value"])
        for m in re.finditer(r'<input[^>]*name="(?P<name>v:[^"]+)" value="(?P<value>[^"]*)"', form)
    }
    for m in re.finditer(
        r'<textarea[^>]*name="(?P<name>v:[^"]+)"[^>]*>(?P<value>.*?)</textarea>', form, re.S
    ):
        fields[m["name"]] = html.unescape(m["value"])
    for m in re.finditer(
        r'<select[^>]*name="(?P<name>v:[^"]+)"[^>]*>(?P<options>.*?)</select>', form, re.S
    ):
        chosen = re.search(r'<option value="([^"]*)" selected>', m["options"])
        fields[m["name"]] = html.unescape(chosen.group(1)) if chosen else ""
    return fields


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
    assert "verdict_json" not in page and 'name="v:items.0.refund_amount"' in page
    # the proposal is 'needs_review' (R5): there is nothing to accept, a verdict is needed
    assert 'value="accept"' not in page
    refused = await api.client.post(
        url, data={"csrf": csrf, "note": "Checked the photos", "action": "accept"}
    )
    assert refused.status_code == 422 and "must decide the case" in refused.text
    assert ">Checked the photos</textarea>" in refused.text  # the note is kept
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
            **form_values(verdict),
        },
    )
    assert ok.status_code == 303, ok.text
    page = (await api.client.get(f"/ui/decisions/{d['decision_id']}")).text
    assert "Superseded by a review" in page and "Checked the photos" in page
    again = await api.client.post(url, data={"csrf": csrf, "note": "x", "action": "accept"})
    assert "already" in again.headers["location"]


async def open_for_review(api: Any) -> tuple[dict[str, Any], str, str]:
    """A decision that needs review (R5), its page for a reviewer, and the form's CSRF."""
    case = contract("returns.request")
    case["request"]["items"][0].update(reason="defective", condition="new", customer_comment=None)
    d = (await api.decide("returns", case)).json()
    await login(api, "review")
    page = (await api.client.get(f"/ui/decisions/{d['decision_id']}")).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    return d, page, csrf


async def test_review_form_keeps_the_note_and_every_edit_on_a_validation_error(api: Any) -> None:
    d, page, csrf = await open_for_review(api)
    sent = page_form(page)
    assert sent["v:outcome"] == "needs_review" and sent["v:items.0.sku"] == "JKT-RAIN-M"
    sent.update(
        {
            "v:outcome": "approve",
            "v:items.0.quantity_approved": "one",  # not a number
            "v:items.0.refund_amount": "12,50",  # not money
            "v:refund_method": "original_payment",
        }
    )
    note = "Photos show a torn seam <b>on arrival</b>"
    r = await api.client.post(
        f"/ui/decisions/{d['decision_id']}/review",
        data={"csrf": csrf, "note": note, "action": "override", **sent},
    )
    assert r.status_code == 422, r.text
    assert api.engine.log.superseding(decision_id=d["decision_id"]) is None
    back = page_form(r.text)
    assert (
        back["v:items.0.quantity_approved"] == "one" and back["v:items.0.refund_amount"] == "12,50"
    )
    assert back["v:outcome"] == "approve" and back["v:refund_method"] == "original_payment"
    assert f">{html.escape(note, quote=False)}</textarea>" in r.text  # the note, escaped, kept
    assert r.text.count('class="field-error"') == 2  # each bad field says why, beside it
    assert "items.0.refund_amount" in r.text
    # an empty note is asked for without losing the edits either
    r = await api.client.post(
        f"/ui/decisions/{d['decision_id']}/review",
        data={"csrf": csrf, "note": " ", "action": "override", **sent},
    )
    assert r.status_code == 422 and "write a note" in r.text
    assert page_form(r.text)["v:items.0.refund_amount"] == "12,50"


async def test_resolved_reviews_show_reviewer_note_and_final_verdict(api: Any) -> None:
    d, page, csrf = await open_for_review(api)
    sent = {
        **page_form(page),
        "v:outcome": "approve",
        "v:items.0.quantity_approved": "1",
        "v:items.0.refund_amount": "129.00",
        "v:items.0.disposition": "refurbish",
        "v:refund_method": "original_payment",
        "v:refund_timing": "on_carrier_scan",
        "v:label_required": "true",
    }
    r = await api.client.post(
        f"/ui/decisions/{d['decision_id']}/review",
        data={"csrf": csrf, "note": "Seam torn on arrival", "action": "override", **sent},
    )
    assert r.status_code == 303, r.text
    listed = (await api.client.get("/ui/reviews?status=resolved")).text
    assert "test review" in listed  # the reviewer's key name, not its id
    assert "Seam torn on arrival" in listed
    assert re.search(
        r'class="final"><a href="/ui/decisions/dec_[^"]+"><span class="pill approve">', listed
    )
    decision = (await api.client.get(f"/ui/decisions/{d['decision_id']}")).text
    assert "by test review at" in decision and "test decide" in decision  # names, not ids
    assert ">test review</span>" in decision  # the header too


async def test_audit_chart_with_one_day_of_data_keeps_its_scale(api: Any) -> None:
    await api.decide("returns", contract("returns.request"))
    await login(api, "audit")
    page = (await api.client.get("/ui/audit")).text
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert 'viewBox="0 0 560 140"' in svg  # 14 days wide, whatever the data
    bars = re.findall(r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"', svg)
    assert len(bars) == 14 and {b[2] for b in bars} == {"28"}
    assert [int(b[3]) for b in bars].count(0) == 13 and int(bars[-1][3]) == 100  # today's


async def test_export_links_work_from_the_session(api: Any) -> None:
    await api.decide("returns", contract("returns.request"))
    await login(api, "audit")  # no bearer key: the cookie only
    page = (await api.client.get("/ui/audit")).text
    links = re.findall(r'href="(/ui/audit/export\?format=(?:csv|jsonl))"', page)
    assert len(links) == 2
    for link in links:
        r = await api.client.get(link)
        assert r.status_code == 200, r.text
        assert "attachment" in r.headers["content-disposition"]
    lines = (await api.client.get("/ui/audit/export?format=jsonl")).text.splitlines()
    assert len(lines) == 1 and "[masked]" in lines[0]  # audit without audit:pii: masked
    csv = (await api.client.get("/ui/audit/export?format=csv")).text.splitlines()
    assert len(csv) == 2 and "," in csv[0]  # a header and one record
    api.client.cookies.clear()
    assert (await api.client.get("/ui/audit/export?format=csv")).status_code == 303  # login
