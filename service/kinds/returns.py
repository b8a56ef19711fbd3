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
    PERSONAL,
    Check,
    DecisionKind,
    Guarded,
    Money,
    ParametersBase,
    Ruling,
    StrictModel,
    Term,
    TermRule,
    Timestamp,
    UntrustedText,
    VerdictBase,
    cents,
    sample_json,
    term_paths,
    utc_day,
)
from service.kinds.common import Count, Customer, Line, Sku, compose_message

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


class ReturnOrder(StrictModel):
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


Order = ReturnOrder  # the name the kind's code uses; ReturnOrder in the API schema


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
    customer_message: Annotated[str, PERSONAL] | None = Field(default=None, max_length=600)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_refund(self) -> Money:
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
    category: str
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
    # verdict may grant) and `com_deny` its refusal as a change of mind (R1, R3, R5).
    judged: bool = False
    explained: bool = False  # the customer wrote a comment (R5: it may resolve a contradiction)
    com_deny: tuple[str, str] | None = None  # its refusal read as a change of mind

    @property
    def open_reading(self) -> bool:
        """Whether a judge may read the item against its stated reason class: an explained
        not_as_described as a fault (R2), or an explained fault as a change of mind in the
        customer's own words (R5, R14); never when it is refused either way."""
        return self.deny is None and (self.judged or (self.fault and self.explained))


@dataclass
class ReturnFacts:
    """What the rules know about a return request, computed once per decision."""

    items: list[ItemFacts]
    delivered: bool  # R13: delivered before the request
    high_return: bool  # R6
    needs_judgement: bool  # some item needs the model's reading (R2, R5, comments)


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


def analyse(case: ReturnCase, p: ReturnParameters) -> ReturnFacts:
    """The facts of a return request (per item, R6, R13)."""
    items = _item_facts(case, p)
    delivered = case.order.delivered_at is not None and (
        case.request.requested_at >= case.order.delivered_at
    )
    return ReturnFacts(
        items=items,
        delivered=delivered,
        high_return=high_return_customer(case, p),
        needs_judgement=delivered and any(f.judgement for f in items),
    )


def _item_facts(case: ReturnCase, p: ReturnParameters) -> list[ItemFacts]:
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
            category=line.category,
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
            explained=bool(it.customer_comment),
            com_deny=refuse(as_fault=False),
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


def returnless_ok(refund: Decimal, case: ReturnCase, p: ReturnParameters) -> bool:
    """R9: cheap enough to let the customer keep, and not a high-return customer."""
    return refund <= p.returnless_max_value and not high_return_customer(case, p)


def fee_for(
    f: ItemFacts, refund: Decimal, p: ReturnParameters, category: str, reason: str | None = None
) -> Decimal:
    """R10: restocking fee for an opened change-of-mind item in a fee category (`reason`: the
    reason it is read as, when a judge reads it against the stated one)."""
    if (
        (reason or f.reason) not in NO_FEE_REASONS
        and f.condition == "opened"
        and category in p.restocking_fee_categories
    ):
        return cents(refund * p.restocking_fee_rate)
    return Decimal("0.00")


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


@dataclass(frozen=True)
class ReturnReading:
    """One reading of a request's judgement parts: which explained not_as_described items are
    faults (R2), whether the reading is a judge's (the model's or a person's: the rules judge
    nothing, so their own reading sends R2 and R5 questions to review), and whether the
    verdict itself asks for review."""

    fault: frozenset[str] = frozenset()
    not_fault: frozenset[str] = frozenset()  # explained faults read as a change of mind
    judged: bool = False
    review: bool = False
    person: bool = False  # a reviewer's reading: the review R5 sends the case to

    def label(self) -> str:
        if not self.judged:
            return "the rules' reading"
        faults = ", ".join(sorted(self.fault)) or "none"
        mind = ", ".join(sorted(self.not_fault)) or "none"
        return (
            f"the reading with not_as_described faults: {faults}, faults read as a change of "
            f"mind: {mind}" + (" (review)" if self.review else "")
        )


NOT_DELIVERED = Term("not_delivered", "R13", "no", "not delivered yet: a person decides")
ITEM_TERMS = ("quantity_approved", "refund_amount", "disposition")


def _disposition_term(keeps: bool) -> TermRule:
    """R8's table, or R9's customer_keeps when the refund is small enough (never under R6)."""
    if keeps:
        return Term("returnless_eligible", "R9")

    def term(got: Any) -> Term:
        if got == "customer_keeps":
            return Term("returnless_eligible", "R9", why="not a returnless refund (R9, R6)")
        return Term("disposition_allowed", "R8")

    return term


