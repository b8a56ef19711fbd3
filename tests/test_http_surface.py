"""What every response carries (security headers, request id) and what errors say (issue 19)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from tests.conftest import Api, contract
from tests.test_ui import login

JSON = {"content-type": "application/json"}


def csp(headers: Any) -> dict[str, str]:
    """The Content-Security-Policy as {directive: sources}."""
    policy = headers.get("content-security-policy", "")
    parts = [p.strip().split(" ", 1) for p in policy.split(";") if p.strip()]
    return {p[0]: p[1] if len(p) > 1 else "" for p in parts}


# --- security headers -----------------------------------------------------------------


async def test_security_headers_on_pages_api_and_errors(api: Api) -> None:
    await login(api)
    case = await api.decide("returns", contract("returns.request"))
    responses = {
        "page": await api.client.get("/ui/decisions"),
        "login": await api.client.get("/ui/login"),
        "api": await api.client.get("/v1/decisions", headers=api.auth("audit")),
        "decision": case,
        "error": await api.client.get("/v1/decisions", headers={"Authorization": "Bearer no"}),
        "not found": await api.client.get("/nowhere"),
        "too deep": await api.client.post(
            "/v1/decisions/returns", content="[" * 50, headers=api.auth()
        ),
        "metrics": await api.client.get("/metrics"),
        "health": await api.client.get("/healthz"),
    }
    for name, r in responses.items():
        h = r.headers
        policy = csp(h)
        assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'", name
        assert "script-src" not in policy, name  # no script at all: default-src 'none'
        assert all("unsafe" not in v for k, v in policy.items() if k != "style-src"), name
        assert h.get("x-frame-options") == "DENY", name
        assert h.get("x-content-type-options") == "nosniff", name
        assert h.get("referrer-policy") == "no-referrer", name
        assert h.get("cache-control") == "no-store", name


async def test_docs_page_allows_only_its_own_inline_script(api: Api) -> None:
    r = await api.client.get("/docs")
    assert r.status_code == 200
    policy = csp(r.headers)
    assert policy["frame-ancestors"] == "'none'" and "unsafe" not in policy["script-src"]
    script = re.search(r"<script>(.*?)</script>", r.text, re.S)
    assert script is not None
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy["script-src"].split()


# --- request id -----------------------------------------------------------------------


async def test_request_id_generated_or_passed_through(api: Api) -> None:
    r = await api.client.get("/healthz")
    generated = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    r = await api.client.get("/healthz", headers={"X-Request-Id": "oms-4711.retry:2"})
    assert r.headers["x-request-id"] == "oms-4711.retry:2"
    for hostile in ("a" * 200, "bad id", "x\r\nSet-Cookie: y", "<script>"):
        r = await api.client.get("/healthz", headers={"X-Request-Id": hostile.replace("\r\n", "")})
        assert r.headers["x-request-id"] != hostile.replace("\r\n", "")
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    err = await api.client.get("/v1/decisions", headers={"X-Request-Id": "abc-1"})
    assert err.status_code == 401 and err.headers["x-request-id"] == "abc-1"


async def test_request_id_in_logs_and_on_the_decision_record(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    r = await api.decide("returns", contract("returns.request"), **{"X-Request-Id": "req-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
    access = [rec for rec in caplog.records if rec.name == "arbiter.access"]
    assert access and all(getattr(rec, "request_id", None) == "req-42" for rec in access)
    from service.http import LOG_FORMAT, RequestIdFilter

    assert "[req-42]" in logging.Formatter(LOG_FORMAT).format(access[0])  # serve's format
    other = logging.LogRecord("arbiter", logging.INFO, __file__, 1, "outside", None, None)
    assert RequestIdFilter().filter(other) and other.request_id == "-"
    assert "POST /v1/decisions/returns 200" in caplog.text
    detail = await api.client.get(
        f"/v1/decisions/{r.json()['decision_id']}", headers=api.auth("audit")
    )
    assert detail.json()["request_id"] == "req-42"
    row = api.engine.log.get(decision_id=r.json()["decision_id"])
    assert row.request_id == "req-42"
    report = await api.client.get("/v1/audit/verify", headers=api.auth("audit"))
    assert report.json()["ok"] is True  # the request id is covered by the hash
    generated = await api.decide("returns", contract("returns.request"))
    row = api.engine.log.get(decision_id=generated.json()["decision_id"])
    assert row.request_id == generated.headers["x-request-id"]


async def test_records_without_a_request_id_keep_their_hash(api: Api) -> None:
    """Records written before the column existed still verify: an absent id is not hashed
    in a hash-version-1 record (version 2 hashes every column)."""
    from service.log.chain import payload, record_hash

    r = await api.decide("returns", contract("returns.request"), **{"X-Request-Id": "r-1"})
    row = api.engine.log.get(decision_id=r.json()["decision_id"])
    assert payload(row)["request_id"] == "r-1" and record_hash(row) == row.hash
    row.hash_version, row.request_id = 1, None  # a record from before the column
    assert "request_id" not in payload(row)
    assert record_hash(row) != row.hash  # and removing a set id is caught


# --- error messages -------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_decide_without_json_content_type_says_so(api: Api, content_type: str | None) -> None:
    headers = dict(api.auth())
    if content_type:
        headers["content-type"] = content_type
    body = json.dumps(contract("returns.request"))
    r = await api.client.post("/v1/decisions/returns", content=body, headers=headers)
    assert r.status_code == 415, r.text
    err = r.json()["error"]
    assert err["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in err["message"]


@pytest.mark.parametrize("content_type", ["Application/JSON", "application/json; charset=utf-8"])
async def test_json_content_type_in_any_case_is_accepted(api: Api, content_type: str) -> None:
    body = json.dumps(contract("returns.request"))
    r = await api.client.post(
        "/v1/decisions/returns", content=body, headers={**api.auth(), "content-type": content_type}
    )
    assert r.status_code == 200, r.text


async def test_bad_json_names_line_and_column(api: Api) -> None:
    r = await api.client.post(
        "/v1/decisions/returns",
        content='{\n  "order": {\n    "id": "A",,\n  }\n}',
        headers={**api.auth(), **JSON},
    )
    assert r.status_code == 400
    err = r.json()["error"]
    detail = err["details"][0]
    assert detail["field"] == "line 3, column 15"
    assert "line 3, column 15" in err["message"] and "Expecting" in err["message"]
    assert not any(d["field"].isdigit() for d in err["details"])


async def test_errors_about_the_whole_body_name_it(api: Api) -> None:
    for body in ("[]", '"x"', "null"):
        r = await api.client.post(
            "/v1/decisions/returns", content=body, headers={**api.auth(), **JSON}
        )
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["details"][0]["field"] == "$", body
        assert "(body)" not in r.text
        assert err["message"].startswith("$ (the whole JSON body): ")


async def test_get_on_a_decide_endpoint_is_405_with_allow(api: Api) -> None:
    for kind in ("returns", "exceptions", "routing"):
        r = await api.client.get(f"/v1/decisions/{kind}", headers=api.auth("admin"))
        assert r.status_code == 405, r.text
        assert r.headers["allow"] == "POST"
        assert r.json()["error"]["code"] == "method_not_allowed"
    r = await api.client.put("/v1/decisions/returns", headers=api.auth("admin"))
    assert r.status_code == 405
