"""Days are counted in UTC (returns.md, exceptions.md, routing.md), whatever offset a time has."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from service.kinds.base import Timestamp
from service.kinds.exceptions import KIND as EXCEPTIONS
from service.kinds.exceptions import ExceptionCase, ExceptionParameters, ExceptionVerdict
from service.kinds.returns import KIND as RETURNS
from service.kinds.returns import ReturnCase, ReturnParameters
from service.kinds.routing import KIND as ROUTING
from service.routing.models import RoutingCase, RoutingParameters
from service.routing.planner import ship_date
from service.settings import PROJECT_ROOT
from service.specs.loader import load_spec
from tests import exception_cases as ex
from tests.conftest import contract
from tests.routing_cases import case as routing_case
from tests.routing_cases import loc, opt
from tests.test_spec_rollout import specs_dir, variant  # noqa: F401 (fixture)

RP: ReturnParameters = load_spec(PROJECT_ROOT / "specs" / "returns.md").params  # type: ignore[assignment]
EP: ExceptionParameters = load_spec(PROJECT_ROOT / "specs" / "exceptions.md").params  # type: ignore[assignment]
TP: RoutingParameters = load_spec(PROJECT_ROOT / "specs" / "routing.md").params  # type: ignore[assignment]


class Stamped(BaseModel):
    at: Timestamp


# --- the type ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-05T23:30:00-02:00", datetime(2026, 11, 6, 1, 30, tzinfo=UTC)),
        ("2026-11-06T13:59:00+14:00", datetime(2026, 11, 5, 23, 59, tzinfo=UTC)),
        ("2026-11-05T12:00:00-12:00", datetime(2026, 11, 6, 0, 0, tzinfo=UTC)),
        ("2026-11-06T00:00:00Z", datetime(2026, 11, 6, 0, 0, tzinfo=UTC)),
        ("2026-11-06T05:30:00+05:30", datetime(2026, 11, 6, 0, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_are_normalised_to_utc(text: str, utc: datetime) -> None:
    at = Stamped.model_validate({"at": text}).at
    assert at == utc and at.utcoffset() == timedelta(0)
    assert at.date() == utc.date()
    assert Stamped(at=at).model_dump(mode="json")["at"] == utc.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC: was an OverflowError (500)
        "9999-12-31T23:59:59-12:00",  # after year 9999 once in UTC
        "9999-12-31T20:00:00Z",  # any hours or days added to it overflow
        "1969-12-31T23:59:59Z",
        "2026-11-06T00:00:00",  # no zone
        "2026-11-06",
    ],
)
def test_hostile_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        Stamped.model_validate({"at": text})


# --- returns: R1/R2 days from delivery to request ------------------------------------------
def returns_case(requested: str, delivered: str, *, reason: str = "changed_mind") -> ReturnCase:
    data = contract("returns.request")
    data["order"]["delivered_at"] = delivered
    data["request"]["requested_at"] = requested
    cond = "new" if reason == "changed_mind" else "used"
    data["request"]["items"] = [
        {"sku": "JKT-RAIN-M", "quantity": 1, "reason": reason, "condition": cond}
    ]
    return ReturnCase.model_validate(data)


DELIVERED = "2026-10-06T18:40:00Z"  # day 0 is 2026-10-06 (UTC); day 30 is 2026-11-05


@pytest.mark.parametrize(
    ("requested", "delivered", "outcome"),
    [
        # the example: 23:30 at -02:00 is 01:30 UTC on 2026-11-06, day 31
        ("2026-11-05T23:30:00-02:00", DELIVERED, "deny"),
        # an offset pulling the time back across midnight: 00:30 +02:00 is day 30 in UTC
        ("2026-11-06T00:30:00+02:00", DELIVERED, "approve"),
        # the extreme offsets, either side of midnight UTC
        ("2026-11-06T13:59:59+14:00", DELIVERED, "approve"),  # 2026-11-05T23:59:59Z, day 30
        ("2026-11-06T14:00:00+14:00", DELIVERED, "deny"),  # exactly midnight UTC, day 31
        ("2026-11-05T11:59:59-12:00", DELIVERED, "approve"),  # day 30
        ("2026-11-05T12:00:00-12:00", DELIVERED, "deny"),  # exactly midnight UTC, day 31
        ("2026-11-04T23:00:00Z", DELIVERED, "approve"),  # day 29
        ("2026-11-06T00:00:00Z", DELIVERED, "deny"),  # day 31 from its first instant
        # delivered_at with a negative offset: 22:00 -05:00 is 2026-10-07 in UTC (day 0)
        ("2026-11-06T10:00:00Z", "2026-10-06T22:00:00-05:00", "approve"),  # day 30
        ("2026-11-07T00:00:00Z", "2026-10-06T22:00:00-05:00", "deny"),  # day 31
        # delivered_at with a positive offset: 01:00 +03:00 is 2026-10-05 in UTC (day 0)
        ("2026-11-04T23:59:59Z", "2026-10-06T01:00:00+03:00", "approve"),  # day 30
        ("2026-11-05T08:00:00Z", "2026-10-06T01:00:00+03:00", "deny"),  # day 31
    ],
)
def test_r1_window_is_counted_in_utc_days(requested: str, delivered: str, outcome: str) -> None:
    c = returns_case(requested, delivered)
    v = RETURNS.precheck(c, RP)
    assert v is not None and v.outcome == outcome, v
    assert "R1" in v.cited_clauses


@pytest.mark.parametrize(
    ("requested", "outcome"),
    [
        ("2027-01-05T01:00:00+02:00", "approve"),  # 2027-01-04T23:00Z, day 90
        ("2027-01-04T20:00:00-04:00", "deny"),  # 2027-01-05T00:00Z, day 91
    ],
)
def test_r2_defect_window_is_counted_in_utc_days(requested: str, outcome: str) -> None:
    v = RETURNS.fallback(returns_case(requested, DELIVERED, reason="defective"), RP)
    assert v.outcome == outcome and "R2" in v.cited_clauses


def test_r13_compares_instants_not_wall_clocks() -> None:
    # requested 10:00 -05:00 is 15:00 UTC: after a delivery at 14:00 UTC, so it is a return
    c = returns_case("2026-10-06T10:00:00-05:00", "2026-10-06T14:00:00Z")
    v = RETURNS.precheck(c, RP)
    assert v is not None and v.outcome == "approve" and "R13" not in v.cited_clauses


def test_the_stored_case_is_the_utc_instant() -> None:
    c = returns_case("2026-11-05T23:30:00-02:00", "2026-10-06T20:40:00+02:00")
    dumped = c.model_dump(mode="json")
    assert dumped["request"]["requested_at"] == "2026-11-06T01:30:00Z"
    assert dumped["order"]["delivered_at"] == DELIVERED


# --- exceptions: E6 days from placement to restock -------------------------------------------
def shortfall(placed: str, eta: str = "2026-12-02") -> ExceptionCase:
    data = ex.shortfall(eta=eta, alternatives=False, short=4)
    data["order"]["placed_at"] = placed
    return ExceptionCase.model_validate(data)


@pytest.mark.parametrize(
    ("placed", "action"),
    [
        # the example: 02:00 +05:00 is 2026-11-17T21:00Z, restock 15 UTC days later
        ("2026-11-18T02:00:00+05:00", "contact_customer"),
        # the mirror: 22:00 -05:00 is 2026-11-18T03:00Z, restock 14 UTC days later
        ("2026-11-17T22:00:00-05:00", "backorder"),
        ("2026-11-18T13:59:59+14:00", "contact_customer"),  # 2026-11-17T23:59:59Z, 15 days
        ("2026-11-18T14:00:00+14:00", "backorder"),  # exactly midnight UTC, 14 days
        ("2026-11-17T11:59:59-12:00", "contact_customer"),  # 15 days
        ("2026-11-17T12:00:00-12:00", "backorder"),  # 2026-11-18T00:00Z, 14 days
        ("2026-11-19T00:00:00Z", "backorder"),  # 13 days
    ],
)
def test_e6_backorder_wait_is_counted_in_utc_days(placed: str, action: str) -> None:
    v = EXCEPTIONS.fallback(shortfall(placed), EP)
    assert v.action == action, v
    assert ("E6" if action == "backorder" else "E8") in v.cited_clauses


def test_e4_retry_time_is_utc_and_exactly_the_spacing_later() -> None:
    data = ex.payment(expires="2026-11-25T08:30:00+09:00")
    data["details"]["last_attempt_at"] = "2026-11-18T23:30:00-11:00"  # 2026-11-19T10:30Z
    v = EXCEPTIONS.fallback(ExceptionCase.model_validate(data), EP)
    assert v.action == "retry_payment" and v.retry_at is not None
    assert v.retry_at.utcoffset() == timedelta(0)
    assert v.retry_at == datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("retry_at", "ok"),
    [("2026-11-20T19:30:00+09:00", True), ("2026-11-20T19:29:59+09:00", False)],
)
def test_e4_llm_retry_time_is_held_in_utc_and_checked_as_an_instant(
    retry_at: str, ok: bool
) -> None:
    data = ex.payment()
    data["details"]["last_attempt_at"] = "2026-11-18T23:30:00-11:00"  # 2026-11-19T10:30Z
    c = ExceptionCase.model_validate(data)
    llm = ExceptionVerdict(
        action="retry_payment",
        hold=True,
        retry_at=retry_at,  # type: ignore[arg-type]
        cited_clauses=["E4"],
        rationale="soft decline",
        confidence=0.9,
    )
    assert llm.retry_at is not None and llm.retry_at.utcoffset() == timedelta(0)
    g = EXCEPTIONS.guard(c, llm, EP)
    assert (not g.failed) == ok, g.checks


def test_e5_expiry_buffer_compares_instants() -> None:
    data = ex.auth([True, False])
    data["details"]["expires_at"] = "2026-11-26T07:00:00+09:00"  # 2026-11-25T22:00Z
    data["details"]["as_of"] = "2026-11-25T05:00:00-05:00"  # 2026-11-25T10:00Z: 12h left
    v = EXCEPTIONS.fallback(ExceptionCase.model_validate(data), EP)
    assert v.action == "capture_partial"


# --- routing: T3 hand-over and arrival dates -------------------------------------------------
def routing(placed: str, promised: str, *, backlog: float = 0) -> RoutingCase:
    return RoutingCase.model_validate(
        routing_case(
            [("A", 1, [])],
            [loc("W", {"A": 5}, backlog=backlog, options=[opt(days=1)])],
            placed=placed,
            promised=promised,
        )
    )


@pytest.mark.parametrize(
    ("placed", "shipped"),
    [
        # Friday 20:00 at -05:00 is Saturday 01:00 UTC: hands over on Monday 23rd
        ("2026-11-20T20:00:00-05:00", date(2026, 11, 23)),
        # Saturday 01:00 at +05:00 is Friday 20:00 UTC: hands over that Friday
        ("2026-11-21T01:00:00+05:00", date(2026, 11, 20)),
        ("2026-11-21T13:59:59+14:00", date(2026, 11, 20)),  # Friday 23:59:59 UTC
        ("2026-11-21T14:00:00+14:00", date(2026, 11, 23)),  # Saturday 00:00 UTC exactly
        ("2026-11-20T11:59:59-12:00", date(2026, 11, 20)),  # Friday 23:59:59 UTC
        ("2026-11-20T12:00:00-12:00", date(2026, 11, 23)),  # Saturday 00:00 UTC exactly
        # Thanksgiving (a holiday) 02:00 at +09:00 is Wednesday 17:00 UTC: not a holiday
        ("2026-11-26T02:00:00+09:00", date(2026, 11, 25)),
    ],
)
def test_t3_hand_over_day_is_the_utc_day(placed: str, shipped: date) -> None:
    c = routing(placed, "2026-12-31")
    assert ship_date(c.order.placed_at, c.locations[0], set(TP.holidays)) == shipped
    v = ROUTING.precheck(c, TP)
    assert v is not None and v.action == "ship"
    arrival = shipped + timedelta(days=1)
    while arrival.weekday() >= 5 or arrival in TP.holidays:
        arrival += timedelta(days=1)
    assert v.shipments[0].eta == arrival


def test_t3_ship_date_converts_any_aware_time_to_utc() -> None:
    # the planner is also called directly (replay, tests): it must not trust the caller's zone
    c = routing("2026-11-23T10:00:00Z", "2026-12-31")
    friday_late = datetime(2026, 11, 20, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert ship_date(friday_late, c.locations[0], set()) == date(2026, 11, 23)


@pytest.mark.parametrize(
    ("placed", "feasible"),
    [
        ("2026-11-20T20:00:00-05:00", False),  # Saturday in UTC: arrives Tuesday 24th
        ("2026-11-21T01:00:00+05:00", True),  # Friday in UTC: arrives Monday 23rd
    ],
)
def test_t3_promised_date_feasibility_in_utc(placed: str, feasible: bool) -> None:
    v = ROUTING.precheck(routing(placed, "2026-11-23"), TP)
    assert v is not None
    assert v.action == ("ship" if feasible else "cannot_fulfil"), v


# --- spec version in force: reference_date() ------------------------------------------------
@pytest.mark.parametrize(
    ("placed", "day"),
    [
        ("2026-10-31T23:30:00-02:00", date(2026, 11, 1)),
        ("2026-11-01T00:30:00+02:00", date(2026, 10, 31)),
        ("2026-11-01T13:59:59+14:00", date(2026, 10, 31)),
        ("2026-10-31T12:00:00-12:00", date(2026, 11, 1)),
    ],
)
def test_reference_date_is_the_utc_date_for_every_kind(placed: str, day: date) -> None:
    r = contract("returns.request")
    r["order"]["placed_at"] = placed
    r["order"]["delivered_at"] = "2026-11-04T10:00:00Z"
    r["request"]["requested_at"] = "2026-11-06T10:00:00Z"
    assert RETURNS.reference_date(ReturnCase.model_validate(r)) == day
    e = ex.shortfall()
    e["order"]["placed_at"] = placed
    assert EXCEPTIONS.reference_date(ExceptionCase.model_validate(e)) == day
    assert ROUTING.reference_date(routing(placed, "2026-12-31")) == day


async def test_spec_version_in_force_by_utc_date(api_factory: Any, specs_dir: Any) -> None:  # noqa: F811
    variant(
        specs_dir,
        "returns.holiday",
        **{
            "version: 1": "version: 1-holiday",
            "effective_from: 2026-01-01": "effective_from: 2026-11-15",
        },
    )
    api, cm = await api_factory(specs_dir=specs_dir, spec_poll_s=0)
    try:
        case: dict[str, Any] = contract("returns.request")
        case["order"]["delivered_at"] = "2026-11-18T10:00:00Z"
        case["request"]["requested_at"] = "2026-11-20T10:00:00Z"
        case["order"]["placed_at"] = "2026-11-15T01:00:00+02:00"  # 2026-11-14T23:00Z
        before = (await api.decide("returns", case)).json()
        assert before["spec"]["version"] == "1", before
        case["order"]["placed_at"] = "2026-11-14T22:30:00-02:00"  # 2026-11-15T00:30Z
        after = (await api.decide("returns", case)).json()
        assert after["spec"]["version"] == "1-holiday", after
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


# --- hostile input over HTTP -------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("routing", ("order", "placed_at"), "9999-12-31T23:00:00Z"),
        ("routing", ("order", "placed_at"), "0001-01-01T00:00:00+14:00"),
        ("returns", ("request", "requested_at"), "9999-12-31T23:59:59-12:00"),
        ("exceptions", ("order", "placed_at"), "0001-01-01T00:30:00+01:00"),
    ],
)
async def test_out_of_range_times_are_422_not_500(
    api: Any, kind: str, path: tuple[str, str], value: str
) -> None:
    data: dict[str, Any] = contract(f"{kind}.request")
    data[path[0]][path[1]] = value
    r = await api.decide(kind, data)
    assert r.status_code == 422, r.text
