"""`python -m bench`: what a decision costs, as ratios measured in one run (M1–M9).

Starts the fake LLM and the service (real uvicorn, real SQLite database, one worker pinned
to core 0 when `taskset` exists) and drives load from a separate process pinned to core 1.
Every metric is the median of --runs runs (spread reported); the load average is recorded,
since absolute numbers move with whatever else the machine runs. Also measured in the same
run: the LLM transports Arbiter can use, M8 bytes stored per decision, M9 two workers, and
with --peers the LiteLLM proxy and a minimal FastAPI + instructor endpoint against the same
fake LLM. Results go to bench/results/<date>.json and bench/results/<date>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "contract" / "returns.request.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int | str) -> list[str]:
    return (
        ["taskset", "-c", str(core)]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1
        else []
    )


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with tempfile.NamedTemporaryFile(dir=ROOT) as f:
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 1.0:
            f.write(b"x" * 512)
            f.flush()
            os.fsync(f.fileno())
            n += 1
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "fsync_per_s": round(n / (time.perf_counter() - t0)),
        "platform": platform.platform(),
    }


def wait_up(url: str, timeout: float = 90.0) -> None:
    """Wait for a server to answer (imports take long on a busy machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Service:
    """The Arbiter service in its own process."""

    def __init__(
        self,
        workdir: Path,
        llm_url: str,
        *,
        null_log: bool = False,
        env: dict[str, str] | None = None,
        workers: int = 1,
        db_url: str | None = None,
    ):
        self.port = free_port()
        self.db_url = db_url or f"sqlite:///{workdir / f'bench-{self.port}.db'}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ARBITER_")}
        environ.update(
            ARBITER_DATABASE_URL=self.db_url,
            ARBITER_LLM_BASE_URL=llm_url,
            ARBITER_LLM_API_KEY="bench",
            ARBITER_SPEC_POLL_S="0",
            ARBITER_RATE_LIMIT_PER_MINUTE="0",
            ARBITER_LLM_MAX_CONCURRENCY="512",
            ARBITER_LLM_POOL_CONNECTIONS="512",
            PYTHONPATH=str(ROOT),
        )
        if null_log:
            environ["ARBITER_UNSAFE_NULL_LOG"] = "1"
        environ.update(env or {})
        from service.log.stores import open_stores

        stores = open_stores(self.db_url)
        _, self.key = stores.keys.create(name="bench", scopes=["decide"])
        stores.close()
        self.proc = subprocess.Popen(
            [
                *pin(0 if workers == 1 else "0,1"),
                sys.executable,
                "-m",
                "uvicorn",
                "service.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
                "--backlog",
                "4096",
            ],
            env=environ,
            cwd=ROOT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_up(f"{self.url}/healthz")

    def decide(self, body: Path, *, clients: int, duration: float) -> dict[str, float]:
        """Load POST /v1/decisions/returns with `body`."""
        url = f"{self.url}/v1/decisions/returns"
        return load(url, clients=clients, duration=duration, body=body, key=self.key)

    def records(self) -> int:
        from service.log.stores import open_stores

        stores = open_stores(self.db_url, migrate=False)
        n = stores.log.count()
        stores.close()
        return n

    def bytes_per_record(self) -> dict[str, Any]:
        """M8: mean bytes of a stored decision row (every column's stored length), by source."""
        from sqlalchemy import inspect, text

        from service.log.stores import open_stores

        stores = open_stores(self.db_url, migrate=False)
        try:
            with stores.db.engine.connect() as conn:
                cols = [c["name"] for c in inspect(conn).get_columns("decisions")]
                size = " + ".join(f'coalesce(length(CAST("{c}" AS TEXT)), 0)' for c in cols)
                rows = conn.execute(
                    text(f"SELECT source, count(*), avg({size}) FROM decisions GROUP BY source")
                ).all()
        finally:
            stores.close()
        return {str(src): {"records": int(n), "bytes": round(float(b))} for src, n, b in rows}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


class FakeLLM:
    def __init__(self, latency: float):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                *pin(1),
                sys.executable,
                "-m",
                "bench.fake_llm",
                "--port",
                str(self.port),
                "--latency",
                str(latency),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.url = f"http://127.0.0.1:{self.port}/v1"
        wait_up(f"http://127.0.0.1:{self.port}/")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


WRK_SCRIPT = """
wrk.method = "{method}"
{body}
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{{"rps": %f, "p50_ms": %f, "p99_ms": %f, "ok": %d, "errors": %d}}\\n',
    (summary.requests - e.status) / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests - e.status,
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def _wrk(
    url: str, clients: int, duration: float, body: Path | None, key: str | None
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            WRK_SCRIPT.format(
                method="POST" if body else "GET",
                body=f'wrk.body = io.open("{body}"):read("*a")' if body else "",
                auth=f'wrk.headers["Authorization"] = "Bearer {key}"' if key else "",
            )
        )
    cmd = [
        *pin(1),
        "wrk",
        "-t1",
        f"-c{clients}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "30s",
        "-s",
        f.name,
        url,
    ]
    warm = [c if not c.startswith("-d") else "-d1s" for c in cmd]
    subprocess.run(warm, capture_output=True, check=True)  # warm-up, not measured
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    return dict(json.loads(out.strip().splitlines()[-1]))


def load(
    url: str, *, clients: int, duration: float, body: Path | None = None, key: str | None = None
) -> dict[str, float]:
    """wrk (Debian's) when installed, else an async httpx client, in its own process."""
    if shutil.which("wrk"):
        return _wrk(url, clients, duration, body, key)
    cmd = [
        *pin(1),
        sys.executable,
        "-m",
        "bench.load",
        "--url",
        url,
        "--clients",
        str(clients),
        "--duration",
        str(duration),
        "--warmup",
        str(min(1.0, duration / 3)),
    ]
    if body:
        cmd += ["--body-file", str(body)]
    if key:
        cmd += ["--key", key]
    out = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return dict(json.loads(out.stdout))


def median_spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def bodies(workdir: Path) -> dict[str, Path]:
    case = json.loads(FIXTURE.read_text())
    rules = json.loads(json.dumps(case))
    rules["request"]["items"][0]["customer_comment"] = None  # precheck decides alone
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 6000}]}
    out = {}
    for name, data in (("rules", rules), ("llm", case), ("chat", chat)):
        p = workdir / f"{name}.json"
        p.write_text(json.dumps(data))
        out[name] = p
    return out


