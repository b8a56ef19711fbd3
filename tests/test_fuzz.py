"""schemathesis against /openapi.json: no 5xx, responses match the schema, bad data → 4xx."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
)

from service.app import create_app
from tests.conftest import make_settings

WORKDIR = Path(tempfile.mkdtemp(prefix="arbiter-fuzz-"))
APP = create_app(
    make_settings(f"sqlite:///{WORKDIR / 'fuzz.db'}", spec_poll_s=0, rate_limit_per_minute=0)
)
schema = schemathesis.openapi.from_dict(APP.openapi())


def _not_a_server_error(ctx: Any, response: Any, case: Any) -> bool:
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code}"
    return True


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[dict[str, str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(APP, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    _, key = APP.state.services.stores.keys.create(name="fuzz", scopes=["admin"])
    yield {"base": f"http://127.0.0.1:{port}", "key": key}
    srv.should_exit = True
    thread.join(timeout=10)


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api(case: Any, fuzz_server: dict[str, str]) -> None:
    response = case.call(
        base_url=fuzz_server["base"], headers={"Authorization": f"Bearer {fuzz_server['key']}"}
    )
    case.validate_response(
        response, checks=[_not_a_server_error, response_schema_conformance, negative_data_rejection]
    )
