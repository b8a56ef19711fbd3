"""Hostile input an outside probe sent (issue 19): every one must be a 4xx, never a 5xx."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Api, contract

JSON = {"content-type": "application/json"}


@pytest.fixture
async def any_db_api(db_url: str, api_factory: Callable[..., Any]) -> Any:
    """The app on SQLite and on PostgreSQL (NUL and integer limits differ between them)."""
    a, cm = await api_factory(db=db_url)
    yield a
    await a.client.aclose()
    await cm.__aexit__(None, None, None)


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


async def test_json_nested_a_thousand_levels_is_400(api: Api) -> None:
    body = nested(1000)  # 2 KB; the JSON parser itself recurses past Python's limit here
    assert len(body) == 2000
    for levels in (1000, 100_000):
        r = await api.client.post(
            "/v1/decisions/returns", content=nested(levels), headers={**api.auth(), **JSON}
        )
        assert r.status_code == 400, r.text
        assert "nested deeper than 32" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "content_type",
    [None, "Application/JSON", "APPLICATION/JSON; charset=utf-8", "text/plain", "x-form"],
)
async def test_depth_is_checked_whatever_the_content_type(api: Api, content_type: str) -> None:
    headers = dict(api.auth())
    if content_type is not None:
        headers["content-type"] = content_type
    r = await api.client.post("/v1/decisions/returns", content=nested(40), headers=headers)
    assert r.status_code == 400 and "nested deeper" in r.json()["error"]["message"]


async def test_depth_scanner_ignores_brackets_inside_strings(api: Api) -> None:
    case = contract("returns.request")
    case["request"]["items"][0]["customer_comment"] = '[[[[{{{{"\\"' * 50 + "]]]"
    r = await api.decide("returns", case)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "path",
    [
        "customer.tenure_days",
        "customer.order_count",
        "customer.return_count",
        "request.items.0.photos",
        "order.lines.0.quantity",
    ],
)
async def test_huge_integers_are_422_naming_the_field(any_db_api: Api, path: str) -> None:
    case = contract("returns.request")
    node: Any = case
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[last] = 10**400
    r = await any_db_api.client.post(
        "/v1/decisions/returns",
        content=json.dumps(case),
        headers={**any_db_api.auth(), **JSON},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == path


async def test_huge_integers_in_exceptions_and_routing_are_422(any_db_api: Api) -> None:
    exc = contract("exceptions.request")
    exc["customer"]["order_count"] = 10**400
    r = await any_db_api.decide("exceptions", exc)
    assert r.status_code == 422, r.text
    routing = contract("routing.request")
    loc = routing["locations"][0]
    sku = next(iter(loc["stock"]))
    loc["stock"][sku] = 10**22
    r = await any_db_api.decide("routing", routing)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"].startswith("locations.0.stock")


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("returns", "order.placed_at", "9999-12-31T23:59:59Z"),
        ("returns", "request.requested_at", "9999-12-31T23:00:00-12:00"),
        ("returns", "order.placed_at", "0001-01-01T00:00:00+14:00"),
        ("exceptions", "order.placed_at", "9999-12-31T22:00:00Z"),
        ("routing", "order.placed_at", "9999-12-30T10:00:00Z"),
        ("routing", "order.promised_by", "9999-12-31"),
    ],
)
async def test_timestamps_out_of_range_are_422(
    any_db_api: Api, kind: str, path: str, value: str
) -> None:
    case = contract(f"{kind}.request")
    node: Any = case
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    r = await any_db_api.decide(kind, case)
    assert r.status_code == 422, r.text
    detail = r.json()["error"]["details"][0]
    assert (
        detail["field"].endswith(path) and "1970" in detail["reason"] and "2999" in detail["reason"]
    )


async def test_huge_cursor_and_seq_are_422(any_db_api: Api) -> None:
    cursor = base64.urlsafe_b64encode(f"seq:{10**22}".encode()).decode().rstrip("=")
    auth = any_db_api.auth("audit")
    for url in (
        f"/v1/decisions?cursor={cursor}",
        f"/v1/reviews?cursor={cursor}",
        f"/v1/audit/verify?from_seq={10**22}",
        f"/v1/audit/verify?to_seq={10**22}",
    ):
        headers = any_db_api.auth("admin") if "reviews" in url else auth
        r = await any_db_api.client.get(url, headers=headers)
        assert r.status_code == 422, (url, r.text)


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01"]
)
async def test_stats_and_list_with_extreme_times_are_422(any_db_api: Api, since: str) -> None:
    auth = any_db_api.auth("audit")
    for url in ("/v1/audit/stats", "/v1/decisions", "/v1/audit/export"):
        r = await any_db_api.client.get(url, params={"since": since}, headers=auth)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["error"]["details"][0]["field"] == "since"


async def test_nul_in_filters_and_paths_is_422_naming_the_field(any_db_api: Api) -> None:
    auth = any_db_api.auth("admin")
    for url, field in (
        ("/v1/decisions?order_id=ORD%00X", "order_id"),
        ("/v1/decisions?q=a%00b", "q"),
        ("/v1/decisions?kind=returns%00", "kind"),
        ("/v1/audit/export?customer_id=%00", "customer_id"),
        ("/v1/audit/stats?kind=%00", "kind"),
        ("/v1/reviews?kind=%00", "kind"),
        ("/v1/decisions/dec_%00x", "path"),
        ("/v1/specs/returns%00/versions", "path"),
        ("/ui/decisions?order_id=%00", "order_id"),
    ):
        r = await any_db_api.client.get(url, headers=auth)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["error"]["details"][0]["field"] == field, url


async def test_nul_in_body_text_is_422_naming_the_field(any_db_api: Api) -> None:
    case = contract("returns.request")
    case["request"]["items"][0]["customer_comment"] = "broken\x00zip"
    r = await any_db_api.decide("returns", case)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "request.items.0.customer_comment"
    case = contract("returns.request")
    case["order"]["lines"][0]["tags"] = ["ok", "x\x00"]
    r = await any_db_api.decide("returns", case)
    assert r.status_code == 422 and "order.lines.0.tags" in r.json()["error"]["details"][0]["field"]
    routing = contract("routing.request")
    routing["locations"][0]["stock"]["SKU\x00"] = 1
    r = await any_db_api.decide("routing", routing)
    assert r.status_code == 422, r.text
    ok = await any_db_api.decide("returns", contract("returns.request"))
    review = await any_db_api.client.post(
        f"/v1/decisions/{ok.json()['decision_id']}/review",
        json={"note": "looks \x00 fine"},
        headers=any_db_api.auth("review"),
    )
    assert review.status_code == 422 and review.json()["error"]["details"][0]["field"] == "note"


@pytest.mark.parametrize(
    "amount", ["1_000", "１２９.００", "١٢٩", "1E+2", "-0", "-0.00", "+5", " 5", "NaN", "Infinity"]
)
async def test_money_accepts_plain_decimal_strings_only(api: Api, amount: str) -> None:
    case = contract("returns.request")
    case["order"]["lines"][0]["unit_price"] = amount
    r = await api.decide("returns", case)
    assert r.status_code == 422, (amount, r.text)
    assert r.json()["error"]["details"][0]["field"] == "order.lines.0.unit_price"


@pytest.mark.parametrize("amount", ["129", "129.5", "129.00", "0", "0.00"])
async def test_money_plain_decimals_still_work(api: Api, amount: str) -> None:
    case = contract("returns.request")
    case["order"]["lines"][0]["unit_price"] = amount
    r = await api.decide("returns", case)
    assert r.status_code == 200, r.text
    refund = r.json()["verdict"]["total_refund"]
    assert not refund.startswith("-")