def eval_metrics() -> dict[str, Any]:
    """M6 and M7 from the eval suites (rules mode, no network)."""
    from service.evals.runner import RunConfig, run_suites
    from service.evals.suite import load_suites
    from service.kinds.registry import KINDS
    from service.llm.prompts import PromptLibrary
    from service.settings import Settings
    from service.specs.lint import estimate_tokens

    settings = Settings(_env_file=None, database_url="sqlite://")  # type: ignore[call-arg]
    m6: dict[str, Any] = {}
    m7: dict[str, Any] = {}
    suites = load_suites(settings.evals_dir, list(KINDS))
    result = run_suites(settings=settings, config=RunConfig(mode="rules"), suites=suites)
    with tempfile.TemporaryDirectory() as tmp:
        from service.services import build_services

        services = build_services(settings, url=f"sqlite:///{tmp}/m7.db", use_llm=False)
        engine = services.require_engine()
        registry = engine.registry
        prompts = PromptLibrary(settings.prompts_dir)
        for kind in KINDS:
            cases = [c for c in result.cases if c.kind == kind]
            alone = [c for c in cases if c.got.get("source") == "rules" and c.status == "passed"]
            m6[kind] = {
                "cases": len(cases),
                "decided_by_rules_alone_and_correct": len(alone),
                "share": round(len(alone) / len(cases), 3) if cases else None,
            }
            tokens, prefix = [], []
            for s in (s for s in suites if s.kind == kind):
                from service.evals.suite import build_case

                for ec in s.cases:
                    case = engine.parse_case(kind, build_case(s, ec))
                    k = engine.kind(kind)
                    spec = registry.active(kind, k.reference_date(case))
                    if k.precheck(case, spec.params) is not None:
                        continue  # no prompt: rules decided
                    p = prompts.render(spec=spec, case=k.prompt_case(case, spec.params))
                    tokens.append(estimate_tokens(p.system + p.user))
                    prefix.append(len(p.system) / (len(p.system) + len(p.user)))
            m7[kind] = {
                "prompts": len(tokens),
                "prompt_tokens_per_decision": round(statistics.fmean(tokens)) if tokens else 0,
                "stable_prefix_share": round(statistics.fmean(prefix), 3) if prefix else None,
            }
        services.stores.close()
    return {"M6": m6, "M7": m7}


QUICK = False


