"""The `exceptions` decision kind: what to do with an order that hit a problem."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    RootModel,
    model_validator,
)

from service.kinds.base import (
    Check,
    Day,
    DecisionKind,
    Guarded,
    Money,
    ParametersBase,
    StrictModel,
    Timestamp,
    UntrustedText,
    VerdictBase,
    utc_day,
)
from service.kinds.common import Count, Customer, Line, Sku, Tag, message_problems

ExceptionType = Literal[
    "address_invalid",
    "payment_failed",
    "payment_auth_expiring",
    "inventory_shortfall",
    "fraud_review",
    "split_shipment",
]
Action = Literal[
    "hold",
    "correct_address",
    "contact_customer",
    "release",
    "retry_payment",
    "cancel_order",
    "capture_partial",
    "reauthorize",
    "ship_available_now",
    "backorder",
    "substitute",
    "split_ship",
    "cancel_lines",
    "escalate",
    "approve_split",
    "wait_and_consolidate",
]
ALLOWED: dict[str, frozenset[str]] = {
    "address_invalid": frozenset({"hold", "correct_address", "contact_customer", "release"}),
    "payment_failed": frozenset({"retry_payment", "contact_customer", "cancel_order", "hold"}),
    "payment_auth_expiring": frozenset(
        {"capture_partial", "reauthorize", "contact_customer", "ship_available_now"}
    ),
    "inventory_shortfall": frozenset(
        {"backorder", "substitute", "split_ship", "cancel_lines", "contact_customer"}
    ),
    "fraud_review": frozenset({"hold", "release", "cancel_order", "escalate"}),
    "split_shipment": frozenset({"approve_split", "wait_and_consolidate", "escalate"}),
}
TAG = re.compile(r"[a-z0-9][a-z0-9:_-]{0,63}")
HOLDING = frozenset({"hold", "escalate", "contact_customer", "wait_and_consolidate", "backorder"})
Signal = Literal[
    "avs_mismatch",
    "cvv_mismatch",
    "velocity",
    "geo_mismatch",
    "ip_mismatch",
    "proxy_ip",
    "new_account",
    "email_age_low",
    "billing_shipping_mismatch",
]


# --- the case -------------------------------------------------------------------------


class Address(StrictModel):
    name: str = Field(max_length=200)
    line1: str = Field(max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(max_length=100)
    region: str | None = Field(default=None, max_length=100)
    postal_code: str = Field(max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$")


class Order(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    channel: str = Field(max_length=32)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    placed_at: Timestamp
    promised_by: Day | None = None
    payment_method: str = Field(max_length=32)
    payment_status: Literal[
        "authorized", "captured", "partially_captured", "failed", "pending", "refunded"
    ]
    risk_score: int = Field(ge=0, le=100)
    shipping_address: Address
    lines: list[Line] = Field(min_length=1, max_length=200)
    internal_notes: list[Annotated[str, Field(max_length=2000)]] = Field(
        default_factory=list, max_length=50
    )

    @property
    def value(self) -> Decimal:
        return sum((ln.unit_price * ln.quantity for ln in self.lines), Decimal("0.00"))

    def line(self, sku: str) -> Line | None:
        return next((ln for ln in self.lines if ln.sku == sku), None)


class Suggestion(StrictModel):
    id: str = Field(min_length=1, max_length=32)
    address: Address
    confidence: float = Field(ge=0, le=1)


class AddressInvalidDetails(StrictModel):
    validator: str = Field(default="unknown", max_length=64)
    result: Literal["invalid", "ambiguous", "unverifiable"]
    messages: list[Annotated[str, Field(max_length=500)]] = Field(
        default_factory=list, max_length=20
    )
    suggestions: list[Suggestion] = Field(default_factory=list, max_length=10)


class PaymentFailedDetails(StrictModel):
    decline_code: str = Field(max_length=64)
    attempts: int = Field(ge=1, le=100, description="Payment attempts made so far.")
    amount: Money
    last_attempt_at: Timestamp
    auth_expires_at: Timestamp | None = None


class UnshippedLine(StrictModel):
    sku: Sku
    quantity: Count
    ready_to_ship: bool
    expected_ship_date: Day | None = None


class PaymentAuthExpiringDetails(StrictModel):
    expires_at: Timestamp
    as_of: Timestamp
    authorized_amount: Money
    unshipped: list[UnshippedLine] = Field(min_length=1, max_length=200)
    reauthorization_failed: bool = False


class ShortLine(StrictModel):
    sku: Sku
    quantity_short: Count


class Alternative(StrictModel):
    sku: Sku
    title: str = Field(max_length=300)
    unit_price: Money
    in_stock: int = Field(ge=0)


class InventoryShortfallDetails(StrictModel):
    short_lines: list[ShortLine] = Field(min_length=1, max_length=200)
    restock_eta: Day | None = None
    alternatives: list[Alternative] = Field(default_factory=list, max_length=20)


class FraudReviewDetails(StrictModel):
    risk_score: int = Field(ge=0, le=100)
    signals: list[Signal] = Field(default_factory=list, max_length=20)
    provider: str = Field(default="internal", max_length=64)


class ShipmentLine(StrictModel):
    sku: Sku
    quantity: Count


class ProposedShipment(StrictModel):
    id: str = Field(min_length=1, max_length=32)
    location_id: str = Field(max_length=64)
    lines: list[ShipmentLine] = Field(min_length=1, max_length=200)
    ship_date: Day
    cost: Money


class SplitShipmentDetails(StrictModel):
    proposed: list[ProposedShipment] = Field(min_length=2, max_length=20)
    extra_cost: Money
    consolidate_date: Day
    consolidated_arrival: Day
    split_arrival: Day


class _CaseBase(StrictModel):
    order: Order
    customer: Customer
    customer_comment: UntrustedText | None = None


class AddressInvalidCase(_CaseBase):
    exception: Literal["address_invalid"]
    details: AddressInvalidDetails


class PaymentFailedCase(_CaseBase):
    exception: Literal["payment_failed"]
    details: PaymentFailedDetails


class PaymentAuthExpiringCase(_CaseBase):
    exception: Literal["payment_auth_expiring"]
    details: PaymentAuthExpiringDetails

    @model_validator(mode="after")
    def _skus(self) -> PaymentAuthExpiringCase:
        for i, u in enumerate(self.details.unshipped):
            if self.order.line(u.sku) is None:
                raise ValueError(f"details.unshipped.{i}.sku {u.sku!r} is not on the order")
        return self


class InventoryShortfallCase(_CaseBase):
    exception: Literal["inventory_shortfall"]
    details: InventoryShortfallDetails

    @model_validator(mode="after")
    def _skus(self) -> InventoryShortfallCase:
        for i, s in enumerate(self.details.short_lines):
            line = self.order.line(s.sku)
            if line is None:
                raise ValueError(f"details.short_lines.{i}.sku {s.sku!r} is not on the order")
            if s.quantity_short > line.quantity:
                raise ValueError(
                    f"details.short_lines.{i}.quantity_short exceeds the ordered "
                    f"quantity ({line.quantity})"
                )
        return self


class FraudReviewCase(_CaseBase):
    exception: Literal["fraud_review"]
    details: FraudReviewDetails


class SplitShipmentCase(_CaseBase):
    exception: Literal["split_shipment"]
    details: SplitShipmentDetails


AnyCase = Annotated[
    AddressInvalidCase
    | PaymentFailedCase
    | PaymentAuthExpiringCase
    | InventoryShortfallCase
    | FraudReviewCase
    | SplitShipmentCase,
    Field(discriminator="exception"),
]


class ExceptionCase(RootModel[AnyCase]):
    """An order exception; `details` depends on `exception`."""


# --- the verdict ----------------------------------------------------------------------


def _empty_none(value: Any) -> Any:
    return None if value == "" else value


class ExceptionVerdict(VerdictBase):
    """What to do with the order."""

    action: Action
    hold: bool = Field(description="Keep the order on hold until someone acts.")
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    retry_at: Annotated[Timestamp | None, BeforeValidator(_empty_none)] = Field(
        default=None, description="retry_payment: when to retry (UTC)."
    )
    suggestion_id: str | None = Field(
        default=None, description="correct_address: the id of the suggestion to use."
    )
    capture_amount: Money | None = Field(
        default=None, description="capture_partial: amount to capture now."
    )
    expected_ship_date: date | None = Field(default=None, description="backorder: ship date.")
    substitute_sku: str | None = Field(default=None, description="substitute: offered sku.")
    cancel_skus: list[Sku] = Field(default_factory=list, description="cancel_lines: skus.")
    wait_until: date | None = Field(default=None, description="wait_and_consolidate: date.")
    customer_message: str | None = Field(default=None, max_length=600)


# --- the parameters -------------------------------------------------------------------


def _yaml_decimal(value: Any) -> Any:
    return str(value) if isinstance(value, float | int) and not isinstance(value, bool) else value


ParamMoney = Annotated[Decimal, BeforeValidator(_yaml_decimal), Field(ge=0, decimal_places=2)]
Share = Annotated[Decimal, BeforeValidator(_yaml_decimal), Field(ge=0, le=1)]


class ExceptionParameters(ParametersBase):
    hard_fraud_threshold: int = Field(ge=0, le=100)
    auto_cancel_fraud_threshold: int = Field(ge=0, le=101)
    release_below_risk: int = Field(ge=0, le=100)
    strong_fraud_signals: list[Signal] = Field(default_factory=list)
    max_payment_retries: int = Field(ge=0, le=20)
    retry_spacing_hours: int = Field(ge=0, le=720)
    hard_decline_codes: list[str] = Field(default_factory=list)
    contact_decline_codes: list[str] = Field(default_factory=list)
    auth_expiry_buffer_hours: int = Field(ge=0, le=720)
    substitute_price_tolerance: Share
    max_backorder_days: int = Field(ge=0, le=365)
    split_max_extra_cost: ParamMoney
    split_max_extra_cost_share: Share
    vip_flags: list[str] = Field(default_factory=list)
    vip_split_max_extra_cost: ParamMoney
    address_min_suggestion_confidence: float = Field(ge=0, le=1)
    release_unverifiable_min_orders: int = Field(ge=0)

    @model_validator(mode="after")
    def _coherent(self) -> ExceptionParameters:
        if not (
            self.release_below_risk <= self.hard_fraud_threshold <= self.auto_cancel_fraud_threshold
        ):
            raise ValueError(
                "fraud thresholds must satisfy release_below_risk <= "
                "hard_fraud_threshold <= auto_cancel_fraud_threshold"
            )
        if set(self.hard_decline_codes) & set(self.contact_decline_codes):
            raise ValueError("a decline code cannot be both hard and contact")
        return self


# --- the deterministic policy ---------------------------------------------------------


def is_vip(case: Any, p: ExceptionParameters) -> bool:
    return bool(set(case.customer.flags) & set(p.vip_flags))


def eligible_substitutes(case: InventoryShortfallCase, p: ExceptionParameters) -> list[str]:
    """E7: offered alternatives with stock, within the price tolerance and not dearer."""
    if "no_substitutions" in case.customer.flags or len(case.details.short_lines) != 1:
        return []
    short = case.details.short_lines[0]
    line = case.order.line(short.sku)
    assert line is not None
    out = []
    for alt in sorted(
        case.details.alternatives,
        key=lambda a: (abs(a.unit_price - line.unit_price), -a.in_stock, a.sku),
    ):
        low = line.unit_price * (1 - p.substitute_price_tolerance)
        if alt.in_stock >= short.quantity_short and low <= alt.unit_price <= line.unit_price:
            out.append(alt.sku)
    return out


def forbidden_terms(case: Any) -> list[str]:
    """E12: words and values that reveal internal data."""
    terms = [
        "risk score",
        "risk_score",
        "fraud score",
        "fraud signal",
        "avs",
        "cvv",
        "velocity",
        "proxy",
        "decline code",
        "internal note",
        str(case.order.risk_score) + "/100",
    ]
    d = case.details
    if isinstance(d, FraudReviewDetails):
        terms += [s.replace("_", " ") for s in d.signals] + list(d.signals)
        terms.append(f"score {d.risk_score}")
        terms.append(f"score of {d.risk_score}")
    if isinstance(d, PaymentFailedDetails):
        terms.append(d.decline_code)
    return terms


def _v(action: str, case: Any, clauses: list[str], why: str, **fields: Any) -> ExceptionVerdict:
    hold = action in HOLDING or fields.pop("hold", False)
    return ExceptionVerdict(
        action=action,
        hold=hold,
        tags=[f"arbiter:{case.exception}", f"arbiter:{action}"],
        cited_clauses=clauses,
        rationale=why,
        confidence=1.0,
        customer_message=MESSAGES.get(action),
        **fields,
    )


MESSAGES = {
    "contact_customer": "We need a quick confirmation from you before we can ship your order. "
    "Please check your email and reply so we can continue.",
    "correct_address": "We corrected a small detail in your shipping address so your parcel "
    "arrives safely.",
    "cancel_order": "We're sorry: we could not complete your order and it has been cancelled. "
    "You have not been charged.",
    "backorder": "Part of your order is back in stock soon; we'll ship it as soon as it arrives.",
    "substitute": "One item was out of stock, so we're sending a close equivalent at no extra "
    "cost.",
    "split_ship": "Your order will arrive in more than one parcel.",
    "approve_split": "Your order will arrive in more than one parcel.",
    "cancel_lines": "Some items in your order are no longer available and have been cancelled; "
    "you will not be charged for them.",
}


def _address(case: AddressInvalidCase, p: ExceptionParameters) -> tuple[ExceptionVerdict, bool]:
    d = case.details
    strong = [s for s in d.suggestions if s.confidence >= p.address_min_suggestion_confidence]
    judgement = bool(case.customer_comment) or len(d.suggestions) > 1
    # "when several suggestions are plausible" the customer confirms: whether a weaker one is
    # plausible is a judgement, so rules correct automatically only to a lone suggestion
    if len(strong) == 1 and len(d.suggestions) == 1 and d.result != "unverifiable":
        return _v(
            "correct_address",
            case,
            ["E2"],
            f"one confident suggestion ({strong[0].id}, {strong[0].confidence:.2f})",
            suggestion_id=strong[0].id,
            hold=False,
        ), judgement
    if (
        d.result == "unverifiable"
        and case.customer.order_count >= p.release_unverifiable_min_orders
    ):
        return _v(
            "release",
            case,
            ["E2"],
            f"unverifiable address for a customer with {case.customer.order_count} earlier orders",
        ), judgement
    return _v(
        "contact_customer",
        case,
        ["E2"],
        f"{strong[0].id} is confident but another suggestion may be plausible; the customer "
        "must confirm the address"
        if len(strong) == 1
        else "no single confident correction; the customer must confirm the address",
    ), True


def _payment_failed(
    case: PaymentFailedCase, p: ExceptionParameters, vip: bool
) -> tuple[ExceptionVerdict, bool]:
    d = case.details
    if d.decline_code in p.hard_decline_codes:
        if vip:
            return _v(
                "hold", case, ["E3", "E11"], "hard decline for a VIP customer: held for a person"
            ), False
        return _v("cancel_order", case, ["E3"], f"hard decline ({d.decline_code})"), False
    if d.decline_code in p.contact_decline_codes:
        return _v("contact_customer", case, ["E4"], "the customer must fix the card"), False
    retry_at = d.last_attempt_at + timedelta(hours=p.retry_spacing_hours)
    expired = d.auth_expires_at is not None and retry_at >= d.auth_expires_at
    if d.attempts >= p.max_payment_retries or expired:
        why = "retry budget spent" if not expired else "next retry would be after auth expiry"
        return _v("contact_customer", case, ["E4"], why), bool(case.customer_comment)
    return _v(
        "retry_payment",
        case,
        ["E4"],
        f"soft decline ({d.decline_code}); retry {d.attempts + 1} of {p.max_payment_retries}",
        retry_at=retry_at,
        hold=True,
    ), bool(case.customer_comment)


def _auth_expiring(
    case: PaymentAuthExpiringCase, p: ExceptionParameters
) -> tuple[ExceptionVerdict, bool]:
    d = case.details
    ready = [u for u in d.unshipped if u.ready_to_ship]
    judgement = bool(case.customer_comment)
    if d.reauthorization_failed and len(ready) < len(d.unshipped):
        return _v("contact_customer", case, ["E5"], "re-authorization already failed"), judgement
    if len(ready) == len(d.unshipped):
        return _v("ship_available_now", case, ["E5"], "everything unshipped is ready"), judgement
    urgent = d.expires_at - d.as_of <= timedelta(hours=p.auth_expiry_buffer_hours)
    if ready and not urgent:
        return _v(
            "ship_available_now",
            case,
            ["E5"],
            "ship what is ready; the authorization "
            f"is good for more than {p.auth_expiry_buffer_hours}h",
        ), judgement
    if ready:
        amount = ready_value(case)
        return _v(
            "capture_partial",
            case,
            ["E5"],
            f"capture {amount} for the ready items",
            capture_amount=min(amount, d.authorized_amount),
        ), judgement
    return _v(
        "reauthorize", case, ["E5"], "nothing is ready before the auth expires", hold=True
    ), judgement


def ready_value(case: PaymentAuthExpiringCase) -> Decimal:
    total = Decimal("0.00")
    for u in case.details.unshipped:
        line = case.order.line(u.sku)
        if u.ready_to_ship and line is not None:
            total += line.unit_price * u.quantity
    return total


def _shortfall(
    case: InventoryShortfallCase, p: ExceptionParameters, vip: bool
) -> tuple[ExceptionVerdict, bool]:
    d = case.details
    judgement = bool(case.customer_comment) or bool(d.alternatives)
    placed = utc_day(case.order.placed_at)
    short = {s.sku: s.quantity_short for s in d.short_lines}
    others_ship = any(ln.quantity > short.get(ln.sku, 0) for ln in case.order.lines)
    if d.restock_eta is not None and (d.restock_eta - placed).days <= p.max_backorder_days:
        if others_ship:
            return _v(
                "split_ship",
                case,
                ["E6"],
                f"ship what is in stock; the rest follows on {d.restock_eta}",
            ), judgement
        return _v(
            "backorder",
            case,
            ["E6"],
            f"restock on {d.restock_eta} is within {p.max_backorder_days} days",
            expected_ship_date=d.restock_eta,
        ), judgement
    subs = eligible_substitutes(case, p)
    if subs:
        return _v(
            "substitute",
            case,
            ["E7"],
            f"{subs[0]} is an offered alternative within the price tolerance",
            substitute_sku=subs[0],
        ), judgement
    if d.restock_eta is None and not vip:
        return _v(
            "cancel_lines", case, ["E8"], "no restock date", cancel_skus=list(short)
        ), judgement
    return _v(
        "contact_customer",
        case,
        ["E8"] + (["E11"] if vip else []),
        "restock too late and no fitting substitute: offer to cancel the short lines",
    ), judgement


def _fraud(
    case: FraudReviewCase, p: ExceptionParameters, vip: bool
) -> tuple[ExceptionVerdict, bool]:
    d = case.details
    risk = d.risk_score
    strong = set(d.signals) & set(p.strong_fraud_signals)
    if risk >= p.auto_cancel_fraud_threshold:
        if vip:
            return _v(
                "escalate", case, ["E9", "E11"], f"risk {risk}: VIP, escalated instead of cancelled"
            ), False
        return _v(
            "cancel_order", case, ["E9"], f"risk {risk} at or above the cancel threshold"
        ), False
    if risk >= p.hard_fraud_threshold:
        return _v("escalate", case, ["E9"], f"risk {risk} at or above the hard threshold"), bool(
            case.customer_comment
        )
    if risk < p.release_below_risk and not strong:
        return _v("release", case, ["E9"], f"risk {risk} with no strong signal"), bool(
            case.customer_comment
        )
    return _v(
        "escalate",
        case,
        ["E9"],
        f"risk {risk} with signals {', '.join(d.signals) or 'none'}: fraud team decides",
    ), True


def _split(
    case: SplitShipmentCase, p: ExceptionParameters, vip: bool
) -> tuple[ExceptionVerdict, bool]:
    d = case.details
    promised = case.order.promised_by
    allowance = max(
        p.vip_split_max_extra_cost if vip else p.split_max_extra_cost,
        case.order.value * p.split_max_extra_cost_share,
    )
    judgement = bool(case.customer_comment)
    if promised is not None and d.consolidated_arrival > promised:
        return _v(
            "approve_split",
            case,
            ["E10"],
            f"shipping together would miss the promised date {promised}",
        ), judgement
    if d.extra_cost <= allowance:
        return _v(
            "approve_split",
            case,
            ["E10"] + (["E11"] if vip else []),
            f"extra cost {d.extra_cost} within {allowance:.2f}",
        ), judgement
    return _v(
        "wait_and_consolidate",
        case,
        ["E10"],
        f"extra cost {d.extra_cost} above {allowance:.2f}; ship together",
        wait_until=d.consolidate_date,
    ), judgement or d.extra_cost <= allowance * 2


class Exceptions(DecisionKind[ExceptionCase, ExceptionVerdict, ExceptionParameters]):
    """What to do with an order whose address, payment, stock, risk or shipments went wrong."""

    name = "exceptions"
    Case = ExceptionCase
    Verdict = ExceptionVerdict
    Parameters = ExceptionParameters
    guardrails_version = "exceptions-guard-1"
    clause_refs = frozenset(f"E{i}" for i in range(1, 15))
    automatic_only = frozenset({"automatic_limits"})

    def _rules(self, case: ExceptionCase, p: ExceptionParameters) -> tuple[ExceptionVerdict, bool]:
        c = case.root
        vip = is_vip(c, p)
        if isinstance(c, AddressInvalidCase):
            return _address(c, p)
        if isinstance(c, PaymentFailedCase):
            return _payment_failed(c, p, vip)
        if isinstance(c, PaymentAuthExpiringCase):
            return _auth_expiring(c, p)
        if isinstance(c, InventoryShortfallCase):
            return _shortfall(c, p, vip)
        if isinstance(c, FraudReviewCase):
            return _fraud(c, p, vip)
        assert isinstance(c, SplitShipmentCase)
        return _split(c, p, vip)

    def precheck(self, case: ExceptionCase, params: ExceptionParameters) -> ExceptionVerdict | None:
        verdict, judgement = self._rules(case, params)
        return None if judgement or is_vip(case.root, params) else verdict

    def fallback(self, case: ExceptionCase, params: ExceptionParameters) -> ExceptionVerdict:
        return self._rules(case, params)[0]

    def outcome(self, verdict: ExceptionVerdict) -> str:
        return verdict.action

    def review_reasons(
        self,
        case: ExceptionCase,
        verdict: ExceptionVerdict,
        params: ExceptionParameters,
    ) -> list[str]:
        return ["escalated to a person (E9/E11)"] if verdict.action == "escalate" else []

    def reference_date(self, case: ExceptionCase) -> date:
        return utc_day(case.root.order.placed_at)

    def case_value(self, case: ExceptionCase) -> Decimal:
        value: Decimal = case.root.order.value
        return value

    def subjects(self, case: ExceptionCase) -> tuple[str | None, str | None]:
        return case.root.order.id, case.root.customer.id

    # -- guardrails --
    def guard(
        self, case: ExceptionCase, verdict: ExceptionVerdict, params: ExceptionParameters
    ) -> Guarded[ExceptionVerdict]:
        p = params
        c = case.root
        v = verdict.model_copy(deep=True)
        checks: list[Check] = []

        def check(
            name: str, problems: list[str], status: Literal["repaired", "failed"] = "failed"
        ) -> None:
            checks.append(
                Check(
                    name=name,
                    status=status if problems else "passed",
                    detail="; ".join(problems) or None,
                )
            )

        allowed = ALLOWED[c.exception]
        check(
            "action_allowed",
            []
            if v.action in allowed
            else [
                f"{v.action} is not allowed for {c.exception} (E1): {', '.join(sorted(allowed))}"
            ],
        )
        hard: list[str] = []
        repaired: list[str] = []
        automatic: list[str] = []  # limits of automatic decisions only (E9, E11)
        if isinstance(c, FraudReviewCase):
            if v.action == "release" and c.details.risk_score >= p.hard_fraud_threshold:
                automatic.append(
                    f"release with risk {c.details.risk_score} ≥ {p.hard_fraud_threshold} (E9)"
                )
        if v.action == "cancel_order" and is_vip(c, p):
            automatic.append("a VIP order is never cancelled automatically (E11)")
        if isinstance(c, PaymentFailedCase) and v.action == "retry_payment":
            if v.retry_at is None:
                hard.append("retry_payment without retry_at")
            else:
                earliest = c.details.last_attempt_at + timedelta(hours=p.retry_spacing_hours)
                if v.retry_at < earliest:
                    hard.append(
                        f"retry_at {v.retry_at.isoformat()} is sooner than "
                        f"{p.retry_spacing_hours}h after the last attempt (E4)"
                    )
                if (
                    c.details.auth_expires_at is not None
                    and v.retry_at >= c.details.auth_expires_at
                ):
                    hard.append("retry_at is at or after the authorization expiry (E4)")
            if c.details.attempts >= p.max_payment_retries:
                hard.append(f"retry budget of {p.max_payment_retries} is spent (E4)")
            if (
                c.details.decline_code in p.hard_decline_codes
                or c.details.decline_code in p.contact_decline_codes
            ):
                hard.append(f"decline {c.details.decline_code} must not be retried (E3/E4)")
        if isinstance(c, AddressInvalidCase) and v.action == "correct_address":
            ids = {s.id for s in c.details.suggestions}
            if v.suggestion_id not in ids:
                hard.append(
                    f"correct_address to {v.suggestion_id!r}, which is not a "
                    "validator suggestion (E2)"
                )
        if isinstance(c, InventoryShortfallCase):
            if v.action == "substitute":
                alt = next((a for a in c.details.alternatives if a.sku == v.substitute_sku), None)
                if alt is None:
                    hard.append(f"substitute {v.substitute_sku!r} was not offered (E7)")
                elif v.substitute_sku not in eligible_substitutes(c, p):
                    hard.append(
                        f"substitute {alt.sku} lacks stock or is outside the price tolerance (E7)"
                    )
            if v.action == "backorder":
                if c.details.restock_eta is None:
                    hard.append("backorder without a restock date (E6)")
                elif v.expected_ship_date is None or v.expected_ship_date < c.details.restock_eta:
                    repaired.append(
                        f"expected_ship_date {v.expected_ship_date} → {c.details.restock_eta}"
                    )
                    v.expected_ship_date = c.details.restock_eta
            if v.action == "cancel_lines":
                short = {s.sku for s in c.details.short_lines}
                extra = [s for s in v.cancel_skus if s not in short]
                if extra or not v.cancel_skus:
                    repaired.append(f"cancel_skus {v.cancel_skus} → {sorted(short)}")
                    v.cancel_skus = sorted(short)
        if isinstance(c, PaymentAuthExpiringCase) and v.action == "capture_partial":
            cap = min(ready_value(c), c.details.authorized_amount)
            if cap == 0:
                hard.append("capture_partial with no item ready to ship (E5)")
            elif v.capture_amount is None or v.capture_amount > cap:
                repaired.append(f"capture_amount {v.capture_amount} → {cap}")
                v.capture_amount = cap
        if isinstance(c, SplitShipmentCase) and v.action == "wait_and_consolidate":
            if v.wait_until != c.details.consolidate_date:
                repaired.append(f"wait_until {v.wait_until} → {c.details.consolidate_date}")
                v.wait_until = c.details.consolidate_date
        check("automatic_limits", automatic)
        check("hard_limits", hard)
        check("action_fields", repaired, "repaired")

        hold = v.action in HOLDING or (v.action in ("retry_payment", "reauthorize") and v.hold)
        hold_fix = []
        if v.action == "release" and v.hold:
            hold = False
        if v.hold != hold:
            hold_fix.append(f"hold {v.hold} → {hold}")
            v.hold = hold
        check("hold_consistent", hold_fix, "repaired")

        tags = [f"arbiter:{c.exception}", f"arbiter:{v.action}"]
        missing_tags = [t for t in tags if t not in v.tags]
        v.tags = list(dict.fromkeys([*tags, *[t for t in v.tags if TAG.fullmatch(t)]]))
        check(
            "tags", [f"added {', '.join(missing_tags)} (E14)"] if missing_tags else [], "repaired"
        )

        problems = message_problems(
            v.customer_message,
            customer=c.customer,
            forbidden=forbidden_terms(c),
            internal_texts=list(c.order.internal_notes),
        )
        if problems:
            v.customer_message = MESSAGES.get(v.action)
        check("customer_message_safe", problems, "repaired")
        return Guarded(verdict=v, checks=checks)


KIND = Exceptions()
