"""Crash safety with a real server process, and several writer processes on one chain."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from service.log.stores import open_stores
from service.settings import PROJECT_ROOT

FIXTURE = json.loads(
    (PROJECT_ROOT / "tests" / "fixtures" / "contract" / "returns.request.json").read_text()
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARBITER_")}
    env.update(
        ARBITER_DATABASE_URL=db_url,
        ARBITER_SPEC_POLL_S="0",
        ARBITER_RATE_LIMIT_PER_MINUTE="0",
        PYTHONPATH=str(PROJECT_ROOT),
    )
    return env


def test_sigkill_under_load_loses_no_answered_decision(db_url: str) -> None:
    stores = open_stores(db_url)
    _, key = stores.keys.create(name="crash", scopes=["decide"])
    port = _port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "service.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=_env(db_url),
        cwd=PROJECT_ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        answered: list[str] = []
        stop = threading.Event()

        def client(n: int) -> None:
            with httpx.Client(
                base_url=base, timeout=5, headers={"Authorization": f"Bearer {key}"}
            ) as c:
                i = 0
                while not stop.is_set():
                    case = json.loads(json.dumps(FIXTURE))
                    case["order"]["id"] = f"ORD-{n}-{i}"
                    i += 1
                    try:
                        r = c.post("/v1/decisions/returns", json=case)
                    except httpx.HTTPError:
                        return  # the server died mid-request
                    if r.status_code == 200:
                        answered.append(r.json()["decision_id"])

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(answered) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load, no shutdown
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(answered) >= 60
    after = open_stores(db_url)
    missing = [i for i in answered if after.log.get(decision_id=i) is None]
    assert missing == []
    report = after.log.verify()
    assert report.ok, report.first_bad
    assert report.checked >= len(answered)
    after.close()
    stores.close()


WRITER = """
import asyncio, json, sys
from service.services import build_services
from service.settings import get_settings
engine = build_services(get_settings()).require_engine()
case = json.loads(sys.argv[2])
async def main():
    for i in range(int(sys.argv[1])):
        case["order"]["id"] = f"ORD-{sys.argv[3]}-{i}"
        await engine.decide(kind="returns", case=engine.parse_case("returns", case), caller="w")
asyncio.run(main())
engine.log.db.close()
"""


def test_concurrent_writer_processes_form_one_chain(pg_url: str) -> None:
    open_stores(pg_url).close()
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, "30", json.dumps(FIXTURE), str(n)],
            env=_env(pg_url),
            cwd=PROJECT_ROOT,
        )
        for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    elapsed = time.monotonic() - started
    stores = open_stores(pg_url, migrate=False)
    report = stores.log.verify()
    assert report.ok, report.first_bad
    assert report.checked == 120
    print(f"4 processes x 30 decisions on PostgreSQL: {elapsed:.1f}s")  # noqa: T201
    stores.close()
