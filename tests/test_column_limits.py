"""Every length limit of the log holds the longest value the API accepts.

SQLite does not enforce VARCHAR lengths; PostgreSQL refuses the row, and the caller gets a
503 on every retry. So the worst case is derived from the request models, the verdicts,
the spec front matter and the ids the service makes, and compared with each column; then
the longest values are written to a real PostgreSQL database.
"""

from __future__ import annotations

import json
import re
from typing import Any, get_args

import pytest
from pydantic import BaseModel
from sqlmodel import SQLModel
from ulid import ULID

from service.api.filters import ListFilters
from service.app import create_app
from service.auth import SCOPES
from service.engine import new_decision_id
from service.http import REQUEST_ID
from service.kinds.common import Customer
from service.kinds.exceptions import Action
from service.kinds.exceptions import Order as ExceptionOrder
from service.kinds.registry import KINDS
from service.kinds.returns import Order as ReturnOrder
from service.kinds.returns import ReturnVerdict
from service.log.admin import ACTIONS
from service.log.models import KEY_NAME_MAX
from service.log.stores import open_stores
from service.routing.models import CarrierOption, Location, RoutingOrder, RoutingParameters
from service.specs.deployments import ACTIONS as POLICY_ACTIONS
from service.specs.deployments import ACTOR_MAX, REMOVED
from service.specs.loader import SPEC_NAME_MAX, FrontMatter, ModelChain
from service.vocabulary import FallbackReason
from tests import exception_cases as ex
from tests.conftest import contract, make_settings
from tests.routing_cases import case as routing_case
from tests.routing_cases import loc, opt
from tests.test_reviews import ui_login


def max_len(model: type[BaseModel], field: str) -> int:
    """The max_length a pydantic field declares (fails if it declares none)."""
    info = model.model_fields[field]
    for meta in [*info.metadata, *[m for a in get_args(info.annotation) for m in _meta(a)]]:
        if getattr(meta, "max_length", None) is not None:
            return int(meta.max_length)
    raise AssertionError(f"{model.__name__}.{field} has no max_length: the API accepts any size")


def _meta(annotation: Any) -> list[Any]:
    out = []
    for m in getattr(annotation, "__metadata__", []):
        out += [m, *getattr(m, "metadata", [])]  # a Field(...) inside Annotated holds its own
    return out


def bound(model: type[BaseModel], field: str, name: str) -> int:
    for meta in model.model_fields[field].metadata:
        if getattr(meta, name, None) is not None:
            return int(getattr(meta, name))
    raise AssertionError(f"{model.__name__}.{field} has no {name}")


def longest_plan_id() -> int:
    """planner: '+'.join(f'{location}:{carrier}.{service}') over at most the split bound."""
    leg = (
        max_len(Location, "id")
        + 1
        + max_len(CarrierOption, "carrier")
        + 1
        + max_len(CarrierOption, "service")
    )
    legs = bound(RoutingParameters, "max_split_locations", "le")
    return legs * leg + (legs - 1)


