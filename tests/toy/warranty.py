"""A toy fourth decision kind, `warranty`, that lives entirely in tests/: one module, one
spec (warranty.md), one prompt (warranty.md.j2), one eval suite (evals/warranty/).

Is a broken product under warranty, and is it repaired, replaced or refunded?
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field

from service.kinds.base import (
    MONEY,
    PERSONAL,
    DecisionKind,
    Money,
    ParametersBase,
    PersonalText,
    Ruling,
    StrictModel,
    Term,
    Timestamp,
    UntrustedText,
    VerdictBase,
    utc_day,
)


class Product(StrictModel):
    sku: str = Field(min_length=1, max_length=64)
    price: Money
    purchased_at: Timestamp


class Owner(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    name: PersonalText = Field(max_length=200)
    email: PersonalText | None = Field(default=None, max_length=254)


class WarrantyCase(StrictModel):
    claim_id: str = Field(min_length=1, max_length=64)
    claimed_at: Timestamp
    product: Product
    owner: Owner
    description: UntrustedText
    repairable: bool


class WarrantyVerdict(VerdictBase):
    """The answer to a warranty claim."""

    outcome: Literal["repair", "replace", "refund", "deny", "needs_review"]
    refund_amount: Annotated[Decimal, MONEY] = Field(ge=0, decimal_places=2)
    customer_message: Annotated[str, PERSONAL] | None = Field(default=None, max_length=600)


class WarrantyParameters(ParametersBase):
    warranty_days: int = Field(ge=0, le=3650)


class Warranty(DecisionKind[WarrantyCase, WarrantyVerdict, WarrantyParameters]):
    """Warranty claims: in time, repaired if it can be, else replaced; late claims denied."""

    name = "warranty"
    Case = WarrantyCase
    Verdict = WarrantyVerdict
    Parameters = WarrantyParameters
    guardrails_version = "warranty-guard-1"
    clause_refs = frozenset({"W1", "W2", "W3"})

    def _days(self, case: WarrantyCase) -> int:
        return (utc_day(case.claimed_at) - utc_day(case.product.purchased_at)).days

    def precheck(
        self, case: WarrantyCase, params: WarrantyParameters, facts: Any = None
    ) -> WarrantyVerdict | None:
        if self._days(case) > params.warranty_days:
            return WarrantyVerdict(
                outcome="deny",
                refund_amount=Decimal("0.00"),
                cited_clauses=["W1"],
                rationale=f"Claimed {self._days(case)} days after purchase (W1).",
                confidence=1.0,
            )
        return None

    def rulings(
        self,
        case: WarrantyCase,
        params: WarrantyParameters,
        facts: Any,
        verdict: WarrantyVerdict | None,
        *,
        person: bool = False,
    ) -> list[Ruling[WarrantyVerdict]]:
        """One reading: W1 denies late claims, W2 repairs, W3 replaces; no refund."""
        v = self.precheck(case, params)
        clause = "W1" if v else "W2" if case.repairable else "W3"
        if v is None:
            v = WarrantyVerdict(
                outcome="repair" if case.repairable else "replace",
                refund_amount=Decimal("0.00"),
                cited_clauses=[clause],
                rationale="In warranty and repairable (W2)."
                if case.repairable
                else "In warranty, not repairable: replaced (W3).",
                confidence=0.9,
            )
        terms: dict[str, Any] = {
            "outcome": Term(check="outcome_per_policy", clause=clause, repair="no"),
            "refund_amount": Term(check="refund_within_price", clause="W3", repair="down"),
        }
        return [Ruling(verdict=v, terms=terms)]

    def reference_date(self, case: WarrantyCase) -> date:
        return utc_day(case.claimed_at)

    def case_value(self, case: WarrantyCase) -> Decimal:
        return case.product.price

    def subjects(self, case: WarrantyCase) -> tuple[str | None, str | None]:
        return case.claim_id, case.owner.id

    def example(self) -> dict[str, Any]:
        return {
            "claim_id": "WC-1001",
            "claimed_at": "2026-11-20T10:00:00Z",
            "product": {
                "sku": "KETTLE-2",
                "price": "59.00",
                "purchased_at": "2026-06-01T12:00:00Z",
            },
            "owner": {"id": "CUS-9", "name": "Robin Vale", "email": "robin@example.com"},
            "description": "It stopped heating after a week.",
            "repairable": True,
        }


KIND = Warranty()
