"""The published contract: every operation typed, every error documented with the body
that is really sent, a bearer scheme, one example per kind, bounds as enforced."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.api.decisions import decision_model
from service.app import create_app
from service.kinds.registry import KINDS
from tests.conftest import FIXTURES, Api, contract, make_settings

SPEC: dict[str, Any] = create_app(make_settings("sqlite://", max_deadline_s=12)).openapi()
OPERATIONS = [
    (path, method, op)
    for path, ops in SPEC["paths"].items()
    for method, op in ops.items()
    if method in ("get", "post", "put", "patch", "delete")
]
OWN_ERROR_BODY = {("/v1/audit/verify", "409"), ("/readyz", "503")}  # a report, not an error


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_every_operation_has_a_typed_success_response() -> None:
    assert len(OPERATIONS) >= 18
    for path, method, op in OPERATIONS:
        ok = [c for c in op["responses"] if c.startswith("2")]
        assert ok, (method, path)
        for code in ok:
            content = op["responses"][code].get("content")
            assert content, (method, path, code)
            for media, body in content.items():
                schema = resolve(body["schema"])
                if media == "application/json":
                    assert schema.get("properties"), f"{method} {path} {code}: untyped object"
                else:
                    assert schema == {"type": "string"}, (method, path, media)


def test_every_error_is_documented_with_the_real_error_body() -> None:
    assert "HTTPValidationError" not in SPEC["components"]["schemas"]
    error = SPEC["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    info = resolve(error["properties"]["error"])
    assert set(info["properties"]) == {"code", "message", "details"}
    for path, method, op in OPERATIONS:
        for code, response in op["responses"].items():
            if code[0] not in "45" or (path, code) in OWN_ERROR_BODY:
                continue
            ref = response["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorResponse"), (method, path, code)


def test_the_statuses_each_operation_can_return_are_listed() -> None:
    wanted = {"400", "401", "403", "404", "409", "413", "415", "422", "429", "503"}
    for kind in KINDS:
        assert wanted <= set(SPEC["paths"][f"/v1/decisions/{kind}"]["post"]["responses"])
    review = SPEC["paths"]["/v1/decisions/{decision_id}/review"]["post"]["responses"]
    assert {"201", "202"} | wanted <= set(review)
    for path, method, op in OPERATIONS:
        if op.get("security"):
            assert {"401", "403", "429", "503"} <= set(op["responses"]), (method, path)


def test_bearer_scheme_on_every_keyed_operation() -> None:
    assert SPEC["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": SPEC["components"]["securitySchemes"]["bearer"]["description"],
    }
    keyed = [(p, m) for p, m, op in OPERATIONS if op.get("security") == [{"bearer": []}]]
    open_ = {(p, m) for p, m, op in OPERATIONS if not op.get("security")}
    assert open_ == {("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get")}
    assert len(keyed) == len(OPERATIONS) - 3


def test_decisions_are_typed_per_kind_with_shared_vocabularies() -> None:
    schemas = SPEC["components"]["schemas"]
    for kind in KINDS.values():
        post = SPEC["paths"][f"/v1/decisions/{kind.name}"]["post"]
        envelope = resolve(post["responses"]["200"]["content"]["application/json"]["schema"])
        verdict = envelope["properties"]["verdict"]["$ref"].rsplit("/", 1)[-1]
        assert verdict == kind.Verdict.__name__
        assert set(envelope["properties"]["source"]["enum"]) == {
            "rules",
            "llm",
            "fallback",
            "review",
        }
        reasons = envelope["properties"]["fallback_reason"]["anyOf"][0]["enum"]
        assert "llm_disabled" in reasons and "guardrail_violation" in reasons
    returns = resolve({"$ref": "#/components/schemas/ReturnsDecision"})
    assert set(returns["properties"]["outcome"]["enum"]) == {
        "approve",
        "approve_partial",
        "deny",
        "needs_review",
    }
    assert "total_refund" in schemas["ReturnVerdict"]["properties"]
    assert not [n for n in schemas if "__" in n or "." in n], "module paths in schema names"


def test_one_request_example_per_kind_that_validates() -> None:
    for kind in KINDS.values():
        body = SPEC["paths"][f"/v1/decisions/{kind.name}"]["post"]["requestBody"]
        examples = body["content"]["application/json"]["examples"]
        assert list(examples) == [kind.name]
        kind.Case.model_validate(examples[kind.name]["value"])


def test_deadline_bounds_in_the_schema_are_the_enforced_ones() -> None:
    params = SPEC["paths"]["/v1/decisions/returns"]["post"]["parameters"]
    deadline = next(p for p in params if p["name"] == "deadline_ms")
    bounds = deadline["schema"]["anyOf"][0]
    assert (bounds["minimum"], bounds["maximum"]) == (100, 12_000)


@pytest.mark.parametrize("ms, status", [(99, 422), (100, 200), (12_000, 200), (12_001, 422)])
async def test_deadline_bounds_enforced(api_factory: Any, ms: int, status: int) -> None:
    api, cm = await api_factory(max_deadline_s=12)
    try:
        r = await api.client.post(
            "/v1/decisions/returns",
            json=contract("returns.request"),
            headers=api.auth(),
            params={"deadline_ms": ms},
        )
        assert r.status_code == status, r.text
        if status == 422:
            assert r.json()["error"]["details"][0]["field"] == "deadline_ms"
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_contract_examples_decide_and_answer_their_kinds_schema(api: Api) -> None:
    """tests/fixtures/contract/ is what integrators built against: it still works."""
    for kind in KINDS.values():
        r = await api.decide(kind.name, contract(f"{kind.name}.request"))
        assert r.status_code == 200, r.text
        body = r.json()
        derived = kind.Verdict.model_computed_fields  # output only: present, not re-read
        assert set(derived) <= set(body["verdict"])
        body["verdict"] = {k: v for k, v in body["verdict"].items() if k not in derived}
        decision_model(kind).model_validate(body)
    example = json.loads((FIXTURES / "contract" / "decision.response.json").read_text())
    assert set(example) <= set(decision_model(KINDS["returns"]).model_fields)  # added, none gone


async def test_a_validation_error_answers_as_documented(api: Api) -> None:
    r = await api.decide("returns", {"order": {}})
    assert r.status_code == 422
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == "validation_error"
    assert {"field", "reason"} <= set(body["error"]["details"][0])