def llm_long(dur: float) -> float:
    """A saturated LLM path answers 100 clients in seconds: measure it longer (not --quick)."""
    return dur if QUICK else max(dur * 3, 3.0)


def workers_ratio(
    work: Path,
    llm_url: str,
    b: dict[str, Path],
    runs: int,
    dur: float,
    one: list[float],
    db_url: str | None = None,
) -> dict[str, Any]:
    """M9: rules-path rps with `--workers 2` (both cores) over one worker (core 0)."""
    two = Service(work, llm_url, workers=2, db_url=db_url)
    try:
        rps = [two.decide(b["rules"], clients=32, duration=dur)["rps"] for _ in range(runs)]
    finally:
        two.stop()
    return {
        "one_worker_rps": median_spread(one),
        "two_workers_rps": median_spread(rps),
        "ratio": round(statistics.median(rps) / statistics.median(one), 3),
        "target": "report",
    }


def postgres_workers(
    url: str, work: Path, llm_url: str, b: dict[str, Path], runs: int, dur: float
) -> dict[str, Any]:
    """M9 on PostgreSQL: one and two workers on a scratch database."""
    import psycopg

    name = f"arbiter_bench_{os.getpid()}"
    admin = url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = f"{url.rsplit('/', 1)[0]}/{name}"
    try:
        one_svc = Service(work, llm_url, db_url=db_url)
        try:
            one = [one_svc.decide(b["rules"], clients=32, duration=dur)["rps"] for _ in range(runs)]
        finally:
            one_svc.stop()
        return workers_ratio(work, llm_url, b, runs, dur, one, db_url=db_url)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TRANSPORTS = (
    ("httpx", "512", "httpx 0.28 / httpcore, pool of 512"),
    ("httpx", "100", "httpx 0.28 / httpcore, pool of 100 (= clients)"),
    ("aiohttp", "512", "openai DefaultAioHttpClient (aiohttp), pool of 512 (default)"),
)


