"""The `returns` decision kind: eligibility, refund, timing and disposition of a return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import partial
from itertools import combinations
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from service.kinds.base import (
    Check,
    DecisionKind,
    Guarded,
    Money,
    ParametersBase,
    StrictModel,
    Timestamp,
    UntrustedText,
    VerdictBase,
    cents,
    utc_day,
)
from service.kinds.common import Count, Customer, Line, Sku, message_problems

Reason = Literal[
    "changed_mind",
    "wrong_size",
    "no_longer_needed",
    "better_price_found",
    "arrived_late",
    "other",
    "defective",
    "damaged_in_transit",
    "wrong_item",
    "not_as_described",
]
Condition = Literal["new", "opened", "used", "damaged", "missing_parts"]
Disposition = Literal[
    "restock", "refurbish", "liquidate", "return_to_vendor", "destroy", "customer_keeps"
]

FAULT_REASONS = frozenset({"defective", "damaged_in_transit", "wrong_item"})
NO_FEE_REASONS = FAULT_REASONS | {"wrong_size", "arrived_late"}
RESALEABLE = frozenset({"new", "opened"})
UNJUDGED_R2 = (
    "not_as_described is a fault only when the customer's explanation describes one, "
    "which rules cannot judge (R2)"
)
CONDITION_RANK = {"new": 0, "opened": 1, "used": 2, "missing_parts": 3, "damaged": 3}


# --- the case -------------------------------------------------------------------------


class Order(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    channel: str = Field(max_length=32)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    placed_at: Timestamp
    delivered_at: Timestamp | None = None
    payment_method: Literal[
        "card", "paypal", "gift_card", "store_credit", "bank_transfer", "cod", "wallet", "other"
    ]
    lines: list[Line] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> Order:
        skus = [ln.sku for ln in self.lines]
        if len(set(skus)) != len(skus):
            raise ValueError("each sku may appear on one order line only")
        if self.delivered_at is not None and self.delivered_at < self.placed_at:
            raise ValueError("delivered_at is before placed_at")
        return self


class RequestItem(StrictModel):
    sku: Sku
    quantity: Count
    reason: Reason
    condition: Condition
    customer_comment: UntrustedText | None = None
    photos: int = Field(default=0, ge=0, le=50)


class ReturnRequest(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    requested_at: Timestamp
    preferred_outcome: Literal["refund", "store_credit", "exchange"]
    items: list[RequestItem] = Field(min_length=1, max_length=200)

    @field_validator("items")
    @classmethod
    def _unique_skus(cls, items: list[RequestItem]) -> list[RequestItem]:
        skus = [it.sku for it in items]
        if len(set(skus)) != len(skus):
            raise ValueError("each sku may appear once in a return request")
        return items


class InspectedItem(StrictModel):
    sku: Sku
    condition: Condition
    defect_confirmed: bool | None = None
    notes: UntrustedText | None = None


class Inspection(StrictModel):
    inspected_at: Timestamp
    items: list[InspectedItem] = Field(max_length=200)


class PriorReturn(StrictModel):
    sku: Sku
    quantity: Count
    refunded_amount: Money
    returned_at: Timestamp | None = None


class ReturnCase(StrictModel):
    """A return request with the order, the customer and what is known so far."""

    order: Order
    customer: Customer
    request: ReturnRequest
    inspection: Inspection | None = None
    prior_returns: list[PriorReturn] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _skus_on_order(self) -> ReturnCase:
        on_order = {ln.sku for ln in self.order.lines}
        for i, it in enumerate(self.request.items):
            if it.sku not in on_order:
                raise ValueError(f"request.items.{i}.sku {it.sku!r} is not a line of the order")
        for i, pr in enumerate(self.prior_returns):
            if pr.sku not in on_order:
                raise ValueError(f"prior_returns.{i}.sku {pr.sku!r} is not a line of the order")
        return self

    def line(self, sku: str) -> Line:
        return next(ln for ln in self.order.lines if ln.sku == sku)

    def inspected(self, sku: str) -> InspectedItem | None:
        if self.inspection is None:
            return None
        return next((it for it in self.inspection.items if it.sku == sku), None)


# --- the verdict ----------------------------------------------------------------------


class ItemVerdict(BaseModel):
    sku: str = Field(description="A sku from the return request.")
    quantity_approved: int = Field(ge=0, description="Units accepted for return; 0 when denied.")
    refund_amount: Money = Field(description="Refund for these units before any restocking fee.")
    disposition: Disposition | None = Field(
        description="What happens to the goods; null when the item is denied."
    )


class ReturnVerdict(VerdictBase):
    """The decision on a return request."""

    outcome: Literal["approve", "approve_partial", "deny", "needs_review"]
    items: list[ItemVerdict] = Field(description="One entry per requested sku.")
    refund_method: Literal["original_payment", "store_credit", "exchange", "none"]
    refund_timing: Literal["immediate", "on_carrier_scan", "on_inspection", "none"]
    restocking_fee: Money = Field(description="Total fee withheld from the item refunds.")
    label_required: bool
    customer_message: str | None = Field(default=None, max_length=600)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_refund(self) -> Decimal:
        """What the customer receives: item refunds less the restocking fee."""
        return max(
            Decimal("0.00"),
            sum((i.refund_amount for i in self.items), Decimal("0.00")) - self.restocking_fee,
        )


# --- the parameters -------------------------------------------------------------------


def _yaml_money(value: Any) -> Any:
    # Ops experts write 500.00 in YAML, which parses as a float; its repr is exact enough.
    return str(value) if isinstance(value, float | int) and not isinstance(value, bool) else value


ParamMoney = Annotated[Decimal, BeforeValidator(_yaml_money), Field(ge=0, decimal_places=2)]


class ReturnParameters(ParametersBase):
    return_window_days: int = Field(ge=0, le=365)
    defect_window_days: int = Field(ge=0, le=3650)
    final_sale_categories: list[str] = Field(default_factory=list)
    hygiene_categories: list[str] = Field(default_factory=list)
    hazmat_categories: list[str] = Field(default_factory=list)
    refurbish_categories: list[str] = Field(default_factory=list)
    vendor_return_categories: list[str] = Field(default_factory=list)
    restocking_fee_categories: list[str] = Field(default_factory=list)
    restocking_fee_rate: Decimal = Field(ge=0, le=1)
    high_return_rate: float = Field(gt=0, le=1)
    high_return_min_orders: int = Field(ge=1)
    max_auto_refund: ParamMoney
    inspect_above_value: ParamMoney
    returnless_max_value: ParamMoney

    @field_validator("restocking_fee_rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        return _yaml_money(value)

    @model_validator(mode="after")
    def _coherent(self) -> ReturnParameters:
        if self.defect_window_days < self.return_window_days:
            raise ValueError(
                f"defect_window_days ({self.defect_window_days}) is shorter than "
                f"return_window_days ({self.return_window_days})"
            )
        if self.returnless_max_value > self.max_auto_refund:
            raise ValueError("returnless_max_value is above max_auto_refund")
        return self


# --- the deterministic policy ---------------------------------------------------------


@dataclass
class ItemFacts:
    """What the rules know about one requested item."""

    sku: str
    requested: int
    remaining: int
    unit_price: Decimal
    refundable: Decimal
    reason: str
    condition: str
    days: int | None
    fault: bool
    final_sale: bool
    hazmat: bool
    hygiene: bool
    mismatch: str | None
    deny: tuple[str, str] | None  # (clause, why) when a hard rule refuses the item
    judgement: list[str] = field(default_factory=list)  # why the LLM should read it
    # R2: a not_as_described item with an explanation (comment, photos, inspection) is a fault
    # or a change of mind by judgement. `deny` is then its refusal as a fault (the most a
    # verdict may grant) and `strict_deny` its refusal as a change of mind (R1, R3, R5).
    judged: bool = False
    strict_deny: tuple[str, str] | None = None


def high_return_customer(case: ReturnCase, p: ReturnParameters) -> bool:
    """R6: enough orders and a return rate at or above the threshold."""
    c = case.customer
    return (
        c.order_count >= p.high_return_min_orders
        and c.return_count >= p.high_return_rate * c.order_count
    )


def _refusal(
    p: ReturnParameters,
    *,
    as_fault: bool,
    remaining: int,
    days: int | None,
    final_sale: bool,
    condition: str,
) -> tuple[str, str] | None:
    """(clause, why) when a hard rule refuses an item read as a fault (R2) or not (R1, R3, R5)."""
    window = p.defect_window_days if as_fault else p.return_window_days
    if remaining == 0:
        return ("R4", "all units of this line were already returned")
    if days is not None and days > window:
        clause = "R2" if as_fault and window != p.return_window_days else "R1"
        return (clause, f"requested on day {days} after delivery; the window is {window} days")
    if final_sale and not as_fault:
        return ("R3", "final-sale line returned for a change of mind")
    if not as_fault and condition not in RESALEABLE:
        return ("R5", f"a change-of-mind return must be unused; condition is {condition}")
    return None


def _facts(case: ReturnCase, p: ReturnParameters) -> list[ItemFacts]:
    delivered = case.order.delivered_at
    out = []
    for it in case.request.items:
        line = case.line(it.sku)
        prior = [pr for pr in case.prior_returns if pr.sku == it.sku]
        remaining = max(0, line.quantity - sum(pr.quantity for pr in prior))
        paid = line.unit_price * line.quantity
        refundable = max(
            Decimal("0.00"), paid - sum((pr.refunded_amount for pr in prior), Decimal(0))
        )
        days = (utc_day(case.request.requested_at) - utc_day(delivered)).days if delivered else None
        insp = case.inspected(it.sku)
        condition = insp.condition if insp else it.condition
        fault = it.reason in FAULT_REASONS
        final_sale = line.category in p.final_sale_categories or "final_sale" in line.tags
        hazmat = line.category in p.hazmat_categories or "hazmat" in line.tags
        hygiene = line.category in p.hygiene_categories

        mismatch = None
        if fault and it.reason != "wrong_item" and condition == "new" and not insp:
            mismatch = f"reported {it.reason} but still sealed"
        elif fault and insp is not None and insp.defect_confirmed is False:
            mismatch = f"reported {it.reason} but inspection found no fault"
        elif insp is not None and CONDITION_RANK[insp.condition] > CONDITION_RANK[it.condition]:
            mismatch = f"reported {it.condition} but inspected {insp.condition}"

        # R2: not_as_described is judged from the explanation; with none it is a change of mind
        judged = it.reason == "not_as_described" and (
            bool(it.customer_comment)
            or it.photos > 0
            or (insp is not None and (insp.defect_confirmed is True or bool(insp.notes)))
        )
        refuse = partial(
            _refusal, p, remaining=remaining, days=days, final_sale=final_sale, condition=condition
        )
        deny = refuse(as_fault=fault or judged)

        facts = ItemFacts(
            sku=it.sku,
            requested=it.quantity,
            remaining=remaining,
            unit_price=line.unit_price,
            refundable=refundable,
            reason=it.reason,
            condition=condition,
            days=days,
            fault=fault,
            final_sale=final_sale,
            hazmat=hazmat,
            hygiene=hygiene,
            mismatch=mismatch,
            deny=deny,
            judged=judged,
            strict_deny=refuse(as_fault=fault) if judged else deny,
        )
        if deny is None:
            if judged or it.reason == "other":
                facts.judgement.append(f"reason {it.reason} needs the customer's explanation")
            if mismatch:
                facts.judgement.append(mismatch)
            if it.customer_comment:
                facts.judgement.append("customer comment to read")
            if insp is not None and insp.notes:
                facts.judgement.append("inspection notes to read")
        out.append(facts)
    return out


def rule_disposition(f: ItemFacts, p: ReturnParameters, category: str) -> Disposition:
    """R8: where the goods go, by hazard, hygiene, condition and category."""
    if f.hazmat:
        return "return_to_vendor" if f.condition == "new" else "destroy"
    if f.hygiene and f.condition != "new":
        return "destroy"
    if f.condition == "new" and not (f.reason == "defective"):
        return "restock"
    if f.reason == "defective" and category in p.vendor_return_categories:
        return "return_to_vendor"
    if f.condition == "opened" and not f.fault:
        return "refurbish" if category in p.refurbish_categories else "restock"
    if f.condition == "missing_parts":
        return "return_to_vendor" if category in p.vendor_return_categories else "liquidate"
    if category in p.refurbish_categories:
        return "refurbish"
    if f.condition == "damaged":
        return "destroy"
    return "liquidate"


def allowed_dispositions(f: ItemFacts, returnless_ok: bool) -> set[str]:
    """R8/R9: the dispositions a verdict may choose for an item."""
    if f.hazmat:
        allowed = {"return_to_vendor", "destroy"} if f.condition == "new" else {"destroy"}
    elif f.hygiene and f.condition != "new":
        allowed = {"destroy"}
    elif f.condition in RESALEABLE:
        allowed = {"restock", "refurbish", "liquidate", "return_to_vendor"}
    else:
        allowed = {"refurbish", "liquidate", "return_to_vendor", "destroy"}
    if returnless_ok:
        allowed.add("customer_keeps")
    return allowed


def returnless_ok(refund: Decimal, case: ReturnCase, p: ReturnParameters) -> bool:
    """R9: cheap enough to let the customer keep, and not a high-return customer."""
    return refund <= p.returnless_max_value and not high_return_customer(case, p)


def fee_for(f: ItemFacts, refund: Decimal, p: ReturnParameters, category: str) -> Decimal:
    """R10: restocking fee for an opened change-of-mind item in a fee category."""
    if (
        f.reason not in NO_FEE_REASONS
        and f.condition == "opened"
        and category in p.restocking_fee_categories
    ):
        return cents(refund * p.restocking_fee_rate)
    return Decimal("0.00")


def fee_readings(fixed: Decimal, judged: list[Decimal]) -> set[Decimal]:
    """R10 totals a verdict may charge: each judged item as a fault (no fee) or not (its fee)."""
    if len(judged) > 10:  # too many to list every mix: only the two whole readings
        return {fixed, fixed + sum(judged, Decimal(0))}
    return {
        fixed + sum(mix, Decimal(0))
        for n in range(len(judged) + 1)
        for mix in combinations(judged, n)
    }


def refund_method(case: ReturnCase) -> Literal["original_payment", "store_credit", "exchange"]:
    """R11."""
    if case.request.preferred_outcome == "exchange":
        return "exchange"
    if case.request.preferred_outcome == "store_credit" or case.order.payment_method == "gift_card":
        return "store_credit"
    return "original_payment"


def required_timing(
    case: ReturnCase, p: ReturnParameters, items: list[ItemVerdict]
) -> Literal["immediate", "on_carrier_scan", "on_inspection", "none"]:
    """R12 (and R6): when the refund may be released for these approved items."""
    approved = [i for i in items if i.quantity_approved > 0]
    if not approved:
        return "none"
    if high_return_customer(case, p) or any(
        i.refund_amount > p.inspect_above_value for i in approved
    ):
        return "on_inspection"
    if all(i.disposition == "customer_keeps" for i in approved):
        return "immediate"
    return "on_carrier_scan"


def _outcome(
    case: ReturnCase, items: list[ItemVerdict]
) -> Literal["approve", "approve_partial", "deny"]:
    requested = {it.sku: it.quantity for it in case.request.items}
    approved = [i for i in items if i.quantity_approved > 0]
    if not approved:
        return "deny"
    if all(i.quantity_approved >= requested[i.sku] for i in items):
        return "approve"
    return "approve_partial"


def _message(case: ReturnCase, v: ReturnVerdict) -> str:
    cur = case.order.currency
    rid = case.request.id
    if v.outcome == "deny":
        return f"We're sorry: return {rid} can't be accepted under our returns policy."
    if v.outcome == "needs_review":
        return f"Thanks for return request {rid}. A member of our team will review it shortly."
    when = {
        "immediate": "right away",
        "on_carrier_scan": "once the carrier scans your parcel",
        "on_inspection": "once we have inspected the returned items",
        "none": "",
    }[v.refund_timing]
    how = {
        "original_payment": "to your original payment method",
        "store_credit": "as store credit",
        "exchange": "as an exchange",
        "none": "",
    }[v.refund_method]
    part = "partly approved" if v.outcome == "approve_partial" else "approved"
    msg = f"Your return {rid} is {part}: {v.total_refund} {cur} {how} {when}."
    if not v.label_required:
        msg += " You don't need to send the item back."
    return msg


class Returns(DecisionKind[ReturnCase, ReturnVerdict, ReturnParameters]):
    """Is this return eligible, how much is refunded, when, and where do the goods go."""

    name = "returns"
    Case = ReturnCase
    Verdict = ReturnVerdict
    Parameters = ReturnParameters
    guardrails_version = "returns-guard-1"
    clause_refs = frozenset(f"R{i}" for i in range(1, 15))

    # -- deterministic policy --
    def _rules(self, case: ReturnCase, p: ReturnParameters) -> tuple[ReturnVerdict, bool]:
        """The whole policy by rules; the flag says whether any item needs judgement."""
        facts = _facts(case, p)
        cited: set[str] = set()
        why: list[str] = []
        items: list[ItemVerdict] = []
        fee = Decimal("0.00")
        review = False
        if case.order.delivered_at is None or (case.request.requested_at < case.order.delivered_at):
            v = ReturnVerdict(
                outcome="needs_review",
                items=[
                    ItemVerdict(
                        sku=f.sku,
                        quantity_approved=0,
                        refund_amount=Decimal("0.00"),
                        disposition=None,
                    )
                    for f in facts
                ],
                refund_method="none",
                refund_timing="none",
                restocking_fee=Decimal("0.00"),
                label_required=False,
                cited_clauses=["R13"],
                rationale="The order has not been delivered yet (R13).",
                confidence=1.0,
            )
            v.customer_message = _message(case, v)
            return v, False
        for f in facts:
            category = case.line(f.sku).category
            refused = f.deny or f.strict_deny  # a judgement rules cannot make: the strict reading
            if refused:
                clause, reason = refused
                cited.add(clause)
                if f.deny is None:  # refused only as a change of mind: a person judges R2
                    review = True
                    cited.add("R2")
                    why.append(f"{f.sku}: {UNJUDGED_R2}; as a change of mind: {reason} ({clause})")
                else:
                    why.append(f"{f.sku}: {reason} ({clause})")
                items.append(
                    ItemVerdict(
                        sku=f.sku,
                        quantity_approved=0,
                        refund_amount=Decimal("0.00"),
                        disposition=None,
                    )
                )
                continue
            if f.mismatch:
                review = True
                cited.add("R5")
                why.append(f"{f.sku}: {f.mismatch} (R5)")
            qty = min(f.requested, f.remaining)
            if qty < f.requested:
                cited.add("R4")
                why.append(f"{f.sku}: only {qty} of {f.requested} units remain returnable (R4)")
            refund = min(cents(f.unit_price * qty), f.refundable)
            cited.update(
                {"R1", "R2"} if f.reason == "not_as_described" else {"R2" if f.fault else "R1"}
            )
            disposition = rule_disposition(f, p, category)
            if returnless_ok(refund, case, p):
                disposition = "customer_keeps"
                cited.add("R9")
            cited.add("R8")
            item_fee = fee_for(f, refund, p, category)
            if item_fee and f.judged:  # no fee as a fault, a fee as a change of mind
                review = True
                cited.update({"R2", "R10"})
                why.append(
                    f"{f.sku}: {UNJUDGED_R2}; as a change of mind it carries the "
                    f"restocking fee {item_fee} (R10)"
                )
            elif item_fee:
                cited.add("R10")
                why.append(f"{f.sku}: restocking fee {item_fee} (R10)")
            fee += item_fee
            items.append(
                ItemVerdict(
                    sku=f.sku, quantity_approved=qty, refund_amount=refund, disposition=disposition
                )
            )
        timing = required_timing(case, p, items)
        if timing == "on_inspection":
            cited.add("R6" if high_return_customer(case, p) else "R12")
        approved = [i for i in items if i.quantity_approved > 0]
        outcome = "needs_review" if review else _outcome(case, items)
        if approved:
            cited.add("R11")
        v = ReturnVerdict(
            outcome=outcome,
            items=items,
            refund_method=refund_method(case) if approved else "none",
            refund_timing=timing,
            restocking_fee=fee,
            label_required=any(i.disposition != "customer_keeps" for i in approved),
            cited_clauses=sorted(cited, key=lambda c: int(c[1:])),
            rationale="; ".join(why)
            or "Within policy: " + ", ".join(f"{f.sku} {f.reason}" for f in facts),
            confidence=1.0,
        )
        v.customer_message = _message(case, v)
        return v, any(f.judgement for f in facts)

    def precheck(self, case: ReturnCase, params: ReturnParameters) -> ReturnVerdict | None:
        verdict, needs_judgement = self._rules(case, params)
        return None if needs_judgement else verdict

    def fallback(self, case: ReturnCase, params: ReturnParameters) -> ReturnVerdict:
        verdict, _ = self._rules(case, params)
        return verdict

    def review_reasons(
        self,
        case: ReturnCase,
        verdict: ReturnVerdict,
        params: ReturnParameters,
    ) -> list[str]:
        reasons = []
        if verdict.outcome == "needs_review":
            nad = any(it.reason == "not_as_described" for it in case.request.items)
            sends = ("R2", "R5", "R13") if nad else ("R5", "R13")
            reasons.append(
                "the policy sends this case to review ("
                + ", ".join(c for c in verdict.cited_clauses if c in sends)
                + ")"
            )
        if verdict.total_refund > params.max_auto_refund:
            reasons.append(
                f"total refund {verdict.total_refund} is above {params.max_auto_refund} (R7)"
            )
        return reasons

    def outcome(self, verdict: ReturnVerdict) -> str:
        return verdict.outcome

    def reference_date(self, case: ReturnCase) -> date:
        return utc_day(case.order.placed_at)

    def case_value(self, case: ReturnCase) -> Decimal:
        return sum(
            (case.line(it.sku).unit_price * it.quantity for it in case.request.items), Decimal(0)
        )

    def subjects(self, case: ReturnCase) -> tuple[str | None, str | None]:
        return case.order.id, case.customer.id

    # -- guardrails over an LLM verdict --
    def guard(
        self, case: ReturnCase, verdict: ReturnVerdict, params: ReturnParameters
    ) -> Guarded[ReturnVerdict]:
        p = params
        v = verdict.model_copy(deep=True)
        checks: list[Check] = []
        review: list[str] = []
        facts = {f.sku: f for f in _facts(case, p)}

        def check(
            name: str, problems: list[str], status: Literal["repaired", "failed"] = "repaired"
        ) -> None:
            checks.append(
                Check(
                    name=name,
                    status=status if problems else "passed",
                    detail="; ".join(problems) or None,
                )
            )

        # items name requested skus, once each; missing skus are denied
        seen: dict[str, ItemVerdict] = {}
        unknown = []
        for it in v.items:
            if it.sku not in facts or it.sku in seen:
                unknown.append(it.sku)
            else:
                seen[it.sku] = it
        check("items_match_request", [f"unknown or repeated sku {s}" for s in unknown], "failed")
        missing = [s for s in facts if s not in seen]
        v.items = [
            seen.get(s)
            or ItemVerdict(
                sku=s, quantity_approved=0, refund_amount=Decimal("0.00"), disposition=None
            )
            for s in facts
        ]
        check("items_cover_request", [f"{s} missing, treated as denied" for s in missing])

        qty_fix: list[str] = []
        refund_fix: list[str] = []
        hard: list[str] = []
        disp_fix: list[str] = []
        keep_fix: list[str] = []
        fee_required = Decimal("0.00")
        fee_judged: list[Decimal] = []  # R2: no fee if judged a fault, this fee if not
        for it in v.items:
            f = facts[it.sku]
            category = case.line(it.sku).category
            cap = min(f.requested, f.remaining)
            if it.quantity_approved > cap:
                qty_fix.append(f"{it.sku}: {it.quantity_approved} → {cap}")
                it.quantity_approved = cap
            max_refund = min(cents(f.unit_price * it.quantity_approved), f.refundable)
            if it.refund_amount > max_refund:
                refund_fix.append(f"{it.sku}: {it.refund_amount} → {max_refund}")
                it.refund_amount = max_refund
            if it.quantity_approved == 0:
                it.disposition = None
                continue
            if f.deny:
                hard.append(f"{it.sku} approved but {f.deny[1]} ({f.deny[0]})")
                continue
            ok_keep = returnless_ok(it.refund_amount, case, p)
            allowed = allowed_dispositions(f, ok_keep)
            if it.disposition not in allowed:
                fixed = rule_disposition(f, p, category)
                bad = "customer_keeps" if it.disposition == "customer_keeps" else None
                (keep_fix if bad else disp_fix).append(f"{it.sku}: {it.disposition} → {fixed}")
                it.disposition = fixed
            item_fee = fee_for(f, it.refund_amount, p, category)
            if f.judged and item_fee:
                fee_judged.append(item_fee)
            else:
                fee_required += item_fee
        check("quantity_within_request", qty_fix)
        check("refund_within_paid", refund_fix)
        check("hard_eligibility", hard, "failed")
        check("disposition_allowed", disp_fix)
        check("returnless_eligible", keep_fix)

        readings = fee_readings(fee_required, fee_judged)
        fee_problem = []
        if v.restocking_fee not in readings and fee_judged:
            fee_problem.append(
                f"restocking fee {v.restocking_fee} fits no reading of the not_as_described "
                f"items (R2, R10): {min(readings)} if all are faults, {max(readings)} if none "
                "is, or the fee of each item read as a change of mind"
            )
        elif v.restocking_fee not in readings:
            fee_problem.append(f"restocking fee {v.restocking_fee} → {fee_required} (R10)")
            v.restocking_fee = fee_required
        check("restocking_fee", fee_problem, "failed" if fee_judged else "repaired")

        approved = [i for i in v.items if i.quantity_approved > 0]
        timing = required_timing(case, p, v.items)
        timing_fix = []
        if v.refund_timing != timing and not (
            timing == "on_carrier_scan" and v.refund_timing == "on_inspection"
        ):
            timing_fix.append(f"{v.refund_timing} → {timing}")
            v.refund_timing = timing
        check("refund_timing", timing_fix)

        method = refund_method(case) if approved else "none"
        method_fix = []
        if v.refund_method != method:
            method_fix.append(f"{v.refund_method} → {method} (R11)")
            v.refund_method = method
        check("refund_method", method_fix)

        label = any(i.disposition != "customer_keeps" for i in approved)
        label_fix = []
        if v.label_required != label:
            label_fix.append(f"label_required {v.label_required} → {label}")
            v.label_required = label
        check("label_required", label_fix)

        outcome_fix = []
        if v.outcome != "needs_review":
            expected = _outcome(case, v.items)
            if v.outcome != expected:
                outcome_fix.append(f"{v.outcome} → {expected}")
                v.outcome = expected
        else:
            review.append("the LLM asked for review")
        check("outcome_consistent", outcome_fix)

        internal = [
            it.notes for it in (case.inspection.items if case.inspection else []) if it.notes
        ]
        leaks = message_problems(
            v.customer_message,
            customer=case.customer,
            forbidden=["return rate", "risk", "fraud", "internal"],
            internal_texts=internal,
        )
        check("customer_message_safe", leaks)
        if leaks or any(c.status == "repaired" for c in checks) or v.customer_message is None:
            v.customer_message = _message(case, v)
        return Guarded(verdict=v, checks=checks, review_reasons=review)


KIND = Returns()
