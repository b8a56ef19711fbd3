"""schemathesis against /openapi.json: no 5xx; every response is documented (status code,
content type) and matches its schema, errors included; bad data → 4xx.

Every generated request goes to two servers, one on SQLite and one on PostgreSQL: SQLite
stores what PostgreSQL refuses (over-long VARCHARs, NUL characters), so a request that is
fine on one can be a 503 on the other. Generating a case costs far more than sending it,
so the second backend adds little time.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from tests.conftest import PG_ADMIN_URL, _pg_available, make_settings

WORKDIR = Path(tempfile.mkdtemp(prefix="arbiter-fuzz-"))
schema = schemathesis.openapi.from_dict(create_app(make_settings("sqlite://")).openapi())


def _not_a_server_error(ctx: Any, response: Any, case: Any) -> bool:
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code}"
    return True


def _serve(db: str) -> tuple[uvicorn.Server, threading.Thread, dict[str, str]]:
    app = create_app(make_settings(db, spec_poll_s=0, rate_limit_per_minute=0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    _, key = app.state.services.stores.keys.create(name="fuzz", scopes=["admin"])
    return srv, thread, {"base": f"http://127.0.0.1:{port}", "key": key}


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str | None]:
    """A PostgreSQL database for the module, or None (a failure under REQUIRE_POSTGRES)."""
    why = _pg_available()
    if why:
        if os.environ.get("ARBITER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"ARBITER_REQUIRE_POSTGRES=1 but {why}")
        yield None
        return
    import psycopg

    name = f"arbiter_fuzz_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def fuzz_servers(pg_database: str | None) -> Iterator[list[dict[str, str]]]:
    dbs = [f"sqlite:///{WORKDIR / 'fuzz.db'}", *([pg_database] if pg_database else [])]
    running = [_serve(db) for db in dbs]
    yield [info for _, _, info in running]
    for srv, thread, _ in running:
        srv.should_exit = True
        thread.join(timeout=10)


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api(case: Any, fuzz_servers: list[dict[str, str]]) -> None:
    for server in fuzz_servers:  # SQLite, then PostgreSQL
        response = case.call(
            base_url=server["base"], headers={"Authorization": f"Bearer {server['key']}"}
        )
        case.validate_response(
            response,
            checks=[
                _not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
                negative_data_rejection,
            ],
        )