def transports(
    work: Path, llm_url: str, b: dict[str, Path], runs: int, dur: float, direct: list[float]
) -> list[dict[str, Any]]:
    """Arbiter's LLM path at 100 clients over each transport it can use, in this run."""
    rows = []
    for transport, pool, label in TRANSPORTS[1:] if QUICK else TRANSPORTS:
        svc = Service(
            work,
            llm_url,
            env={"ARBITER_LLM_TRANSPORT": transport, "ARBITER_LLM_POOL_CONNECTIONS": pool},
        )
        try:
            res = [svc.decide(b["llm"], clients=100, duration=llm_long(dur)) for _ in range(runs)]
        finally:
            svc.stop()
        rps = statistics.median(r["rps"] for r in res)
        rows.append(
            {
                "transport": label,
                "rps": round(rps, 1),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in res), 1),
                "ratio_to_direct": round(rps / statistics.median(direct), 3),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    ap.add_argument("--quick", action="store_true", help="one short run (a smoke test)")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument(
        "--peers",
        action="store_true",
        help="also measure the LiteLLM proxy (installed in its own virtualenv) and a minimal "
        "FastAPI + instructor endpoint against the same fake LLM",
    )
    ap.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure M9 on PostgreSQL (a scratch database is made on this server)",
    )
    a = ap.parse_args()
    runs, dur = (1, 1.5) if a.quick else (a.runs, a.duration)
    global QUICK
    QUICK = a.quick
    started = time.monotonic()
    info = machine()
    info["load_generator"] = "wrk" if shutil.which("wrk") else "httpx (bench/load.py)"
    info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"machine: {info['cores']} cores, {info['cpu']}, fsync {info['fsync_per_s']}/s", flush=True
    )
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "runs": runs,
        "duration_s": dur,
        "metrics": {},
    }
    m = out["metrics"]
    with tempfile.TemporaryDirectory(prefix="arbiter-bench-", dir=ROOT) as tmp:
        work = Path(tmp)
        b = bodies(work)
        fake = FakeLLM(0.2)
        svc = Service(work, fake.url)
        null = Service(work, fake.url, null_log=True)
        try:
            print("M1 rules path vs trivial endpoint ...", flush=True)
            r1, t1 = [], []
            for _ in range(runs):
                t1.append(load(f"{svc.url}/healthz", clients=32, duration=dur)["rps"])
                r1.append(svc.decide(b["rules"], clients=32, duration=dur)["rps"])
            m["M1"] = {
                "rules_rps": median_spread(r1),
                "trivial_rps": median_spread(t1),
                "ratio": median_spread([r / t for r, t in zip(r1, t1, strict=True)]),
                "target": ">= 0.5",
            }
            print("M2/M3 LLM path vs the fake LLM directly ...", flush=True)
            r2, d2, add50, add99 = [], [], [], []
            for _ in range(runs):
                long = llm_long(dur)
                direct = load(
                    f"{fake.url}/chat/completions", clients=100, duration=long, body=b["chat"]
                )
                via = svc.decide(b["llm"], clients=100, duration=long)
                r2.append(via["rps"])
                d2.append(direct["rps"])
                d50 = load(f"{fake.url}/chat/completions", clients=50, duration=dur, body=b["chat"])
                v50 = svc.decide(b["llm"], clients=50, duration=dur)
                add50.append(v50["p50_ms"] - d50["p50_ms"])
                add99.append(v50["p99_ms"] - d50["p99_ms"])
            m["M2"] = {
                "llm_path_rps": median_spread(r2),
                "direct_rps": median_spread(d2),
                "ratio": median_spread([r / d for r, d in zip(r2, d2, strict=True)]),
                "target": ">= 0.6",
            }
            m["M3"] = {
                "p50_added_ms": median_spread(add50),
                "p99_added_ms": median_spread(add99),
                "target": "p50 <= 10 ms, p99 <= 50 ms",
            }
            print("M4 durable hash-chained log vs a null store ...", flush=True)
            before = svc.records()
            logged, nulled = [], []
            for _ in range(runs):
                res = svc.decide(b["rules"], clients=32, duration=dur)
                logged.append(res["rps"])
                nulled.append(null.decide(b["rules"], clients=32, duration=dur)["rps"])
            after = svc.records()
            m["M4"] = {
                "with_log_rps": median_spread(logged),
                "null_store_rps": median_spread(nulled),
                "cost": median_spread([1 - w / n for w, n in zip(logged, nulled, strict=True)]),
                "records_written": after - before,
                "target": "<= 0.15, 0 lost",
            }
            m["M8"] = svc.bytes_per_record()
            print("M9 two workers vs one (rules path, durable log) ...", flush=True)
            m["M9"] = {"sqlite": workers_ratio(work, fake.url, b, runs, dur, logged)}
            if a.postgres:
                m["M9"]["postgresql"] = postgres_workers(a.postgres, work, fake.url, b, runs, dur)
            print("LLM transports ...", flush=True)
            out["transports"] = transports(work, fake.url, b, runs, dur, d2)
            if a.peers:
                print("peers: LiteLLM proxy, minimal FastAPI + instructor ...", flush=True)
                from bench import peers

                out["peers"] = peers.run(work, fake.url, b, runs, max(llm_long(dur), 10.0), d2)
        finally:
            for proc in (svc, null, fake):
                proc.stop()
    print("M5 routing planner ...", flush=True)
    from bench import planner

    m["M5"] = planner.run(repeats=10 if a.quick else 50)
    print("M6/M7 from the eval suites ...", flush=True)
    m.update(eval_metrics())
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    md = render(out)
    print(md)
    if not a.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = datetime.now(UTC).strftime("%Y-%m-%d")
        (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=1))
        (RESULTS / f"{stem}.md").write_text(md)
        print(f"saved bench/results/{stem}.json and .md")


