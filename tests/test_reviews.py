"""Human reviews are bounded like the LLM: the kind's guard, the spec version used, four eyes.

Written as a hostile reviewer and an outside auditor would probe it: out-of-policy refunds,
approvals of denied items, clauses that don't exist, mask tokens fed back, verdicts of
another kind, reviews of shadow or review records, concurrent reviews.
"""

from __future__ import annotations

import asyncio
import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.engine import cited_clauses_check
from service.evals.suite import build_case, load_suites
from service.kinds.registry import KINDS
from service.settings import PROJECT_ROOT
from tests import exception_cases as ex
from tests.conftest import contract
from tests.routing_cases import case as routing_case
from tests.routing_cases import loc, opt
from tests.test_ui import form_values, page_form


def returns_case(order: str = "ORD-RV", **item: Any) -> dict[str, Any]:
    """The contract return; by default a change of mind on day 14, decided by rules alone."""
    c = contract("returns.request")
    c["order"]["id"] = order
    c["request"]["items"][0].update(
        {"reason": "changed_mind", "condition": "new", "customer_comment": None, **item}
    )
    return c


def sealed_defective(order: str = "ORD-R5") -> dict[str, Any]:
    """R5: 'defective' but still sealed → the policy sends it to review."""
    return returns_case(order, reason="defective", condition="new")


def editable(verdict: dict[str, Any]) -> dict[str, Any]:
    v = copy.deepcopy(verdict)
    v.pop("total_refund", None)
    return v


