"""The `exceptions` decision kind: what to do with an order that hit a problem."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    RootModel,
    model_validator,
)

from service.kinds.base import (
    PERSONAL,
    UNTRUSTED,
    Check,
    Day,
    DecisionKind,
    Money,
    ParametersBase,
    Ruling,
    StrictModel,
    Term,
    TermRule,
    Timestamp,
    UntrustedText,
    VerdictBase,
    sample_json,
    utc_day,
)
from service.kinds.common import Count, Customer, Line, Sku, Tag, compose_message

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
    name: Annotated[str, PERSONAL, UNTRUSTED] = Field(max_length=200)
    line1: Annotated[str, PERSONAL, UNTRUSTED] = Field(max_length=200)
    line2: Annotated[str, PERSONAL, UNTRUSTED] | None = Field(default=None, max_length=200)
    city: Annotated[str, UNTRUSTED] = Field(max_length=100)
    region: Annotated[str, UNTRUSTED] | None = Field(default=None, max_length=100)
    postal_code: str = Field(max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$")


class ExceptionOrder(StrictModel):
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
    internal_notes: list[Annotated[str, Field(max_length=2000), PERSONAL, UNTRUSTED]] = Field(
        default_factory=list, max_length=50
    )

    @property
    def value(self) -> Decimal:
        return sum((ln.unit_price * ln.quantity for ln in self.lines), Decimal("0.00"))

    def line(self, sku: str) -> Line | None:
        return next((ln for ln in self.lines if ln.sku == sku), None)


Order = ExceptionOrder  # the name the kind's code uses; ExceptionOrder in the API schema


class Suggestion(StrictModel):
    id: str = Field(min_length=1, max_length=32)
    address: Address
    confidence: float = Field(ge=0, le=1)


class AddressInvalidDetails(StrictModel):
    validator: str = Field(default="unknown", max_length=64)
    result: Literal["invalid", "ambiguous", "unverifiable"]
    # a validator's messages echo the address it read: the customer's name and street
    messages: list[Annotated[str, Field(max_length=500), PERSONAL, UNTRUSTED]] = Field(
        default_factory=list, max_length=20
    )
    suggestions: list[Suggestion] = Field(default_factory=list, max_length=10)


class PaymentFailedDetails(StrictModel):
    decline_code: Tag
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
        units: dict[str, int] = {}
        for i, u in enumerate(self.details.unshipped):
            line = self.order.line(u.sku)
            if line is None:
                raise ValueError(f"details.unshipped.{i}.sku {u.sku!r} is not on the order")
            units[u.sku] = units.get(u.sku, 0) + u.quantity
            if units[u.sku] > line.quantity:  # E5: a capture is never above the items' value
                raise ValueError(
                    f"details.unshipped.{i}.quantity exceeds the ordered quantity ({line.quantity})"
                )
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

    @property
    def risk(self) -> int:
        """The order's risk score for E9: the higher of the order's and the provider's, so
        two disagreeing scores never release (or spare from cancelling) a high-risk order."""
        return max(self.order.risk_score, self.details.risk_score)


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
    customer_message: Annotated[str, PERSONAL] | None = Field(default=None, max_length=600)


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


# --- the sub-policies: one per exception type --------------------------------------------


@dataclass
class Option:
    """An action the policy allows for the case, as the rules write it. `bounds` are fields
    the verdict may set itself within a clause's limits (field -> whether a value fits);
    `terms` bind this action's other fields (default: exactly the rules' value)."""

    verdict: ExceptionVerdict
    bounds: dict[str, Callable[[Any], bool]] = field(default_factory=dict)
    terms: dict[str, TermRule] = field(default_factory=dict)


@dataclass
class Ruleset:
    """What a sub-policy says of a case: the allowed options (the rules' choice first),
    whether the case needs judgement, and why any other action is refused."""

    options: list[Option]
    judgement: bool
    refuse: Callable[[str], Term | None] = lambda _action: None


def _opt(verdict: ExceptionVerdict, **kw: Any) -> Option:
    return Option(verdict, **kw)


def _address(case: AddressInvalidCase, p: ExceptionParameters, _vip: bool) -> Ruleset:
    d = case.details
    strong = [s for s in d.suggestions if s.confidence >= p.address_min_suggestion_confidence]
    explained = bool(case.customer_comment)
    judgement = explained or len(d.suggestions) > 1
    known = case.customer.order_count >= p.release_unverifiable_min_orders
    min_conf = p.address_min_suggestion_confidence
    ids = {s.id: s.confidence for s in d.suggestions}

    def suggestion_term(got: Any) -> Term:
        if got not in ids:
            return Term("hard_limits", "E2", "no", f"{got!r} is not a validator suggestion (E2)")
        return Term(
            "hard_limits",
            "E2",
            "no",
            f"{got} has confidence {ids[got]:.2f}; only the one suggestion of at least "
            f"{min_conf} is applied (E2)",
        )

    correct = (
        _opt(
            _v(
                "correct_address",
                case,
                ["E2"],
                f"one confident suggestion ({strong[0].id}, {strong[0].confidence:.2f})",
                suggestion_id=strong[0].id,
                hold=False,
            ),
            terms={"suggestion_id": suggestion_term},
        )
        if len(strong) == 1
        else None
    )
    release = _opt(
        _v(
            "release",
            case,
            ["E2"],
            f"unverifiable address for a customer with {case.customer.order_count} earlier orders"
            if known
            else "unverifiable address explained by the customer",
        )
    )
    contact = _opt(
        _v(
            "contact_customer",
            case,
            ["E2"],
            f"{strong[0].id} is confident but another suggestion may be plausible; the customer "
            "must confirm the address"
            if len(strong) == 1
            else "no single confident correction; the customer must confirm the address",
        )
    )
    unverifiable = d.result == "unverifiable"
    may_release = unverifiable and (known or explained)

    def refuse(action: str) -> Term | None:
        if action == "release" and not unverifiable:
            return Term(
                "hard_limits",
                "E2",
                "no",
                f"the validator found the address {d.result}, not unverifiable: never released "
                "as it is (E2)",
            )
        if action == "release":
            return Term(
                "hard_limits",
                "E2",
                "no",
                f"an unverifiable address is released for customers with at least "
                f"{p.release_unverifiable_min_orders} earlier orders ({case.customer.order_count})"
                " or with a comment that explains it (E2)",
            )
        if action == "correct_address":
            return Term(
                "hard_limits", "E2", "no", f"no single suggestion of confidence ≥ {min_conf} (E2)"
            )
        return None

    if correct is not None and len(d.suggestions) == 1 and not unverifiable:
        return Ruleset([correct], explained, refuse)
    first = [release] if unverifiable and known else [contact]
    options = first + ([contact] if first[0] is release else [])
    if may_release and release not in options:
        options.append(release)
    if correct is not None:
        options.append(correct)  # several suggestions: whether the others are plausible
    return Ruleset(options, judgement if first[0] is release else True, refuse)


def _payment_failed(case: PaymentFailedCase, p: ExceptionParameters, vip: bool) -> Ruleset:
    d = case.details
    retry_at = d.last_attempt_at + timedelta(hours=p.retry_spacing_hours)
    expired = d.auth_expires_at is not None and retry_at >= d.auth_expires_at
    explained = bool(case.customer_comment)

    def refuse(action: str) -> Term | None:
        if action != "retry_payment":
            return None
        if d.decline_code in p.hard_decline_codes or d.decline_code in p.contact_decline_codes:
            why = f"decline {d.decline_code} must not be retried (E3/E4)"
        elif d.attempts >= p.max_payment_retries:
            why = f"retry budget of {p.max_payment_retries} is spent (E4)"
        else:
            why = "the next retry would be at or after the authorization's expiry (E4)"
        return Term("hard_limits", "E4", "no", why)

    if d.decline_code in p.hard_decline_codes:
        if vip:
            hold = _v("hold", case, ["E3", "E11"], "hard decline for a VIP customer: held")
            return Ruleset([_opt(hold)], False, refuse)
        return Ruleset(
            [_opt(_v("cancel_order", case, ["E3"], f"hard decline ({d.decline_code})"))],
            False,
            refuse,
        )
    if d.decline_code in p.contact_decline_codes:
        contact = _v("contact_customer", case, ["E4"], "the customer must fix the card")
        return Ruleset([_opt(contact)], False, refuse)
    if d.attempts >= p.max_payment_retries or expired:
        why = "retry budget spent" if not expired else "next retry would be after auth expiry"
        return Ruleset([_opt(_v("contact_customer", case, ["E4"], why))], explained, refuse)

    def fits(value: Any) -> bool:
        return (
            isinstance(value, datetime)
            and value >= retry_at
            and not (d.auth_expires_at is not None and value >= d.auth_expires_at)
        )

    def retry_term(got: Any) -> Term:
        if isinstance(got, str):  # terms are compared in their JSON form
            got = datetime.fromisoformat(got.replace("Z", "+00:00"))
        if isinstance(got, datetime) and got < retry_at:
            why = f"sooner than {p.retry_spacing_hours}h after the last attempt (E4)"
        elif isinstance(got, datetime):
            why = "at or after the authorization expiry (E4)"
        else:
            why = "retry_payment needs retry_at (E4)"
        return Term("hard_limits", "E4", "no", why)

    retry = _v(
        "retry_payment",
        case,
        ["E4"],
        f"soft decline ({d.decline_code}); retry {d.attempts + 1} of {p.max_payment_retries}",
        retry_at=retry_at,
        hold=True,
    )
    contact = _v("contact_customer", case, ["E4"], "the customer is asked to pay another way")
    return Ruleset(
        [_opt(retry, bounds={"retry_at": fits}, terms={"retry_at": retry_term}), _opt(contact)],
        explained,
        refuse,
    )


def ready_value(case: PaymentAuthExpiringCase) -> Decimal:
    total = Decimal("0.00")
    for u in case.details.unshipped:
        line = case.order.line(u.sku)
        if u.ready_to_ship and line is not None:
            total += line.unit_price * u.quantity
    return total


def _auth_expiring(case: PaymentAuthExpiringCase, p: ExceptionParameters, _vip: bool) -> Ruleset:
    d = case.details
    ready = [u for u in d.unshipped if u.ready_to_ship]
    judgement = bool(case.customer_comment)
    urgent = d.expires_at - d.as_of <= timedelta(hours=p.auth_expiry_buffer_hours)
    amount = min(ready_value(case), d.authorized_amount)
    ship = _v("ship_available_now", case, ["E5"], "ship what is ready")
    capture = _opt(
        _v(
            "capture_partial",
            case,
            ["E5"],
            f"capture {amount} for the ready items",
            capture_amount=amount,
        ),
        terms={"capture_amount": Term("action_fields", "E5", "down")},
    )
    reauth = _v("reauthorize", case, ["E5"], "nothing is ready before the auth expires", hold=True)
    contact = _v("contact_customer", case, ["E5"], "re-authorization already failed")
    if d.reauthorization_failed and len(ready) < len(d.unshipped):
        first = _opt(contact)
    elif len(ready) == len(d.unshipped):
        first = _opt(ship.model_copy(update={"rationale": "everything unshipped is ready"}))
    elif ready and not urgent:
        first = _opt(
            ship.model_copy(
                update={
                    "rationale": "ship what is ready; the authorization is good for more "
                    f"than {p.auth_expiry_buffer_hours}h"
                }
            )
        )
    elif ready:
        first = capture
    else:
        first = _opt(reauth)
    options = [first]
    if not urgent:  # E5 binds authorizations that expire within the buffer only
        others = [_opt(reauth), _opt(contact)]
        if ready:
            others += [_opt(ship), capture]
        options += [o for o in others if o.verdict.action != first.verdict.action]

    def refuse(_action: str) -> Term | None:
        if urgent:
            return Term(
                "hard_limits",
                "E5",
                "no",
                f"the authorization expires within {p.auth_expiry_buffer_hours}h with "
                f"{len(ready)} of {len(d.unshipped)} unshipped lines ready: "
                f"{first.verdict.action} (E5)",
            )
        return None

    return Ruleset(options, judgement, refuse)


def _shortfall(case: InventoryShortfallCase, p: ExceptionParameters, vip: bool) -> Ruleset:
    d = case.details
    judgement = bool(case.customer_comment) or bool(d.alternatives)
    placed = utc_day(case.order.placed_at)
    short = {s.sku: s.quantity_short for s in d.short_lines}
    others_ship = any(ln.quantity > short.get(ln.sku, 0) for ln in case.order.lines)
    wait = (d.restock_eta - placed).days if d.restock_eta is not None else None
    soon = wait is not None and wait <= p.max_backorder_days
    subs = eligible_substitutes(case, p)
    offered = {a.sku for a in d.alternatives}

    def sub_term(got: Any) -> Term:
        why = (
            f"substitute {got!r} was not offered (E7)"
            if got not in offered
            else f"substitute {got} lacks stock or is outside the price tolerance (E7)"
        )
        return Term("hard_limits", "E7", "no", why)

    substitutes = [
        _opt(
            _v(
                "substitute",
                case,
                ["E7"],
                f"{sku} is an offered alternative within the price tolerance",
                substitute_sku=sku,
            ),
            bounds={"substitute_sku": lambda got: got in subs},
            terms={"substitute_sku": sub_term},
        )
        for sku in subs[:1]
    ]
    restock = d.restock_eta
    backorder = _opt(
        _v(
            "backorder",
            case,
            ["E6"],
            f"restock on {restock} is within {p.max_backorder_days} days",
            expected_ship_date=restock,
        ),
        bounds={"expected_ship_date": lambda got: got is not None and got >= restock},
        terms={"expected_ship_date": Term("action_fields", "E6")},
    )
    split = _opt(
        _v("split_ship", case, ["E6"], f"ship what is in stock; the rest follows on {restock}")
    )
    contact = _opt(
        _v(
            "contact_customer",
            case,
            ["E8"] + (["E11"] if vip else []),
            "restock too late and no fitting substitute: offer to cancel the short lines",
        )
    )
    cancel = _opt(
        _v("cancel_lines", case, ["E8"], "no restock date", cancel_skus=sorted(short)),
        terms={"cancel_skus": Term("action_fields", "E8")},
    )
    if soon:
        options = ([split, backorder] if others_ship else [backorder]) + substitutes
    elif substitutes:
        options = [*substitutes, contact]
    elif restock is None and not vip:
        options = [cancel]
    else:
        options = [contact]

    def refuse(action: str) -> Term | None:
        if action == "substitute":
            return Term("hard_limits", "E7", "no", "no offered alternative fits E7")
        if action in ("backorder", "split_ship") and not soon:
            when = f"restock {wait} days after the order" if wait is not None else "no restock date"
            return Term(
                "hard_limits",
                "E6",
                "no",
                f"{when}: waiting is for at most {p.max_backorder_days} days (E6, E8)",
            )
        if action == "cancel_lines" and vip:
            return Term("automatic_limits", "E11", "no", "a VIP order is never cancelled (E11)")
        return None

    return Ruleset(options, judgement, refuse)


def _fraud(case: FraudReviewCase, p: ExceptionParameters, vip: bool) -> Ruleset:
    d = case.details
    risk = case.risk
    strong = set(d.signals) & set(p.strong_fraud_signals)
    explained = bool(case.customer_comment)
    escalate_why = f"risk {risk} with signals {', '.join(d.signals) or 'none'}: fraud team decides"

    def refuse(action: str) -> Term | None:
        if action == "release" and risk >= p.hard_fraud_threshold:
            return Term(
                "automatic_limits",
                "E9",
                "no",
                f"release with risk {risk} ≥ {p.hard_fraud_threshold} (E9)",
            )
        if action == "cancel_order" and vip:
            return Term(
                "automatic_limits",
                "E11",
                "no",
                "a VIP order is never cancelled automatically (E11)",
            )
        # whatever E9 would do automatically, the fraud team may decide otherwise; a model not
        return Term("automatic_limits", "E9", "no", "the fraud team decides this order (E9)")

    if risk >= p.auto_cancel_fraud_threshold:
        if vip:
            esc = _v("escalate", case, ["E9", "E11"], f"risk {risk}: VIP, escalated, not cancelled")
            return Ruleset(
                [_opt(esc), _opt(_v("hold", case, ["E9", "E11"], esc.rationale))], False, refuse
            )
        cancel = _v("cancel_order", case, ["E9"], f"risk {risk} at or above the cancel threshold")
        return Ruleset([_opt(cancel)], False, refuse)
    if risk >= p.hard_fraud_threshold:
        esc = _v("escalate", case, ["E9"], f"risk {risk} at or above the hard threshold")
        return Ruleset([_opt(esc)], explained, refuse)
    if risk < p.release_below_risk and not strong:
        release = _v("release", case, ["E9"], f"risk {risk} with no strong signal")
        return Ruleset([_opt(release)], explained, refuse)
    esc = _v("escalate", case, ["E9"], escalate_why)
    release = _v("release", case, ["E9"], f"risk {risk}: the evidence explains the signals")
    return Ruleset([_opt(esc), _opt(release)], True, refuse)


def _split(case: SplitShipmentCase, p: ExceptionParameters, vip: bool) -> Ruleset:
    d = case.details
    promised = case.order.promised_by
    allowance = max(
        p.vip_split_max_extra_cost if vip else p.split_max_extra_cost,
        case.order.value * p.split_max_extra_cost_share,
    )
    judgement = bool(case.customer_comment)

    def refuse(action: str) -> Term | None:
        if action == "approve_split":
            return Term(
                "hard_limits",
                "E10",
                "no",
                f"extra cost {d.extra_cost} is above the allowance {allowance:.2f} and the "
                "promised date holds (E10)",
            )
        return None

    if promised is not None and d.consolidated_arrival > promised:
        split = _v(
            "approve_split",
            case,
            ["E10"],
            f"shipping together would miss the promised date {promised}",
        )
        return Ruleset([_opt(split)], judgement, refuse)
    if d.extra_cost <= allowance:
        split = _v(
            "approve_split",
            case,
            ["E10"] + (["E11"] if vip else []),
            f"extra cost {d.extra_cost} within {allowance:.2f}",
        )
        return Ruleset([_opt(split)], judgement, refuse)
    wait = _v(
        "wait_and_consolidate",
        case,
        ["E10"],
        f"extra cost {d.extra_cost} above {allowance:.2f}; ship together",
        wait_until=d.consolidate_date,
    )
    return Ruleset(
        [_opt(wait, terms={"wait_until": Term("action_fields", "E10")})],
        judgement or d.extra_cost <= allowance * 2,
        refuse,
    )


def _internal_address(case: Any) -> list[str]:
    return list(case.details.messages)


SubPolicy = Callable[[Any, ExceptionParameters, bool], Ruleset]
SUB_POLICIES: dict[str, tuple[SubPolicy, Callable[[Any], list[str]]]] = {
    "address_invalid": (_address, _internal_address),
    "payment_failed": (_payment_failed, lambda _c: []),
    "payment_auth_expiring": (_auth_expiring, lambda _c: []),
    "inventory_shortfall": (_shortfall, lambda _c: []),
    "fraud_review": (_fraud, lambda _c: []),
    "split_shipment": (_split, lambda _c: []),
}
"""Per exception type: its rules (E2-E11) and the internal texts of its details (E12)."""

ACTION_FIELDS: dict[str, str] = {
    "retry_at": "retry_payment",
    "suggestion_id": "correct_address",
    "capture_amount": "capture_partial",
    "expected_ship_date": "backorder",
    "substitute_sku": "substitute",
    "cancel_skus": "cancel_lines",
    "wait_until": "wait_and_consolidate",
}
"""Each action's own field; it does not apply to any other action (E1)."""
ACTION_FIELDS_OF = {action: name for name, action in ACTION_FIELDS.items()}


@dataclass
class ExceptionFacts:
    """What the rules know about an order exception, computed once per decision."""

    exception: str
    vip: bool
    rules: Ruleset
    internal: list[str]
    forbidden: list[str]

    @property
    def needs_judgement(self) -> bool:
        return self.rules.judgement or self.vip


def analyse(case: ExceptionCase, p: ExceptionParameters) -> ExceptionFacts:
    c = case.root
    vip = is_vip(c, p)
    policy, internal = SUB_POLICIES[c.exception]
    return ExceptionFacts(
        exception=c.exception,
        vip=vip,
        rules=policy(c, p, vip),
        internal=[*c.order.internal_notes, *internal(c)],
        forbidden=forbidden_terms(c),
    )


def rule(
    facts: ExceptionFacts, option: Option, verdict: ExceptionVerdict | None
) -> Ruling[ExceptionVerdict]:
    """The verdict of one option, with the verdict's own values where a clause leaves a range
    (retry time, ship date, substitute, extra tags), and the clause binding each term."""
    v = option.verdict.model_copy(deep=True)
    action = v.action
    allowed = ALLOWED[facts.exception]
    if verdict is not None:
        for name, fits in option.bounds.items():
            if fits(getattr(verdict, name)):
                setattr(v, name, getattr(verdict, name))
        extra = [t for t in verdict.tags if TAG.fullmatch(t) and not t.startswith("arbiter:")]
        v.tags = list(dict.fromkeys([*v.tags, *extra]))  # E14's tags; others are the model's

    def action_term(got: Any) -> Term:
        if got not in allowed:
            return Term(
                "action_allowed",
                "E1",
                "no",
                f"{got} is not allowed for {facts.exception} (E1): {', '.join(sorted(allowed))}",
            )
        return facts.rules.refuse(str(got)) or Term(
            "policy_action", v.cited_clauses[0], "no", f"the policy's action here is {action}"
        )

    terms: dict[str, TermRule] = {
        "action": action_term,
        "hold": Term("hold_consistent", "E1"),
        "tags": Term("tags", "E14"),
    }
    for name, owner in ACTION_FIELDS.items():
        terms[name] = (
            option.terms.get(name, Term("action_fields", v.cited_clauses[0]))
            if owner == action
            else Term("fields_apply_to_action", "E1", "no", f"{name} does not apply to {action}")
        )
    return Ruling(v, terms, action)


def refused(
    case: ExceptionCase, facts: ExceptionFacts, verdict: ExceptionVerdict
) -> Ruling[ExceptionVerdict]:
    """An action no option allows, written consistently (its hold, tags and own field), with
    the objection that refuses it: the verdict fails on the action alone, so a person can see
    (and, for limits of automatic decisions, pass with a second reviewer) just that."""
    first = facts.rules.options[0].verdict
    own = ACTION_FIELDS_OF.get(verdict.action)
    fields = {own: getattr(verdict, own)} if own else {}
    v = _v(verdict.action, case.root, first.cited_clauses, first.rationale, **fields)
    if verdict.action in ("retry_payment", "reauthorize"):
        v.hold = verdict.hold
    opt = Option(v, terms={own: Term("action_fields", first.cited_clauses[0], "no")} if own else {})
    ruling = rule(facts, opt, verdict)
    term = rule(facts, facts.rules.options[0], verdict).terms["action"]
    assert callable(term)
    objection = term(verdict.action)
    ruling.objections = [
        Check(
            name=objection.check,
            status="failed",
            detail=f"action is {verdict.action}; {objection.clause} determines "
            f"{first.action}: {objection.why}",
        )
    ]
    ruling.reading = f"{verdict.action} (refused)"
    return ruling


class Exceptions(DecisionKind[ExceptionCase, ExceptionVerdict, ExceptionParameters]):
    """What to do with an order whose address, payment, stock, risk or shipments went wrong."""

    name = "exceptions"
    Case = ExceptionCase
    Verdict = ExceptionVerdict
    Parameters = ExceptionParameters
    guardrails_version = "exceptions-guard-2"
    clause_refs = frozenset(f"E{i}" for i in range(1, 15))
    automatic_only = frozenset({"automatic_limits"})
    outcome_field = "action"

    def example(self) -> dict[str, Any]:
        return sample_json("exceptions.json")

    def analyse(self, case: ExceptionCase, params: ExceptionParameters) -> ExceptionFacts:
        return analyse(case, params)

    def precheck(
        self, case: ExceptionCase, params: ExceptionParameters, facts: Any = None
    ) -> ExceptionVerdict | None:
        facts = self.facts(case, params, facts)
        return None if facts.needs_judgement else self.fallback(case, params, facts)

    def rulings(
        self,
        case: ExceptionCase,
        params: ExceptionParameters,
        facts: ExceptionFacts,
        verdict: ExceptionVerdict | None,
        *,
        person: bool = False,
    ) -> list[Ruling[ExceptionVerdict]]:
        if verdict is None:
            return [rule(facts, facts.rules.options[0], None)]
        out = [rule(facts, o, verdict) for o in facts.rules.options]
        if verdict.action not in {o.verdict.action for o in facts.rules.options}:
            out.append(refused(case, facts, verdict))
        return out

    def outcome(self, verdict: ExceptionVerdict) -> str:
        return verdict.action

    def review_reasons(
        self,
        case: ExceptionCase,
        verdict: ExceptionVerdict,
        params: ExceptionParameters,
        facts: Any = None,
    ) -> list[str]:
        return ["escalated to a person (E9/E11)"] if verdict.action == "escalate" else []

    def reference_date(self, case: ExceptionCase) -> date:
        return utc_day(case.root.order.placed_at)

    def case_value(self, case: ExceptionCase) -> Decimal:
        value: Decimal = case.root.order.value
        return value

    def subjects(self, case: ExceptionCase) -> tuple[str | None, str | None]:
        return case.root.order.id, case.root.customer.id

    def wording(
        self,
        case: ExceptionCase,
        verdict: ExceptionVerdict,
        params: ExceptionParameters,
        facts: ExceptionFacts,
        *,
        person: bool = False,
    ) -> tuple[ExceptionVerdict, list[Check]]:
        """E12: the action's template with at most one checked sentence of the model's."""
        message, problems = compose_message(
            MESSAGES.get(verdict.action),
            verdict.customer_message,
            customer=case.root.customer,
            person=person,
            forbidden=facts.forbidden,
            internal_texts=facts.internal,
        )
        check = Check(
            name="customer_message_safe",
            status="repaired" if problems else "passed",
            detail="; ".join(problems) or None,
        )
        return verdict.model_copy(update={"customer_message": message}), [check]


KIND = Exceptions()
