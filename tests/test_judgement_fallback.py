"""Clauses that need judgement: the rules answer never takes the generous reading (issue 12).

When the LLM is disabled, fails or breaks a guardrail, the rules decide. Where a clause asks
for a judgement the rules cannot make (R2: is this `not_as_described` a real fault?), they
send the case to a person, or apply the strict reading where the policy itself gives it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
import yaml

from service.evals.runner import RunConfig, run_suites
from service.evals.suite import load_suite
from service.kinds.exceptions import KIND as EXCEPTIONS
from service.kinds.exceptions import ExceptionCase, ExceptionParameters
from service.kinds.returns import KIND, ItemVerdict, ReturnCase, ReturnVerdict
from service.settings import PROJECT_ROOT
from service.specs.loader import load_spec
from tests import exception_cases as ex
from tests.conftest import contract, make_settings, reply
from tests.test_returns_policy import P, case, item, line, rules

EP: ExceptionParameters = load_spec(PROJECT_ROOT / "specs" / "exceptions.md").params  # type: ignore[assignment]

DISLIKE = "I just don't like it."


def nad(
    *,
    day: int,
    category: str = "electronics",
    condition: str = "opened",
    comment: str | None = DISLIKE,
    photos: int = 0,
    price: str = "200.00",
    tags: list[str] | None = None,
) -> ReturnCase:
    it = item("A", reason="not_as_described", condition=condition, comment=comment)
    it["photos"] = photos
    return case([line("A", category=category, price=price, tags=tags)], [it], day=day)


# --- R2 in the rules answer ---------------------------------------------------------------
def test_issue_example_day_33_dislike_is_not_approved_by_rules() -> None:
    c = nad(day=33)
    assert KIND.precheck(c, P) is None  # judgement: the LLM is asked when there is one
    v = rules(c)
    assert v.outcome == "needs_review", v
    assert "R2" in v.cited_clauses
    assert "day 33" in v.rationale and "R2" in v.rationale
    reasons = KIND.review_reasons(c, v, P)
    assert reasons and "R2" in reasons[0]
    # nothing is paid before a person has judged; the draft is the strict reading
    assert v.total_refund == Decimal("0.00") and v.items[0].quantity_approved == 0


@pytest.mark.parametrize(
    ("kw", "strict"),
    [
        ({"day": 31, "category": "outerwear", "condition": "new"}, "R1"),  # past R1's window
        ({"day": 20, "category": "outerwear", "condition": "used"}, "R5"),  # used: R5
        ({"day": 20, "category": "swimwear", "condition": "new"}, "R3"),  # final sale
        ({"day": 20, "category": "outerwear", "condition": "new", "tags": ["final_sale"]}, "R3"),
        ({"day": 20, "category": "electronics", "condition": "opened"}, "R10"),  # the fee
    ],
)
def test_r2_readings_that_differ_go_to_review(kw: dict[str, Any], strict: str) -> None:
    c = nad(**kw)
    v = rules(c)
    assert v.outcome == "needs_review", v
    assert {"R2", strict} <= set(v.cited_clauses)
    assert KIND.review_reasons(c, v, P)


def test_r2_within_the_window_an_opened_fee_item_shows_the_fee_in_the_draft() -> None:
    v = rules(nad(day=20))
    assert v.outcome == "needs_review"
    assert v.restocking_fee == Decimal("30.00") and v.items[0].quantity_approved == 1


@pytest.mark.parametrize("day", [0, 29, 30])
def test_r2_readings_that_agree_are_approved_as_a_change_of_mind(day: int) -> None:
    # sealed outerwear inside R1's window: approved with no fee whichever reading applies
    v = rules(nad(day=day, category="outerwear", condition="new"))
    assert v.outcome == "approve" and v.restocking_fee == Decimal("0.00")
    assert {"R1", "R2"} <= set(v.cited_clauses)


def test_r2_past_the_defect_window_is_denied_either_way() -> None:
    v = rules(nad(day=91, category="outerwear", condition="new"))
    assert v.outcome == "deny" and "R2" in v.cited_clauses


@pytest.mark.parametrize(
    ("day", "outcome", "fee"),
    [(33, "deny", "0.00"), (30, "approve", "30.00"), (20, "approve", "30.00")],
)
def test_r2_with_no_explanation_is_a_change_of_mind(day: int, outcome: str, fee: str) -> None:
    # "judged from the customer's explanation and photos ... otherwise as a change of mind"
    c = nad(day=day, comment=None)
    v = KIND.precheck(c, P)
    assert v is not None, "no explanation to judge: the rules decide alone"
    assert v.outcome == outcome and v.restocking_fee == Decimal(fee)
    assert "R1" in v.cited_clauses


@pytest.mark.parametrize("comment", ["", "   "])
def test_r2_blank_comment_is_no_explanation(comment: str) -> None:
    v = KIND.precheck(nad(day=33, comment=comment), P)
    assert v is not None and v.outcome == "deny"


def test_r2_photos_alone_are_evidence_the_rules_cannot_read() -> None:
    c = nad(day=33, comment=None, photos=2)
    assert KIND.precheck(c, P) is None
    assert rules(c).outcome == "needs_review"


def test_r2_mixed_request_reviews_only_because_of_the_judged_item() -> None:
    lines = [line("A", category="electronics", price="200.00"), line("B")]
    items = [
        item("A", reason="not_as_described", condition="opened", comment=DISLIKE),
        item("B", reason="defective", condition="used"),
    ]
    v = rules(case(lines, items, day=45))
    assert v.outcome == "needs_review"
    by_sku = {i.sku: i for i in v.items}
    assert by_sku["A"].quantity_approved == 0 and by_sku["B"].quantity_approved == 1


def test_fallback_never_approves_an_explained_not_as_described_on_the_generous_reading() -> None:
    # every combination: an approval by rules must be exactly R1's change-of-mind answer
    for category in ("electronics", "outerwear", "swimwear"):
        for condition in ("new", "opened", "used", "damaged", "missing_parts"):
            for day in (0, 30, 31, 90, 91):
                v = rules(nad(day=day, category=category, condition=condition))
                if v.outcome not in ("approve", "approve_partial"):
                    assert v.total_refund == 0 or v.outcome == "needs_review"
                    continue
                it = item("A", reason="changed_mind", condition=condition, comment=DISLIKE)
                strict = rules(case([line("A", category=category, price="200.00")], [it], day=day))
                same = {"rationale", "cited_clauses"}
                assert v.model_dump(exclude=same) == strict.model_dump(exclude=same), (
                    category,
                    condition,
                    day,
                )


# --- R2 in the guard: the fee is part of the judgement ---------------------------------------
def llm_verdict(c: ReturnCase, fee: str, clauses: list[str]) -> ReturnVerdict:
    v = rules(nad(day=20, comment=None)).model_copy(deep=True)
    v.restocking_fee = Decimal(fee)
    v.cited_clauses = clauses
    v.outcome = "approve"
    return v


@pytest.mark.parametrize(("fee", "clauses"), [("30.00", ["R1", "R10"]), ("0.00", ["R2"])])
def test_guard_accepts_either_reading_of_an_explained_not_as_described(
    fee: str, clauses: list[str]
) -> None:
    c = nad(day=20)
    g = KIND.guard(c, llm_verdict(c, fee, clauses), P)
    assert not g.failed
    assert g.verdict.restocking_fee == Decimal(fee)
    assert {ch.name: ch.status for ch in g.checks}["restocking_fee"] == "passed"


def test_guard_refuses_a_fee_that_matches_no_reading() -> None:
    c = nad(day=20)
    g = KIND.guard(c, llm_verdict(c, "12.00", ["R2"]), P)
    assert [ch.name for ch in g.failed] == ["restocking_fee"]


def test_guard_accepts_mixed_readings_of_several_items() -> None:
    lines = [
        line(s, category="electronics", price=p) for s, p in (("A", "200.00"), ("B", "100.00"))
    ]
    items = [
        item(s, reason="not_as_described", condition="opened", comment="x") for s in ("A", "B")
    ]
    c = case(lines, items, day=10)
    v = ReturnVerdict(
        outcome="approve",
        items=[
            ItemVerdict(
                sku="A", quantity_approved=1, refund_amount="200.00", disposition="refurbish"
            ),  # type: ignore[arg-type]
            ItemVerdict(
                sku="B", quantity_approved=1, refund_amount="100.00", disposition="refurbish"
            ),  # type: ignore[arg-type]
        ],
        refund_method="original_payment",
        refund_timing="on_carrier_scan",
        restocking_fee=Decimal("15.00"),  # B read as a change of mind, A as a fault
        label_required=True,
        cited_clauses=["R1", "R2", "R10"],
        rationale="A leaks; B is a matter of taste.",
        confidence=0.9,
    )
    for fee, ok in (("0.00", True), ("15.00", True), ("30.00", True), ("45.00", True)):
        v.restocking_fee = Decimal(fee)
        assert (not KIND.guard(c, v, P).failed) == ok, fee
    v.restocking_fee = Decimal("20.00")
    assert KIND.guard(c, v, P).failed


def test_guard_still_repairs_a_waived_fee_when_nothing_is_judged() -> None:
    c = nad(day=20, comment=None)  # no explanation: a change of mind, the fee is determined
    g = KIND.guard(c, llm_verdict(c, "0.00", ["R2"]), P)
    assert not g.failed and g.verdict.restocking_fee == Decimal("30.00")


def test_guard_refuses_an_unexplained_late_not_as_described() -> None:
    c = nad(day=33, comment=None)
    v = llm_verdict(c, "0.00", ["R2"])
    assert "hard_eligibility" in [ch.name for ch in KIND.guard(c, v, P).failed]


# --- every way the rules answer: LLM disabled, failed, out of policy ---------------------------
def issue_case() -> dict[str, Any]:
    data = contract("returns.request")
    data["order"]["lines"][0].update(category="electronics", sku="HP-1", unit_price="200.00")
    data["request"]["requested_at"] = "2026-11-08T10:00:00Z"  # day 33 after 2026-10-06
    data["request"]["items"] = [
        {
            "sku": "HP-1",
            "quantity": 1,
            "reason": "not_as_described",
            "condition": "opened",
            "customer_comment": DISLIKE,
        }
    ]
    return data


def assert_sent_to_review(body: dict[str, Any]) -> None:
    assert body["outcome"] == "needs_review" and body["needs_review"] is True, body
    assert body["verdict"]["total_refund"] == "0.00"
    assert any("R2" in r for r in body["review_reasons"])


async def test_llm_disabled_sends_the_issue_example_to_review(api: Any) -> None:
    r = await api.decide("returns", issue_case())
    body = r.json()
    assert r.status_code == 200 and body["fallback_reason"] == "llm_disabled"
    assert_sent_to_review(body)


async def test_llm_failure_sends_the_issue_example_to_review(llm_api: Any) -> None:
    api, mock = llm_api
    mock.post("/chat/completions").mock(side_effect=httpx.ConnectTimeout("down"))
    body = (await api.decide("returns", issue_case())).json()
    assert body["source"] == "fallback" and body["fallback_reason"] != "llm_disabled"
    assert_sent_to_review(body)


async def test_guardrail_violation_sends_the_issue_example_to_review(llm_api: Any) -> None:
    api, mock = llm_api
    bad = {
        "outcome": "approve",
        "items": [
            {"sku": "HP-1", "quantity_approved": 1, "refund_amount": "200.00", "disposition": "x"}
        ],
        "refund_method": "original_payment",
        "refund_timing": "on_carrier_scan",
        "restocking_fee": "0.00",
        "label_required": True,
        "cited_clauses": ["R2", "R99"],  # a clause that does not exist: the guard fails
        "rationale": "Treated as a fault.",
        "confidence": 0.95,
    }
    bad["items"][0]["disposition"] = "refurbish"
    mock.post("/chat/completions").mock(return_value=reply(bad))
    body = (await api.decide("returns", issue_case())).json()
    assert body["source"] == "fallback" and body["fallback_reason"] == "guardrail_violation"
    assert_sent_to_review(body)


# --- exceptions: judgement clauses keep the strict reading in the rules answer ----------------
def exc(data: dict[str, Any]) -> ExceptionCase:
    return ExceptionCase.model_validate(data)


def test_e2_explained_unverifiable_address_is_not_released_by_rules() -> None:
    data = ex.address(result="unverifiable", orders=1)
    data["customer_comment"] = "New campus mail room, couriers deliver there daily."
    c = exc(data)
    assert EXCEPTIONS.precheck(c, EP) is None
    v = EXCEPTIONS.fallback(c, EP)
    assert v.action == "contact_customer" and v.hold


def test_e2_a_second_suggestion_may_be_plausible_so_rules_do_not_correct() -> None:
    # "only automatically when ... it is the only such suggestion"; "when several suggestions
    # are plausible ... the order is held and the customer asked to confirm"
    data = ex.address(suggestions=[("S1", 0.95), ("S2", 0.6)])
    c = exc(data)
    assert EXCEPTIONS.precheck(c, EP) is None  # the LLM judges whether S2 is plausible
    v = EXCEPTIONS.fallback(c, EP)
    assert v.action == "contact_customer" and v.hold and v.suggestion_id is None


def test_e2_one_suggestion_alone_is_still_corrected_by_rules() -> None:
    v = EXCEPTIONS.precheck(exc(ex.address(suggestions=[("S1", 0.95)])), EP)
    assert v is not None and v.action == "correct_address"


@pytest.mark.parametrize("risk", [30, 45, 84])
def test_e9_explained_signals_are_escalated_not_released_by_rules(risk: int) -> None:
    data = ex.fraud(risk, ["geo_mismatch", "ip_mismatch"])
    data["customer_comment"] = "Travelling for work; ship to my home address as always."
    c = exc(data)
    assert EXCEPTIONS.precheck(c, EP) is None
    v = EXCEPTIONS.fallback(c, EP)
    assert v.action == "escalate" and v.hold
    assert EXCEPTIONS.review_reasons(c, v, EP)


def test_guard_with_many_judged_items_accepts_only_the_whole_readings() -> None:
    skus = [f"S{i}" for i in range(11)]
    c = case(
        [line(s, category="electronics", price="100.00") for s in skus],
        [item(s, reason="not_as_described", condition="opened", comment="x") for s in skus],
        day=10,
    )
    v = rules(c).model_copy(update={"outcome": "approve"})
    assert v.restocking_fee == Decimal("165.00")  # the draft: every item as a change of mind
    for fee, ok in (("0.00", True), ("165.00", True), ("15.00", False)):
        v.restocking_fee = Decimal(fee)
        assert (not KIND.guard(c, v, P).failed) == ok, fee


# --- evals: rules mode has its own expectation for judgement clauses -------------------------
def test_eval_rules_mode_is_judged_by_expect_rules(tmp_path: Any) -> None:
    (tmp_path / "base.json").write_text(json.dumps(issue_case()))
    suite = {
        "suite": "judgement",
        "kind": "returns",
        "base": "base.json",
        "cases": [
            {
                "id": "nad-dislike-day-33",
                "description": "Day 33, a taste complaint: the LLM denies, rules send to review.",
                "expect": {"fields": {"outcome": "deny"}},
                "expect_rules": {
                    "fields": {"outcome": "needs_review", "needs_review": True},
                    "forbidden": {"outcome": ["approve", "approve_partial"]},
                },
            }
        ],
    }
    (tmp_path / "judgement.yaml").write_text(yaml.safe_dump(suite))
    loaded = load_suite(tmp_path / "judgement.yaml")
    ec = loaded.cases[0]
    assert ec.expected("live") is ec.expect and ec.expected("recorded") is ec.expect
    assert ec.expected("rules") is ec.expect_rules
    result = run_suites(
        settings=make_settings(f"sqlite:///{tmp_path / 'e.db'}"),
        config=RunConfig(mode="rules"),
        suites=[loaded],
    )
    (case_result,) = result.cases
    assert case_result.status == "passed", case_result.misses + case_result.hard
    assert case_result.expected["fields"]["outcome"] == "needs_review"