def rule(
    case: ReturnCase, p: ReturnParameters, facts: ReturnFacts, reading: ReturnReading
) -> Ruling[ReturnVerdict]:
    """The policy's verdict under one reading, and the clause that determines each term."""
    terms: dict[str, TermRule] = {}
    if not facts.delivered:
        v = ReturnVerdict(
            outcome="needs_review",
            items=[
                ItemVerdict(
                    sku=f.sku, quantity_approved=0, refund_amount=Decimal("0.00"), disposition=None
                )
                for f in facts.items
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
        return Ruling(v, dict.fromkeys(term_paths(v), NOT_DELIVERED), reading.label())
    cited: set[str] = set()
    why: list[str] = []
    items: list[ItemVerdict] = []
    fee = Decimal("0.00")
    review = reading.review
    fee_judged = False  # some item's fee depends on its R2 reading: a fee is then no repair
    for f in facts.items:
        as_fault = f.sku in reading.fault or (f.fault and f.sku not in reading.not_fault)
        refused = f.deny or (None if as_fault else f.com_deny)  # f.deny: every reading
        if refused:
            clause, reason = refused
            cited.add(clause)
            if f.deny is None and not reading.judged:  # refused only as a change of mind
                review = True
                cited.add("R2")
                why.append(f"{f.sku}: {UNJUDGED_R2}; as a change of mind: {reason} ({clause})")
            else:
                why.append(f"{f.sku}: {reason} ({clause})")
            items.append(
                ItemVerdict(
                    sku=f.sku, quantity_approved=0, refund_amount=Decimal("0.00"), disposition=None
                )
            )
            for name in ITEM_TERMS:
                terms[f"items[{f.sku}].{name}"] = Term("hard_eligibility", clause, "no", reason)
            continue
        if f.mismatch and not (reading.judged and (f.explained or reading.person)):
            review = True  # R5: review unless the customer's own explanation resolves it
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
        disposition = rule_disposition(f, p, f.category)
        keeps = returnless_ok(refund, case, p)
        if keeps:
            disposition = "customer_keeps"
            cited.add("R9")
        cited.add("R8")
        mind = "changed_mind" if f.fault else None
        item_fee = Decimal("0.00") if as_fault else fee_for(f, refund, p, f.category, mind)
        if f.open_reading and fee_for(f, refund, p, f.category, mind):
            fee_judged = True
        if item_fee and f.judged and not reading.judged:  # no fee as a fault, one if not
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
        terms[f"items[{f.sku}].quantity_approved"] = Term("quantity_within_request", "R4", "down")
        terms[f"items[{f.sku}].refund_amount"] = Term("refund_within_paid", "R4", "down")
        terms[f"items[{f.sku}].disposition"] = _disposition_term(keeps)
    timing = required_timing(case, p, items)
    if timing == "on_inspection":
        cited.add("R6" if facts.high_return else "R12")
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
        or "Within policy: " + ", ".join(f"{f.sku} {f.reason}" for f in facts.items),
        confidence=1.0,
    )
    v.customer_message = _message(case, v)
    terms.update(
        {
            "outcome": Term("outcome_consistent", "R5" if review else "R4"),
            "refund_method": Term("refund_method", "R11"),
            "refund_timing": Term("refund_timing", "R6" if facts.high_return else "R12"),
            "restocking_fee": Term(
                "restocking_fee",
                "R10",
                "no",
                "the fee fits no reading of the not_as_described items (R2, R10): none for a "
                "fault, the fee of each item read as a change of mind",
            )
            if fee_judged
            else Term("restocking_fee", "R10"),
            "label_required": Term("label_required", "R9"),
        }
    )
    return Ruling(v, terms, reading.label())


MAX_READINGS = 64


def readings(
    facts: ReturnFacts, verdict: ReturnVerdict | None, *, person: bool = False
) -> list[ReturnReading]:
    """The rules' own reading, then (for a verdict to check) every reading of the explained
    not_as_described items as faults or not, with the verdict's own call on review."""
    own = [ReturnReading()]
    if verdict is None or not facts.delivered:
        return own
    review = verdict.outcome == "needs_review"
    open_ = [f for f in facts.items if f.open_reading]  # each read as stated, or against it
    if 2 ** len(open_) > MAX_READINGS:  # too many to list every mix: the two whole readings
        mixes: list[tuple[ItemFacts, ...]] = [(), tuple(open_)]
    else:
        mixes = [mix for n in range(len(open_) + 1) for mix in combinations(open_, n)]
    return own + [
        ReturnReading(
            fault=frozenset(f.sku for f in mix if not f.fault),
            not_fault=frozenset(f.sku for f in mix if f.fault),
            judged=True,
            review=review,
            person=person,
        )
        for mix in mixes
    ]


class Returns(DecisionKind[ReturnCase, ReturnVerdict, ReturnParameters]):
    """Is this return eligible, how much is refunded, when, and where do the goods go."""

    name = "returns"
    Case = ReturnCase
    Verdict = ReturnVerdict
    Parameters = ReturnParameters
    guardrails_version = "returns-guard-2"
    clause_refs = frozenset(f"R{i}" for i in range(1, 15))

    def example(self) -> dict[str, Any]:
        return sample_json("returns.json")

    def analyse(self, case: ReturnCase, params: ReturnParameters) -> ReturnFacts:
        return analyse(case, params)

    def precheck(
        self, case: ReturnCase, params: ReturnParameters, facts: ReturnFacts | None = None
    ) -> ReturnVerdict | None:
        facts = self.facts(case, params, facts)
        return None if facts.needs_judgement else self.fallback(case, params, facts)

    def rulings(
        self,
        case: ReturnCase,
        params: ReturnParameters,
        facts: ReturnFacts,
        verdict: ReturnVerdict | None,
        *,
        person: bool = False,
    ) -> list[Ruling[ReturnVerdict]]:
        return [rule(case, params, facts, r) for r in readings(facts, verdict, person=person)]

    def review_reasons(
        self,
        case: ReturnCase,
        verdict: ReturnVerdict,
        params: ReturnParameters,
        facts: ReturnFacts | None = None,
    ) -> list[str]:
        reasons = []
        if verdict.outcome == "needs_review":
            nad = any(it.reason == "not_as_described" for it in case.request.items)
            sends = ("R2", "R5", "R13") if nad else ("R5", "R13")
            clauses = [c for c in verdict.cited_clauses if c in sends]
            reasons.append(
                "the policy sends this case to review (" + ", ".join(clauses) + ")"
                if clauses
                else "the verdict asks for review"
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

    # -- guardrails over a verdict: shape first, then the rulings (base.guard), then wording --
    def prepare(
        self,
        case: ReturnCase,
        verdict: ReturnVerdict,
        params: ReturnParameters,
        facts: Any,
        *,
        person: bool = False,
    ) -> tuple[ReturnVerdict, list[Check]]:
        """One entry per requested sku: unknown or repeated skus fail, missing ones are denied."""
        v = verdict.model_copy(deep=True)
        requested = [f.sku for f in facts.items]
        seen: dict[str, ItemVerdict] = {}
        unknown = []
        for it in v.items:
            if it.sku not in requested or it.sku in seen:
                unknown.append(it.sku)
            else:
                seen[it.sku] = it
        missing = [s for s in requested if s not in seen]
        v.items = [
            seen.get(s)
            or ItemVerdict(
                sku=s, quantity_approved=0, refund_amount=Decimal("0.00"), disposition=None
            )
            for s in requested
        ]
        return v, [
            _check(
                "items_match_request", [f"unknown or repeated sku {s}" for s in unknown], "failed"
            ),
            _check("items_cover_request", [f"{s} missing, treated as denied" for s in missing]),
        ]

    def wording(
        self,
        case: ReturnCase,
        verdict: ReturnVerdict,
        params: ReturnParameters,
        facts: Any,
        *,
        person: bool = False,
    ) -> tuple[ReturnVerdict, list[Check]]:
        """The message is the outcome's template with at most one checked sentence of the
        model's (nothing from inspection notes, no numbers, no internal data)."""
        internal = [
            it.notes for it in (case.inspection.items if case.inspection else []) if it.notes
        ]
        message, problems = compose_message(
            _message(case, verdict),
            verdict.customer_message,
            customer=case.customer,
            person=person,
            forbidden=[],
            internal_texts=internal,
        )
        v = verdict.model_copy(update={"customer_message": message})
        return v, [_check("customer_message_safe", problems)]

    def guard(
        self,
        case: ReturnCase,
        verdict: ReturnVerdict,
        params: ReturnParameters,
        facts: Any = None,
        *,
        strict: bool = False,
        person: bool = False,
    ) -> Guarded[ReturnVerdict]:
        guarded = super().guard(case, verdict, params, facts, strict=strict, person=person)
        if verdict.outcome == "needs_review":
            guarded.review_reasons.append("the LLM asked for review")
        return guarded


def _check(
    name: str, problems: list[str], status: Literal["repaired", "failed"] = "repaired"
) -> Check:
    return Check(
        name=name, status=status if problems else "passed", detail="; ".join(problems) or None
    )


KIND = Returns()