def worst_cases(tmp_path: Any) -> dict[str, int]:
    """The longest value each string column can be asked to hold, by table.column."""
    stores = open_stores(f"sqlite:///{tmp_path / 'keys.db'}")
    key, _ = stores.keys.create(name="k" * KEY_NAME_MAX, scopes=sorted(SCOPES))
    _, csrf = stores.sessions.create(key_id=key.id)
    claim = stores.idempotency.begin(scope="s", request_sha256="a", ttl_hours=24, lease_s=1)
    assert isinstance(claim, str)
    stores.close()
    callers = max(len(key.id), *(len(c) for c in ("cli", "shadow", "replay", "eval")))
    app = create_app(make_settings("sqlite://"))
    params = app.openapi()["paths"]["/v1/decisions/returns"]["post"]["parameters"]
    header = next(p for p in params if p["name"] == "Idempotency-Key")["schema"]
    idem = next(int(t["maxLength"]) for t in header["anyOf"] if t.get("type") == "string")
    kinds = max(len(k) for k in KINDS)
    outcome = max(
        longest_plan_id(),
        len("cannot_fulfil"),
        *(len(o) for o in get_args(ReturnVerdict.model_fields["outcome"].annotation)),
        *(len(a) for a in get_args(Action)),
    )
    dec_id = len(new_decision_id())
    sha = 64  # sha256 hex
    model = max(max_len(ModelChain, "primary"), max_len(ModelChain, "escalate_to"))
    rollouts = len("canary:100")
    return {
        "decisions.id": dec_id,
        "decisions.request_id": max(
            32,
            int(re.search(r"\{1,(\d+)\}", REQUEST_ID.pattern).group(1)),  # type: ignore[union-attr]
        ),  # a caller's X-Request-Id when well-formed, else a uuid4 hex
        "decisions.kind": kinds,
        "decisions.caller": callers,
        "decisions.idempotency_key": idem,
        "decisions.order_id": max(
            max_len(ReturnOrder, "id"), max_len(ExceptionOrder, "id"), max_len(RoutingOrder, "id")
        ),
        "decisions.customer_id": max_len(Customer, "id"),
        "decisions.outcome": outcome,
        "decisions.source": max(len(s) for s in ("rules", "llm", "fallback", "review")),
        "decisions.fallback_reason": max(len(r) for r in get_args(FallbackReason)),
        "decisions.spec_name": SPEC_NAME_MAX,
        "decisions.spec_version": max_len(FrontMatter, "version"),
        "decisions.spec_sha256": sha,
        "decisions.prompt_sha256": sha,
        "decisions.prompt_template_sha256": sha,
        "decisions.guardrails_version": max(len(k.guardrails_version) for k in KINDS.values()),
        "decisions.model": model,
        "decisions.shadow_of": dec_id,
        "decisions.supersedes": dec_id,
        "decisions.prev_hash": sha,
        "decisions.hash": sha,
        "decisions.response_sha256": sha,
        "chain_head.hash": sha,
        "admin_events.id": len(f"adm_{ULID()}"),
        "admin_events.actor": max(callers, len("migration 0005"), len(REMOVED), ACTOR_MAX),
        "admin_events.action": max(len(a) for a in ACTIONS),
        # a key id, a session's token hash, or a policy version (<kind>:<sha256>)
        "admin_events.subject": max(len(key.id), sha, kinds + 1 + sha),
        "admin_events.prev_hash": sha,
        "admin_events.hash": sha,
        "spec_versions.sha256": sha,
        "spec_versions.kind": kinds,
        "spec_versions.name": SPEC_NAME_MAX,
        "spec_versions.version": max_len(FrontMatter, "version"),
        "spec_versions.rollout": rollouts,
        "spec_deployments.kind": kinds,
        "spec_deployments.slot": SPEC_NAME_MAX,
        "spec_deployments.sha256": sha,
        "spec_deployments.role": rollouts,
        "spec_deployments.source": max(len(f"{via}:") for via in ("file", "push", "api", "cli"))
        + SPEC_NAME_MAX
        + len(".md"),
        "spec_deployments.started_by": max(len(key.id), len(REMOVED), ACTOR_MAX),
        "spec_deployments.ended_by": max(len(key.id), len(REMOVED), ACTOR_MAX),
        "policy_events.actor": max(len(key.id), len(REMOVED), ACTOR_MAX),
        "policy_events.kind": kinds,
        "policy_events.action": max(len(a) for a in POLICY_ACTIONS),
        "policy_events.sha256": sha,
        "api_keys.id": len(key.id),
        "api_keys.name": KEY_NAME_MAX,
        "api_keys.key_hash": sha,
        "ui_sessions.token_hash": sha,
        "ui_sessions.key_id": len(key.id),
        "ui_sessions.csrf": len(csrf),
        "idempotency_keys.scope": callers + 1 + kinds + 1 + idem,
        "idempotency_keys.request_sha256": sha,
        "idempotency_keys.state": max(len("in_flight"), len("done")),
        "idempotency_keys.decision_id": dec_id,
        "idempotency_keys.claim": len(claim),
    }


def test_every_varchar_holds_the_longest_value_the_api_accepts(tmp_path: Any) -> None:
    worst = worst_cases(tmp_path)
    seen = set()
    for table in SQLModel.metadata.sorted_tables:
        for column in table.columns:
            length = getattr(column.type, "length", None)  # String and sqlmodel's AutoString
            if length is None:
                continue
            name = f"{table.name}.{column.name}"
            seen.add(name)
            assert name in worst, f"{name} (varchar {length}): derive its worst case"
            assert worst[name] <= length, (
                f"{name} is varchar({length}) but may be asked to hold {worst[name]} characters"
            )
    assert seen == set(worst), sorted(set(worst) - seen)


def test_list_filters_can_search_every_value_a_column_holds() -> None:
    columns = SQLModel.metadata.tables["decisions"].columns
    for field in ("kind", "outcome", "model", "order_id", "customer_id"):
        length = max_len(ListFilters, field)
        assert length == columns[field].type.length, field  # type: ignore[attr-defined]
    # a closed vocabulary, shared with the log: every value fits the column
    longest = max(len(v) for v in get_args(FallbackReason))
    assert longest <= columns["fallback_reason"].type.length  # type: ignore[attr-defined]


# --- on a real PostgreSQL -----------------------------------------------------------------


@pytest.fixture
async def pg_api(api_factory: Any, pg_url: str) -> Any:
    a, cm = await api_factory(db=pg_url, spec_poll_s=0)
    yield a
    await a.client.aclose()
    await cm.__aexit__(None, None, None)


