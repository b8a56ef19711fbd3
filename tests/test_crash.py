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
from sqlalchemy import text

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


def _start(db_url: str, port: int, **env: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env={**_env(db_url), **env},
        cwd=PROJECT_ROOT,
    )  # fmt: skip
    for _ in range(400):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the server did not start")


def test_keys_in_flight_at_sigkill_are_decided_afresh_after_their_lease(db_url: str) -> None:
    from tests.fake_openai import FakeOpenAI, rules_answer

    stores = open_stores(db_url)
    _, key = stores.keys.create(name="crash", scopes=["decide"])
    timeouts = {"ARBITER_DB_CONNECT_TIMEOUT_S": "2", "ARBITER_DB_STATEMENT_TIMEOUT_S": "1"}
    lease_s = 6 + 2 + 1  # the deadline, then the database wait
    port = _port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    keys = [f"crash-{n}" for n in range(20)]

    def case(n: int) -> dict[str, object]:
        c = json.loads(json.dumps(FIXTURE))
        c["order"]["id"] = f"ORD-LEASE-{n}"
        return c

    with FakeOpenAI(answer=rules_answer, latency_s=60) as llm:  # every model call stalls
        proc = _start(
            db_url, port, ARBITER_LLM_BASE_URL=llm.base_url, ARBITER_LLM_API_KEY="sk-fake",
            ARBITER_DEADLINE_S="6", **timeouts,
        )  # fmt: skip
        try:

            def send(n: int) -> None:
                try:
                    httpx.post(
                        f"{base}/v1/decisions/returns",
                        json=case(n),
                        headers={**auth, "Idempotency-Key": keys[n]},
                        timeout=30,
                    )
                except httpx.HTTPError:
                    pass  # the server dies mid-request

            sent = time.monotonic()
            threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
            for t in threads:
                t.start()
            while len(llm.chat_requests) < 20 and time.monotonic() - sent < 5:
                time.sleep(0.02)
            assert len(llm.chat_requests) >= 20  # every key is claimed and in flight
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()  # every claim was made between `sent` and now
            proc.wait(timeout=10)
            for t in threads:
                t.join(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()

    proc = _start(db_url, port, **timeouts)  # restarted, rules only
    try:
        with httpx.Client(base_url=base, headers=auth, timeout=10) as c:
            early = [
                c.post("/v1/decisions/returns", json=case(n), headers={"Idempotency-Key": k})
                for n, k in enumerate(keys)
            ]
            if time.monotonic() - sent < lease_s - 0.5:  # the restart was quick enough
                assert [r.status_code for r in early].count(409) >= 1
                assert all(r.status_code == 409 for r in early if r.status_code != 200)
            time.sleep(max(0.0, killed + lease_s + 0.5 - time.monotonic()))
            late = [
                c.post("/v1/decisions/returns", json=case(n), headers={"Idempotency-Key": k})
                for n, k in enumerate(keys)
            ]
            assert [r.status_code for r in late] == [200] * 20, [r.text for r in late][:2]
            replay = c.post(
                "/v1/decisions/returns", json=case(0), headers={"Idempotency-Key": keys[0]}
            )
            assert replay.headers.get("idempotent-replayed") == "true"
            assert replay.content == late[0].content
    finally:
        proc.kill()
        proc.wait(timeout=10)
    after = open_stores(db_url, migrate=False)
    with after.db.engine.connect() as conn:
        per_key = dict(
            conn.execute(
                text(
                    "SELECT idempotency_key, count(*) FROM decisions "
                    "WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key"
                )
            ).all()
        )
    assert per_key == dict.fromkeys(keys, 1)  # exactly one record per key
    assert after.log.verify().ok
    after.close()
    stores.close()
