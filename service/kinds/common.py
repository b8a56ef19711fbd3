"""Shapes and checks that more than one kind uses: order lines, customers, messages."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from service.kinds.base import Money, StrictModel

Count = Annotated[int, Field(strict=True, ge=1, le=10_000)]
Sku = Annotated[str, Field(min_length=1, max_length=64)]
Tag = Annotated[str, Field(max_length=64)]


class Line(StrictModel):
    sku: Sku
    title: str = Field(max_length=300)
    category: str = Field(max_length=64)
    quantity: Count
    unit_price: Money
    tags: list[Tag] = Field(default_factory=list, max_length=32)


class Customer(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    tenure_days: int = Field(ge=0)
    order_count: int = Field(ge=0)
    return_count: int = Field(ge=0)
    lifetime_value: Money
    flags: list[Tag] = Field(default_factory=list, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)


EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE = re.compile(r"\+?\d[\d ().-]{6,}\d")
MESSAGE_MAX = 600


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def message_problems(
    message: str | None,
    *,
    customer: Customer,
    forbidden: list[str],
    internal_texts: list[str],
) -> list[str]:
    """Why a customer message may not be sent: length, internal data, others' contacts."""
    if not message:
        return []
    problems = []
    if len(message) > MESSAGE_MAX:
        problems.append(f"longer than {MESSAGE_MAX} characters")
    if "<" in message and ">" in message:
        problems.append("contains markup; messages are plain text")
    lower = message.lower()
    for term in forbidden:
        if re.search(rf"(?<![a-z]){re.escape(term.lower())}(?![a-z])", lower):
            problems.append(f"mentions internal data ({term!r})")
    for text in internal_texts:
        words = text.strip().lower()
        if len(words) >= 12 and words[:40] in lower:
            problems.append("quotes an internal note")
    own_email = (customer.email or "").lower()
    for m in EMAIL.finditer(message):
        if m.group(0).lower() != own_email:
            problems.append(f"contains an email address that is not the customer's ({m.group(0)})")
    own_phone = _digits(customer.phone or "")
    for m in PHONE.finditer(message):
        digits = _digits(m.group(0))
        if len(digits) >= 7 and (not own_phone or digits[-7:] != own_phone[-7:]):
            problems.append("contains a phone number that is not the customer's")
    return problems
