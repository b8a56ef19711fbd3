"""Routing case, parameters and plan shapes (shared by the planner and the kind)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from service.kinds.base import Day, Money, ParametersBase, StrictModel, Timestamp, VerdictBase
from service.kinds.common import Count, Sku, Tag


class Destination(StrictModel):
    postal_code: str = Field(max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class OrderLine(StrictModel):
    sku: Sku
    quantity: Count
    tags: list[Tag] = Field(default_factory=list, max_length=32)

    @property
    def group(self) -> str | None:
        """The ship-together group of the line, if any."""
        return next((t.split(":", 1)[1] for t in self.tags if t.startswith("ship_together:")), None)


class RoutingOrder(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    placed_at: Timestamp
    promised_by: Day
    shipping_method: Literal["standard", "express", "next_day"]
    destination: Destination
    lines: list[OrderLine] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique(self) -> RoutingOrder:
        skus = [ln.sku for ln in self.lines]
        if len(set(skus)) != len(skus):
            raise ValueError("each sku may appear on one line only")
        return self


class CarrierOption(StrictModel):
    carrier: str = Field(max_length=64)
    service: str = Field(max_length=64)
    cost: Money
    transit_days: int = Field(ge=0, le=60)
    on_time_rate: float = Field(ge=0, le=1)
    co2_kg: float = Field(ge=0, le=10_000)


class Location(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    type: Literal["warehouse", "store", "3pl"]
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    stock: dict[Annotated[str, Field(max_length=64)], Annotated[int, Field(ge=0)]] = Field(
        max_length=5000
    )
    backlog_hours: float = Field(ge=0, le=24 * 60)
    capabilities: list[Tag] = Field(default_factory=list, max_length=32)
    options: list[CarrierOption] = Field(max_length=20)
    active: bool = True


class RoutingCase(StrictModel):
    """An order and the locations that could ship it."""

    order: RoutingOrder
    locations: list[Location] = Field(min_length=1, max_length=200)
    peak: bool = Field(default=False, description="Peak season: store backlog matters more.")

    @model_validator(mode="after")
    def _unique(self) -> RoutingCase:
        ids = [loc.id for loc in self.locations]
        if len(set(ids)) != len(ids):
            raise ValueError("location ids must be unique")
        return self


def _yaml_decimal(value: Any) -> Any:
    return str(value) if isinstance(value, float | int) and not isinstance(value, bool) else value


class Weights(BaseModel):
    """Score weights: each part is expressed in currency-equivalent units."""

    model_config = {"extra": "forbid"}

    cost: float = Field(ge=0)
    package: float = Field(ge=0, description="per package beyond the first")
    eta_slack: float = Field(ge=0, description="per day of slack missing below the target")
    on_time: float = Field(ge=0, description="times (1 - on-time rate) of the worst carrier")
    co2: float = Field(ge=0, description="per kg CO2")
    store_backlog: float = Field(ge=0, description="per day of store backlog")
    store_stock: float = Field(ge=0, description="times the share of a store's stock taken")


class RoutingParameters(ParametersBase):
    weights: Weights
    tie_margin: float = Field(ge=0, description="score distance within which plans tie")
    max_tied_plans: int = Field(ge=2, le=10)
    slack_target_days: int = Field(ge=0, le=30)
    max_split_locations: int = Field(ge=1, le=3)
    split_candidates: int = Field(ge=2, le=20)
    max_transit_days: dict[Literal["standard", "express", "next_day"], int]
    holidays: list[date] = Field(default_factory=list)
    green_cost_band: Annotated[Decimal, BeforeValidator(_yaml_decimal)] = Field(ge=0)
    peak_store_backlog_hours: float = Field(ge=0)


class ShipmentLine(BaseModel):
    sku: str
    quantity: int


class Shipment(BaseModel):
    location_id: str
    lines: list[ShipmentLine]
    carrier: str
    service: str
    cost: Money
    eta: date


class Tie(BaseModel):
    tie: bool
    tied_plan_ids: list[str]


class RoutingVerdict(VerdictBase):
    """The chosen fulfilment plan, or why none exists."""

    action: Literal["ship", "cannot_fulfil"]
    plan_id: str | None
    shipments: list[Shipment]
    total_cost: Money
    packages: int
    score_breakdown: dict[str, float]
    tie: Tie
    blocking: list[str] = Field(default_factory=list)