async def test_the_reported_routing_case_is_decided_on_postgres(pg_api: Any) -> None:
    c = contract("routing.request")
    c["locations"][0]["id"] = "warehouse-chicago-north-0001"
    c["locations"][0]["options"][0].update(
        carrier="FedEx Ground Economy", service="home_delivery_residential"
    )
    r = await pg_api.decide("routing", c)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"].startswith("warehouse-chicago-north-0001:FedEx Ground Economy.")


async def test_the_longest_accepted_values_are_stored_on_postgres(pg_api: Any) -> None:
    order, customer = "O" * max_len(ReturnOrder, "id"), "C" * max_len(Customer, "id")
    idem = "K" * 255
    ret = contract("returns.request")
    ret["order"]["id"], ret["customer"]["id"] = order, customer
    r = await pg_api.decide("returns", ret, **{"Idempotency-Key": idem})
    assert r.status_code == 200, r.text
    exc = ex.fraud(40)
    exc["order"]["id"], exc["customer"]["id"] = order, customer
    r = await pg_api.decide("exceptions", exc, **{"Idempotency-Key": idem})
    assert r.status_code == 200, r.text

    def name(ch: str) -> str:
        return ch * max_len(Location, "id")

    carrier, service = "c" * max_len(CarrierOption, "carrier"), "s" * 64
    split = routing_case(
        [("A", 1, []), ("B", 1, [])],
        [
            loc(name("x"), {"A": 1}, options=[opt(carrier, service)]),
            loc(name("y"), {"B": 1}, options=[opt(carrier, service)]),
        ],
    )
    split["order"]["id"] = "R" * max_len(RoutingOrder, "id")
    r = await pg_api.decide("routing", split, **{"Idempotency-Key": idem})
    assert r.status_code == 200, r.text
    plan = r.json()["outcome"]
    assert plan.count("+") == 1 and len(plan) > 300
    found = await pg_api.client.get(
        "/v1/decisions", headers=pg_api.auth("audit"), params={"outcome": plan}
    )
    assert found.status_code == 200 and len(found.json()["decisions"]) == 1


async def test_text_postgres_cannot_store_is_refused_not_a_503(pg_api: Any) -> None:
    """PostgreSQL stores no NUL and no unpaired surrogate in text or JSONB; SQLite does.
    Refused up front (422), wherever it comes from."""
    c = contract("returns.request")
    c["request"]["items"][0]["customer_comment"] = "broken\u0000zip"
    r = await pg_api.decide("returns", c)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "request.items.0.customer_comment"
    c = contract("returns.request")
    c["order"]["id"] = "ORD\u00001"
    assert (await pg_api.decide("returns", c)).status_code == 422
    h = pg_api.auth("admin")
    for url in ("/v1/decisions?order_id=a%00b", "/v1/decisions/dec_%00", "/v1/reviews?kind=%00"):
        r = await pg_api.client.get(url, headers=h)
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text)
    d = (await pg_api.decide("returns", contract("returns.request"))).json()
    r = await pg_api.client.post(
        f"/v1/decisions/{d['decision_id']}/review", headers=h, json={"note": "ok\u0000"}
    )
    assert 400 <= r.status_code < 500, r.text
    # a lone surrogate: valid JSON ("\ud83d"), not text
    c = contract("returns.request")
    c["request"]["items"][0]["customer_comment"] = "broken \ud83d zip"
    raw = {**pg_api.auth(), "Content-Type": "application/json"}
    r = await pg_api.client.post("/v1/decisions/returns", content=json.dumps(c), headers=raw)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "request.items.0.customer_comment"
    body = json.dumps({"note": "fine \udc00"})
    r = await pg_api.client.post(
        f"/v1/decisions/{d['decision_id']}/review",
        content=body,
        headers={**h, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    # the review form of the pages: a note with NUL is refused, not written
    await ui_login(pg_api, "admin")
    page = await pg_api.client.get(f"/ui/decisions/{d['decision_id']}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = await pg_api.client.post(
        f"/ui/decisions/{d['decision_id']}/review",
        data={"csrf": csrf, "note": "ok\u0000", "action": "accept"},
    )
    assert r.status_code < 500 and "NUL" in (r.headers.get("location", "") + r.text)
    assert pg_api.engine.log.superseding(decision_id=d["decision_id"]) is None
    assert pg_api.engine.log.verify().ok


async def test_seq_numbers_past_the_column_are_refused_on_postgres(pg_api: Any) -> None:
    """decisions.seq is an INTEGER; a larger seq in a query was a 500 (found by fuzzing)."""
    from service.api.filters import encode_cursor

    h = pg_api.auth("admin")
    r = await pg_api.client.get("/v1/audit/verify", headers=h, params={"to_seq": 2**31})
    assert r.status_code == 422, r.text
    r = await pg_api.client.get("/v1/audit/verify", headers=h, params={"to_seq": 2**31 - 1})
    assert r.status_code == 200, r.text
    for path in ("/v1/decisions", "/v1/reviews"):
        r = await pg_api.client.get(path, headers=h, params={"cursor": encode_cursor(2**40)})
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "cursor"