def render(out: dict[str, Any]) -> str:
    m, mc = out["metrics"], out["machine"]

    def ms(d: dict[str, float]) -> str:
        return f"{d['median']:.3f} ({d['min']:.3f}–{d['max']:.3f})"

    rows = [
        (
            "M1",
            "rules-path rps ÷ trivial endpoint rps",
            ms(m["M1"]["ratio"]),
            "≥ 0.5",
            f"{m['M1']['rules_rps']['median']:.0f} vs {m['M1']['trivial_rps']['median']:.0f} rps",
        ),
        (
            "M2",
            "LLM-path rps ÷ fake LLM direct rps (200 ms, 100 clients)",
            ms(m["M2"]["ratio"]),
            "≥ 0.6",
            f"{m['M2']['llm_path_rps']['median']:.0f} vs {m['M2']['direct_rps']['median']:.0f} rps",
        ),
        (
            "M3",
            "p50 / p99 latency added at 50 clients (ms)",
            f"{m['M3']['p50_added_ms']['median']:.1f} / {m['M3']['p99_added_ms']['median']:.1f}",
            "≤ 10 / ≤ 50",
            f"p50 spread {ms(m['M3']['p50_added_ms'])}",
        ),
        (
            "M4",
            "cost of the durable hash-chained log",
            ms(m["M4"]["cost"]),
            "≤ 0.15",
            f"{m['M4']['with_log_rps']['median']:.0f} vs {m['M4']['null_store_rps']['median']:.0f}"
            f" rps; {m['M4']['records_written']} records written",
        ),
        (
            "M5",
            "routing planner, 50 locations × 20 lines (ms)",
            f"{m['M5']['median_ms']:.1f} (p95 {m['M5']['p95_ms']:.1f})",
            "≤ 20",
            "",
        ),
        (
            "M8",
            "bytes stored per decision (row), rules / LLM",
            " / ".join(str(m["M8"].get(src, {}).get("bytes", "–")) for src in ("rules", "llm")),
            "report",
            ", ".join(f"{k}: {v['records']} records" for k, v in m["M8"].items()),
        ),
    ]
    for db, v in m["M9"].items():
        rows.append(
            (
                "M9",
                f"`--workers 2` ÷ one worker, rules path, durable log ({db})",
                f"{v['ratio']:.2f}",
                "report",
                f"{v['two_workers_rps']['median']:.0f} vs {v['one_worker_rps']['median']:.0f} rps",
            )
        )
    lines = [
        f"# Arbiter benchmark {out['date']}",
        "",
        f"Machine: {mc['cores']} cores, {mc['cpu']}, Python {mc['python']}, "
        f"fsync {mc['fsync_per_s']}/s, load from {mc['load_generator']}, "
        f"load average {mc['load_average_start'][0]} at the start and "
        f"{mc['load_average_end'][0]} at the end (other work on the machine). "
        f"Median of {out['runs']} run(s) of {out['duration_s']} s (min–max in brackets). "
        f"Took {out['elapsed_s']} s.",
        "",
        "| id | metric | measured | target | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    lines += [
        "",
        "| kind | M6: decided by rules alone and correct | M7: prompt tokens per LLM "
        "decision | M7: stable prefix share |",
        "| --- | --- | --- | --- |",
    ]
    for kind, v in m["M6"].items():
        p = m["M7"][kind]
        lines.append(
            f"| {kind} | {v['decided_by_rules_alone_and_correct']}/{v['cases']} "
            f"({v['share']:.0%}) | {p['prompt_tokens_per_decision']} | "
            f"{p['stable_prefix_share']} |"
        )
    lines += [
        "",
        "LLM transports: Arbiter's LLM path at 100 clients, 200 ms fake LLM, same run:",
        "",
        "| transport | rps | p50 ms | ÷ fake direct |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {t['transport']} | {t['rps']:.0f} | {t['p50_ms']:.0f} | {t['ratio_to_direct']:.3f} |"
        for t in out.get("transports", [])
    ]
    if out.get("peers"):
        lines += [
            "",
            "Peers, same run, same fake LLM (200 ms), 100 clients, pinned to the same core:",
            "",
            "| peer | rps | p50 ms | ÷ fake direct |",
            "| --- | --- | --- | --- |",
            f"| Arbiter, LLM path (M2) | {m['M2']['llm_path_rps']['median']:.0f} | – | "
            f"{m['M2']['ratio']['median']:.3f} |",
        ]
        for p in out["peers"]:
            if "skipped" in p:
                lines.append(f"| {p['peer']} | skipped: {p['skipped']} | | |")
            else:
                lines.append(
                    f"| {p['peer']} | {p['rps']:.0f} | {p['p50_ms']:.0f} | "
                    f"{p['ratio_to_direct']:.3f} |"
                )
        lite = next((p for p in out["peers"] if "LiteLLM" in p["peer"] and "rps" in p), None)
        if lite and lite["ratio_to_direct"] > 0:
            times = m["M2"]["ratio"]["median"] / lite["ratio_to_direct"]
            lines += ["", f"M2 is {times:.1f}× the LiteLLM proxy's ratio (target ≥ 6×)."]
    lines += ["", ANALYSIS]
    return "\n".join(lines) + "\n"