def approve_jacket(proposal: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A valid approval of the one requested jacket (129.00), built on a proposal."""
    v = editable(proposal)
    v.update(
        outcome="approve",
        items=[
            {
                "sku": "JKT-RAIN-M",
                "quantity_approved": 1,
                "refund_amount": "129.00",
                "disposition": "refurbish",
            }
        ],
        refund_method="original_payment",
        refund_timing="on_carrier_scan",
        restocking_fee="0.00",
        label_required=True,
        cited_clauses=["R2", "R5", "R8", "R11"],
        customer_message="Your return is approved: 129.00 USD once the carrier scans your parcel.",
    )
    v.update(changes)
    return v


async def review(api: Any, decision_id: str, key: str = "review", **body: Any) -> Any:
    body.setdefault("note", "checked")
    headers = {"Authorization": f"Bearer {api.keys[key]}"}
    return await api.client.post(f"/v1/decisions/{decision_id}/review", headers=headers, json=body)


def second_reviewer(api: Any, name: str = "second") -> str:
    _, secret = api.app.state.services.stores.keys.create(name=name, scopes=["review"])
    api.keys[name] = secret
    return name


def checks_named(resp: Any, part: str) -> dict[str, str | None]:
    return {c["name"]: c["detail"] for c in resp.json()["error"]["details"][part]}


# --- point 3: the kind's guard applies to people too -----------------------------------


async def test_the_refund_and_message_of_the_report_are_refused(api: Any) -> None:
    """The reported attack: 999999999.99 on a 129.00 line, an outside e-mail address, on a
    decision that never needed review. It must not reach the chain."""
    d = (await api.decide("returns", returns_case())).json()
    assert not d["needs_review"] and d["outcome"] == "approve"
    before = api.engine.log.count()
    hostile = approve_jacket(
        d["verdict"],
        items=[
            {
                "sku": "JKT-RAIN-M",
                "quantity_approved": 1,
                "refund_amount": "999999999.99",
                "disposition": "restock",
            }
        ],
        refund_timing="on_inspection",
        customer_message="Refund sent! Questions? write to refunds@pay-outside.example.net",
    )
    r = await review(api, d["decision_id"], verdict=hostile)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "verdict_out_of_policy"
    repairs = checks_named(r, "repairs")
    assert "999999999.99 → 129.00" in (repairs["refund_within_paid"] or "")
    assert "pay-outside.example.net" in (repairs["customer_message_safe"] or "")
    assert "refund_within_paid" in err["message"] and "customer_message_safe" in err["message"]
    # the repairs are shown, not applied: the reviewer gets the repaired verdict to confirm
    fixed = err["details"]["repaired_verdict"]
    assert fixed["items"][0]["refund_amount"] == "129.00"
    assert "pay-outside" not in (fixed["customer_message"] or "")
    assert api.engine.log.count() == before
    # the repaired verdict is the rules' own (R12's timing too): confirming it settles
    r = await review(api, d["decision_id"], verdict=fixed)
    assert r.status_code == 201, r.text


async def test_a_reviewer_cannot_approve_what_the_policy_denies(api: Any) -> None:
    late = returns_case("ORD-LATE", customer_comment=None)
    late["request"]["requested_at"] = "2026-11-15T10:00:00Z"  # day 40 after delivery: R1
    d = (await api.decide("returns", late)).json()
    assert d["outcome"] == "deny"
    r = await review(api, d["decision_id"], verdict=approve_jacket(d["verdict"]))
    assert r.status_code == 422, r.text
    failed = checks_named(r, "failed")
    assert "R1" in (failed["hard_eligibility"] or "")
    assert r.json()["error"]["details"]["repaired_verdict"] is None


async def test_final_sale_and_more_units_than_bought(api: Any) -> None:
    case = sealed_defective("ORD-FS")
    case["request"]["items"].append(
        {"sku": "SWIM-01-S", "quantity": 2, "reason": "changed_mind", "condition": "new"}
    )
    d = (await api.decide("returns", case)).json()
    v = approve_jacket(d["verdict"])
    v["items"].append(
        {
            "sku": "SWIM-01-S",
            "quantity_approved": 5,
            "refund_amount": "175.00",
            "disposition": "restock",
        }
    )
    r = await review(api, d["decision_id"], verdict=v)
    assert r.status_code == 422
    assert "R3" in (checks_named(r, "failed")["hard_eligibility"] or "")  # final sale (R3)


async def test_cited_clauses_must_exist_in_the_version_that_decided(
    api_factory: Any, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(PROJECT_ROOT / "specs", specs)
    api, cm = await api_factory(specs_dir=specs, spec_poll_s=0)
    try:
        d = (await api.decide("returns", sealed_defective())).json()
        r = await review(
            api, d["decision_id"], verdict=approve_jacket(d["verdict"], cited_clauses=["R99"])
        )
        assert r.status_code == 422
        assert "R99" in (checks_named(r, "failed")["cited_clauses_exist"] or "")
        # a newer version adds R15; the decision was made under the old one, which has none
        path = specs / "returns.md"
        path.write_text(
            path.read_text().replace("version: 1", "version: 2")
            + "\n## R15 Goodwill\nA person may add goodwill notes.\n"
        )
        api.engine.registry.load()
        assert "R15" in api.engine.registry.active("returns").clauses
        r = await review(
            api, d["decision_id"], verdict=approve_jacket(d["verdict"], cited_clauses=["R2", "R15"])
        )
        assert r.status_code == 422, r.text
        assert "R15" in (checks_named(r, "failed")["cited_clauses_exist"] or "")
        ok = await review(api, d["decision_id"], verdict=approve_jacket(d["verdict"]))
        assert ok.status_code == 201, ok.text
        assert ok.json()["spec"]["sha256"] == d["spec"]["sha256"]
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_a_verdict_of_another_kind_is_refused(api: Any) -> None:
    d = (await api.decide("returns", sealed_defective())).json()
    ex_verdict = {
        "action": "release",
        "hold": False,
        "cited_clauses": ["E9"],
        "rationale": "fine",
        "confidence": 1.0,
    }
    r = await review(api, d["decision_id"], verdict=ex_verdict)
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["error"]["details"]}
    assert "verdict.action" in fields and "verdict.outcome" in fields


async def test_a_review_must_decide_the_case(api: Any) -> None:
    """'needs_review' is not a verdict a person can give; accepting it settles nothing."""
    d = (await api.decide("returns", sealed_defective())).json()
    assert d["outcome"] == "needs_review"
    r = await review(api, d["decision_id"], note="looks fine")  # accept the proposal
    assert r.status_code == 422 and "decide" in r.json()["error"]["message"]
    r = await review(api, d["decision_id"], verdict=editable(d["verdict"]))
    assert r.status_code == 422


async def test_shadow_and_review_records_cannot_be_reviewed(api: Any) -> None:
    d = (await api.decide("returns", sealed_defective())).json()
    ok = await review(api, d["decision_id"], verdict=approve_jacket(d["verdict"]))
    assert ok.status_code == 201, ok.text
    again = await review(api, ok.json()["decision_id"], verdict=approve_jacket(d["verdict"]))
    assert again.status_code == 409  # a settled review is final; it is superseded by nothing
    live = api.engine.log.get(decision_id=d["decision_id"])
    shadow = live.model_copy(update={"id": "dec_SHADOW0000000000000000000", "shadow_of": live.id})
    shadow.seq = None
    api.engine.log.append(row=shadow)
    r = await review(api, shadow.id, verdict=approve_jacket(d["verdict"]))
    assert r.status_code == 409 and "shadow" in r.json()["error"]["message"]


async def test_concurrent_reviews_settle_once(api: Any) -> None:
    d = (await api.decide("returns", sealed_defective())).json()
    other = second_reviewer(api)
    a = approve_jacket(d["verdict"])
    b = approve_jacket(d["verdict"], customer_message="We're refunding your jacket.")
    results = await asyncio.gather(
        review(api, d["decision_id"], verdict=a), review(api, d["decision_id"], other, verdict=b)
    )
    assert sorted(r.status_code for r in results) == [201, 409]
    assert api.engine.log.verify().ok


# --- point 3: four eyes -----------------------------------------------------------------


async def test_overriding_a_decision_that_needed_no_review_takes_two_people(api: Any) -> None:
    # a return without judgement is determined in every term: a reviewer can only confirm it;
    # E9's automatic release is one a person (the fraud team) may override, with four eyes
    d = (await api.decide("exceptions", ex.fraud(20))).json()
    assert not d["needs_review"] and d["outcome"] == "release"
    changed = {**d["verdict"], "action": "escalate", "hold": True}
    changed["tags"] = ["arbiter:fraud_review", "arbiter:escalate"]
    r = await review(api, d["decision_id"], verdict=changed, note="hold it for the fraud team")
    assert r.status_code == 202, r.text
    pending = r.json()
    assert pending["settled"] is False and pending["needs_review"] is True
    assert any("did not need review" in why for why in pending["review_reasons"])
    queue = (await api.client.get("/v1/reviews", headers=api.auth("review"))).json()["reviews"]
    assert [q["decision_id"] for q in queue] == [pending["decision_id"]]
    # the proposer cannot confirm their own verdict, with or without changes
    own = await review(api, pending["decision_id"], note="confirming myself")
    assert own.status_code == 403
    # a second reviewer confirms it
    other = second_reviewer(api)
    confirm = await review(api, pending["decision_id"], other, note="agree, hold it")
    assert confirm.status_code == 201, confirm.text
    final = confirm.json()
    assert final["settled"] and final["supersedes"] == pending["decision_id"]
    assert final["verdict"]["action"] == "escalate"
    assert (await api.client.get("/v1/reviews", headers=api.auth("review"))).json()["reviews"] == []
    twice = await review(api, pending["decision_id"], "admin", note="late")
    assert twice.status_code == 409
    root = (
        await api.client.get(f"/v1/decisions/{d['decision_id']}", headers=api.auth("audit"))
    ).json()
    assert root["superseded_by"][0]["decision_id"] == pending["decision_id"]
    assert api.engine.log.verify().ok


async def test_a_reviewer_cannot_change_a_determined_term(api: Any) -> None:
    """R8 and R12 determine disposition and timing: a reviewer's other value is repaired."""
    d = (await api.decide("returns", returns_case("ORD-DET"))).json()
    changed = approve_jacket(d["verdict"], refund_timing="on_inspection")
    changed["items"][0]["disposition"] = "liquidate"
    r = await review(api, d["decision_id"], verdict=changed)
    assert r.status_code == 422, r.text
    repairs = checks_named(r, "repairs")
    assert "on_inspection → on_carrier_scan (R12)" in (repairs["refund_timing"] or "")
    assert "liquidate → restock (R8)" in (repairs["disposition_allowed"] or "")


async def test_an_unchanged_verdict_on_a_decision_without_review_is_a_confirmation(
    api: Any,
) -> None:
    d = (await api.decide("returns", returns_case("ORD-OK"))).json()
    r = await review(api, d["decision_id"], note="spot check: fine")
    assert r.status_code == 201 and r.json()["settled"]


def expensive_nad(order: str) -> dict[str, Any]:
    """An explained not_as_described headset of 600.00: a fault (no fee) or not (R2, R10)."""
    c = returns_case(
        order,
        reason="not_as_described",
        condition="opened",
        customer_comment="The noise cancelling does not work at all.",
    )
    c["order"]["lines"][0].update(unit_price="600.00", category="electronics")
    return c


def as_fault(proposal: dict[str, Any]) -> dict[str, Any]:
    v = editable(proposal)
    v.update(
        outcome="approve",
        restocking_fee="0.00",
        customer_message="Your return is approved in full; we refund once it is inspected.",
    )
    return v


def expensive(order: str = "ORD-R7") -> dict[str, Any]:
    c = returns_case(order)
    c["order"]["lines"][0]["unit_price"] = "600.00"
    return c


async def test_r7_one_reviewer_may_accept_the_proposal_but_not_raise_a_refund(api: Any) -> None:
    d = (await api.decide("returns", expensive())).json()
    assert d["needs_review"] and any("R7" in why for why in d["review_reasons"])
    accept = await review(api, d["decision_id"], note="receipt checked")
    assert accept.status_code == 201 and accept.json()["settled"]  # R7's person

    small = (await api.decide("returns", sealed_defective("ORD-R7B"))).json()
    v = approve_jacket(small["verdict"])
    v["items"][0]["refund_amount"] = "129.00"
    ok = await review(api, small["decision_id"], verdict=v)
    assert ok.status_code == 201  # within the automatic limit: one reviewer is enough

    d2 = (await api.decide("returns", expensive_nad("ORD-R7C"))).json()
    assert d2["outcome"] == "needs_review"  # R2: rules cannot judge; as a change of mind 510.00
    v = as_fault(d2["verdict"])  # the reviewer reads a fault: 600.00, their own verdict
    r = await review(api, d2["decision_id"], verdict=v)
    assert r.status_code == 202, r.text
    assert any("R7" in why and "second reviewer" in why for why in r.json()["review_reasons"])


async def test_fraud_release_above_the_threshold_needs_a_second_person(api: Any) -> None:
    """E9: never released *automatically* at risk ≥ 85; a person may, with four eyes."""
    d = (await api.decide("exceptions", ex.fraud(88, ["velocity"]))).json()
    assert d["outcome"] == "escalate" and d["needs_review"]
    release = {**d["verdict"], "action": "release", "hold": False, "tags": []}
    release["tags"] = ["arbiter:fraud_review", "arbiter:release"]
    r = await review(api, d["decision_id"], verdict=release, note="called the customer")
    assert r.status_code == 202, r.text
    assert any("E9" in why for why in r.json()["review_reasons"])
    other = second_reviewer(api)
    ok = await review(api, r.json()["decision_id"], other, note="agree")
    assert ok.status_code == 201 and ok.json()["verdict"]["action"] == "release"
    wrong = (await api.decide("exceptions", ex.fraud(70, ["geo_mismatch"]))).json()
    bad = {**wrong["verdict"], "action": "retry_payment"}
    r = await review(api, wrong["decision_id"], verdict=bad)
    assert r.status_code == 422 and "action_allowed" in checks_named(r, "failed")


async def test_routing_reviews_stay_within_the_planner(api: Any) -> None:
    case = routing_case(
        [("MUG", 1, [])],
        [
            loc("WH-CHEAP", {"MUG": 5}, options=[opt("UPS", "ground", "5.00")]),
            loc("WH-DEAR", {"MUG": 5}, options=[opt("UPS", "ground", "25.00")]),
        ],
    )
    d = (await api.decide("routing", case)).json()
    assert d["outcome"] == "WH-CHEAP:UPS.ground" and not d["verdict"]["tie"]["tie"]
    accept = await review(api, d["decision_id"], note="fine")
    assert accept.status_code == 201, accept.text
    d2 = (await api.decide("routing", {**case, "order": {**case["order"], "id": "ORD-R2"}})).json()
    dear = editable(d2["verdict"])
    dear["plan_id"] = "WH-DEAR:UPS.ground"
    r = await review(api, d2["decision_id"], verdict=dear)
    assert r.status_code == 422 and "plan_in_tie" in checks_named(r, "failed")


def test_every_rules_proposal_of_the_eval_suites_passes_its_own_guard() -> None:
    """Accepting a proposal re-runs the guard: a rules verdict must never fail it."""
    from service.specs.loader import load_spec

    for suite in load_suites(PROJECT_ROOT / "evals", sorted(KINDS)):
        k = KINDS[suite.kind]
        spec = load_spec(PROJECT_ROOT / "specs" / f"{suite.kind}.md")
        for ec in suite.cases:
            case = k.Case.model_validate(build_case(suite, ec))
            verdict = k.fallback(case, spec.params)
            if k.outcome(verdict) == "needs_review":
                continue
            guarded = k.guard(case, verdict, spec.params)
            checks = [*guarded.checks, cited_clauses_check(verdict, spec)]
            bad = [c for c in checks if c.status != "passed"]
            assert not bad, f"{suite.suite}/{ec.id}: {bad}"
            assert guarded.verdict.model_dump() == verdict.model_dump(), f"{suite.suite}/{ec.id}"


# --- point 4: the mask token is never data ----------------------------------------------


async def test_a_masked_placeholder_is_refused_anywhere_in_a_verdict(api: Any) -> None:
    d = (await api.decide("returns", sealed_defective("ORD-MASK"))).json()
    seen = (
        await api.client.get(f"/v1/decisions/{d['decision_id']}", headers=api.auth("review"))
    ).json()
    assert seen["verdict"]["customer_message"] == "[masked]"
    for path, value in (
        (("customer_message",), "[masked]"),
        (("customer_message",), "Hello [masked], your refund is on its way."),
        (("items", 0, "sku"), "[masked]"),
        (("rationale",), "as the customer [masked] said"),
    ):
        v = approve_jacket(d["verdict"])
        node: Any = v
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        r = await review(api, d["decision_id"], verdict=v)
        assert r.status_code == 422, (path, r.text)
        field = "verdict." + ".".join(str(p) for p in path)
        assert field in {e["field"] for e in r.json()["error"]["details"]}, r.text
    # the masked prefilled verdict saved as is: refused, never stored
    r = await review(api, d["decision_id"], verdict=editable(seen["verdict"]))
    assert r.status_code == 422
    assert api.engine.log.superseding(decision_id=d["decision_id"]) is None


async def test_a_reviewer_without_pii_keeps_the_unseen_message(api: Any) -> None:
    """Leaving out a field one cannot see keeps the original, unmasked value."""
    case = sealed_defective("ORD-KEEP")
    case["customer"]["email"] = "dana@example.com"
    d = (await api.decide("returns", case)).json()
    v = approve_jacket(d["verdict"])
    del v["customer_message"]
    r = await review(api, d["decision_id"], verdict=v)
    assert r.status_code == 201, r.text
    stored = api.engine.log.get(decision_id=r.json()["decision_id"])
    assert stored.verdict["customer_message"] == d["verdict"]["customer_message"]
    assert "[masked]" not in str(stored.verdict)


# --- point 6: what a reviewer may read ----------------------------------------------------


async def test_a_review_key_reads_the_decision_it_judges_but_not_the_log(api: Any) -> None:
    d = (await api.decide("returns", sealed_defective("ORD-READ"))).json()
    h = api.auth("review")
    one = await api.client.get(f"/v1/decisions/{d['decision_id']}", headers=h)
    assert one.status_code == 200
    assert one.json()["clauses"] and "verdict.customer_message" in one.json()["masked"]
    assert (await api.client.get("/v1/decisions", headers=h)).status_code == 403
    assert (await api.client.get("/v1/audit/export", headers=h)).status_code == 403
    assert (await api.client.get("/v1/audit/stats", headers=h)).status_code == 403
    decide_only = await api.client.get(f"/v1/decisions/{d['decision_id']}", headers=api.auth())
    assert decide_only.status_code == 403


async def ui_login(api: Any, scope: str) -> None:
    form = await api.client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    r = await api.client.post("/ui/login", data={"api_key": api.keys[scope], "csrf": csrf})
    assert r.status_code == 303


async def test_review_page_for_a_review_key_never_round_trips_the_mask(api: Any) -> None:
    case = sealed_defective("ORD-UI")
    d = (await api.decide("returns", case)).json()
    await ui_login(api, "review")
    page = await api.client.get(f"/ui/decisions/{d['decision_id']}")
    assert page.status_code == 200, page.text
    fields = page_form(page.text)
    assert fields and not any("[masked]" in v for v in fields.values())
    assert "v:customer_message" not in fields  # masked for this key: not in the form at all
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    v = approve_jacket(d["verdict"])
    v.pop("customer_message")
    r = await api.client.post(
        f"/ui/decisions/{d['decision_id']}/review",
        data={"csrf": csrf, "note": "photo ok", "action": "override", **form_values(v)},
    )
    assert r.status_code == 303, r.text
    stored = api.engine.log.superseding(decision_id=d["decision_id"])
    assert stored is not None
    assert stored.verdict["customer_message"] == d["verdict"]["customer_message"]


async def test_ui_shows_repairs_for_the_reviewer_to_confirm(api: Any) -> None:
    d = (await api.decide("returns", sealed_defective("ORD-UIR"))).json()
    await ui_login(api, "review")
    page = await api.client.get(f"/ui/decisions/{d['decision_id']}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    v = approve_jacket(d["verdict"])
    v["items"][0]["refund_amount"] = "500.00"
    r = await api.client.post(
        f"/ui/decisions/{d['decision_id']}/review",
        data={"csrf": csrf, "note": "x", "action": "override", **form_values(v)},
    )
    assert r.status_code == 422
    assert "refund_within_paid" in r.text and "500.00 → 129.00" in r.text
    assert page_form(r.text)["v:items.0.refund_amount"] == "129.00"  # prefilled repair
    assert ">x</textarea>" in r.text  # the note is kept
    assert api.engine.log.superseding(decision_id=d["decision_id"]) is None


# --- point 8: what reviewer agreement means -----------------------------------------------


async def test_reviewer_agreement_compares_the_verdicts(api: Any) -> None:
    d = (await api.decide("returns", expensive("ORD-AG1"))).json()  # approve, R7 review
    v = editable(d["verdict"])
    v["rationale"] = "Receipt checked, all good."  # words only: still agreement
    assert (await review(api, d["decision_id"], verdict=v)).status_code == 201
    st = (await api.client.get("/v1/audit/stats", headers=api.auth("audit"))).json()
    assert st["reviews"] == 1 and st["reviewer_agreement"] == 1.0

    d2 = (await api.decide("exceptions", ex.fraud(88, ["velocity"]))).json()  # escalate
    v = {**d2["verdict"], "action": "release", "hold": False}
    v["tags"] = ["arbiter:fraud_review", "arbiter:release"]  # another verdict than proposed
    r = await review(api, d2["decision_id"], verdict=v)
    assert r.status_code == 202, r.text  # E9: released by a person, with four eyes
    st = (await api.client.get("/v1/audit/stats", headers=api.auth("audit"))).json()
    assert st["reviews"] == 1 and st["reviews_pending"] == 1
    other = second_reviewer(api)
    assert (await review(api, r.json()["decision_id"], other)).status_code == 201
    st = (await api.client.get("/v1/audit/stats", headers=api.auth("audit"))).json()
    assert st["reviews"] == 2 and st["reviewer_agreement"] == 0.5

    d3 = (await api.decide("returns", sealed_defective("ORD-AG3"))).json()  # no proposal
    assert (
        await review(api, d3["decision_id"], verdict=approve_jacket(d3["verdict"]))
    ).status_code == 201
    st = (await api.client.get("/v1/audit/stats", headers=api.auth("audit"))).json()
    assert st["reviews"] == 3 and st["reviews_compared"] == 2 and st["reviewer_agreement"] == 0.5


@pytest.mark.parametrize(
    "field,value", [("refund_method", "store_credit"), ("refund_timing", "on_inspection")]
)
def test_agreement_counts_every_term_not_the_headline(field: str, value: str) -> None:
    from service.audit import same_terms

    k = KINDS["returns"]
    base = {
        "outcome": "approve",
        "items": [
            {"sku": "A", "quantity_approved": 1, "refund_amount": "10.00", "disposition": "restock"}
        ],
        "refund_method": "original_payment",
        "refund_timing": "on_carrier_scan",
        "restocking_fee": "0.00",
        "label_required": True,
        "cited_clauses": ["R1"],
        "rationale": "a",
        "confidence": 0.9,
        "customer_message": "one",
    }
    worded = {**base, "cited_clauses": ["R1", "R11"], "rationale": "b", "confidence": 1.0}
    worded["customer_message"] = "two"
    assert same_terms(k, base, worded)
    assert not same_terms(k, base, {**base, field: value})