ANALYSIS = """## Before and after (issue 15)

Before: main at 3465868, `python -m bench --runs 1 --duration 4`, load average 4.3 → 6.1,
fsync 789/s: M1 0.073 (161 vs 2,204 rps), M2 0.081 (40 vs 490 rps), M3 314 / 1,005 ms,
M4 0.53 (254 vs 540 rps); M8, M9, transports and peers not measured. The transport table
above holds the before of the LLM path in the same run: httpx's pool (512) was the default.
Compare ratios, not rps, across runs: the machine was shared with four test suites.

## What bounds the missed targets, and what was tried

Profiles: `python -m bench.profile` (py-spy `--gil`, the real service under wrk, share of
samples where the GIL was held).

- **Rules path (M1, M4)** — before: every `def` dependency getter (`get_services`,
  `get_engine`, `get_keys`, ...) ran in the thread pool, so each request made three to five
  thread hops for attribute reads: the hand-off (`Condition.notify` in anyio's worker queue)
  was 29 % of samples and `solve_dependencies` 29 % (18 % in `run_in_threadpool`). Fixed:
  the getters are `async def`. uvicorn now runs on uvloop and httptools, which doubled the
  trivial endpoint (2,204 → 4,500+ rps on a quieter moment) and so lowers M1 for the same
  decision cost. What bounds M1 and M4 now is the durable log: one fsync'd commit per
  decision, serialised on the chain head; this disk did 217–789 fsync/s today (the machine
  line), so one fsync per decision caps the durable rules path there, whatever the CPU,
  while M1 ≥ 0.5 needs half the trivial endpoint (≥ 1,100 rps). The null store (320–700
  rps) is the CPU ceiling without the log: FastAPI's request handling (dependency solving,
  body validation, about 40 % of samples), building the SQLModel row (7 %), the key lookup
  (a database read per request, 6 %). Group commit (several decisions per transaction and
  fsync) is what moves M1 and M4; `synchronous=FULL` stays. **With group commit**
  (service/log/group.py), measured after this table's run, same machine, load average
  11.3 → 16.3: rules path 79 rps with the durable log vs 77 with the null store, so M4 ≈ 0
  (−0.02; target ≤ 0.15: met), 399 records written, none lost; M1 0.11 (79 vs 730 rps):
  the durable path now costs what the null store costs, and M1 is bounded by CPU per
  request (FastAPI's dependency solving and body validation, the row build, the key
  lookup), not by the log. Two workers on SQLite: 33 rps (0.41 of one).
- **LLM path (M2, M3)** — before: httpcore's pool walk on every request
  (`AsyncHTTP11Connection.is_idle`, `has_expired`, `_assign_requests_to_connections`: about
  20 % of own time with 100+ connections), the SDK's walk of the request body against its
  TypedDicts (`_async_transform_recursive` and `typing` hashing: 13 % total) and prompt
  rendering (16 %: the template file read and the 8 KB static part rendered again for every
  decision). Fixed: aiohttp under the SDK (`DefaultAioHttpClient`, the transport table:
  about 3–6× httpx's pool in the same run), `POST /chat/completions` through the SDK client
  without that walk, the static system part rendered once per (template, spec version).
  After: the SDK still builds an httpx request and response per call (`Headers`, 6 %),
  tenacity builds its retry state per call (5 %), JSON encoding of the request (4 %), the
  thread hops for the key lookup and the log write (6 %); no single entry above 6 %. One
  core is then CPU-bound near 130–180 LLM decisions/s on a quieter machine (0.34–0.39 of
  direct), so M2 ≥ 0.6 and M3 ≤ 10 ms are not met on one worker; more workers are the next
  step for this path (it is CPU, not the log). M2 is 9× the LiteLLM proxy's ratio in the
  same run (target ≥ 6×: met), and 7× the minimal FastAPI + instructor endpoint's.
- **M8**: an LLM record stores its whole prompt, whose system part repeats the spec text
  and the static instructions (about 10 KB of the 12 KB). Not done here: storing the static
  part once by sha and rebuilding it for auditors changes the record's columns and hashed
  payload, which lane `log` was reworking (shards, hash version 2) at the same time.
- **M9**: on SQLite two workers are slower than one (0.5–0.6): both processes queue on the
  database's one write lock, and SQLite's busy handler sleeps and retries instead of waking
  on release. On PostgreSQL two workers collapsed (3 vs 42 rps in this run): appends of one
  shard queue on its head's row lock across processes (`ARBITER_LOG_SHARDS` spreads them).
- **Tried and fixed earlier**: the routing planner (M5): location membership tested by
  pydantic model equality; by id instead, 13.9 → 7.9 ms for 50 × 20.
"""


if __name__ == "__main__":
    main()
