"""Peers measured beside Arbiter in the same run (`python -m bench --peers`): the LiteLLM proxy
(in a virtualenv of its own, made on first use) and a minimal FastAPI + instructor endpoint
(bench/peer_instructor.py), each against the same fake LLM, pinned the same way, at the same
100 clients as M2. Both are kept off the network: proxies in their environment point at a
dead loopback port, LiteLLM reads its bundled model-cost map, its telemetry is off.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("ARBITER_BENCH_CACHE", Path.home() / ".cache" / "arbiter-bench"))
LITELLM = "litellm[proxy]"
DEAD = "http://127.0.0.1:9"


def offline_env() -> dict[str, str]:
    """The environment of a peer: loopback only, nothing fetched at start-up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARBITER_")}
    env.update(
        HTTP_PROXY=DEAD,
        HTTPS_PROXY=DEAD,
        ALL_PROXY=DEAD,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        LITELLM_LOG="ERROR",
        LITELLM_TELEMETRY="False",
        # LiteLLM fetches these at start-up unless told to read its bundled copies
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOCAL_BLOG_POSTS="True",
        LITELLM_LOCAL_POLICY_TEMPLATES="True",
        LITELLM_LOCAL_AUTOROUTER_PRESETS="True",
        LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS="True",
        LITELLM_MODEL_COST_MAP_URL=f"{DEAD}/none",
        LITELLM_BLOG_POSTS_URL=f"{DEAD}/none",
        LITELLM_ANTHROPIC_BETA_HEADERS_URL=f"{DEAD}/none",
        LITELLM_AUTOROUTER_PRESETS_URL=f"{DEAD}/none",
        DO_NOT_TRACK="1",
        PYTHONPATH=str(ROOT),
    )
    return env


def litellm_exe() -> tuple[Path | None, str]:
    """The proxy's executable in its own virtualenv (installed on first use), or why not."""
    venv = CACHE / "litellm"
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe, "installed"
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120
        )
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", LITELLM],
            check=True,
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or [""]
        return None, f"pip install {LITELLM} failed: {tail[0][:200]}"
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not make the LiteLLM virtualenv: {type(exc).__name__}"
    return (exe, "installed now") if exe.exists() else (None, "no litellm executable")


class Peer:
    """One peer process, pinned to the service's core."""

    def __init__(self, cmd: list[str], *, health: str, env: dict[str, str], port: int):
        from bench.__main__ import pin, wait_up

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [*pin(0), *cmd],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_up(f"{self.url}{health}")
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _measure(
    url: str, body: Path, runs: int, duration: float, direct: list[float], key: str | None = None
) -> dict[str, Any]:
    from bench.__main__ import load

    res = [load(url, clients=100, duration=duration, body=body, key=key) for _ in range(runs)]
    rps = statistics.median(r["rps"] for r in res)
    return {
        "rps": round(rps, 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in res), 1),
        "ratio_to_direct": round(rps / statistics.median(direct), 3),
        "errors": sum(int(r.get("errors", 0)) for r in res),
    }


def litellm(
    work: Path, llm_url: str, chat: Path, runs: int, duration: float, direct: list[float]
) -> dict[str, Any]:
    """The LiteLLM proxy, one worker, relaying the same chat request as 'direct'."""
    from bench.__main__ import free_port

    row: dict[str, Any] = {"peer": "LiteLLM proxy (1 worker), same chat request as direct"}
    exe, why = litellm_exe()
    if exe is None:
        return {**row, "skipped": why}
    cfg = work / "litellm.yaml"
    cfg.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        f"      api_base: {llm_url}\n"
        "      api_key: bench\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  num_retries: 0\n"
    )
    port = free_port()
    cmd = [str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", "1", "--telemetry", "False"]
    key = "sk-" + secrets.token_hex(32)  # it refuses to start without one; Arbiter checks keys too
    try:
        peer = Peer(
            cmd,
            health="/health/liveliness",
            env={**offline_env(), "LITELLM_MASTER_KEY": key},
            port=port,
        )
    except RuntimeError:
        return {**row, "skipped": "the LiteLLM proxy did not come up"}
    try:
        import httpx

        probe = httpx.post(
            f"{peer.url}/v1/chat/completions",
            content=chat.read_bytes(),
            timeout=30,
            headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
        )
        if probe.status_code != 200:
            return {**row, "skipped": f"the proxy answered {probe.status_code}"}
        url = f"{peer.url}/v1/chat/completions"
        return {**row, **_measure(url, chat, runs, duration, direct, key=key)}
    finally:
        peer.stop()


def instructor_endpoint(
    llm_url: str, case: Path, runs: int, duration: float, direct: list[float]
) -> dict[str, Any]:
    """bench/peer_instructor.py under the same uvicorn, one worker."""
    from bench.__main__ import free_port

    port = free_port()
    env = {**offline_env(), "PEER_LLM_URL": llm_url}
    cmd = [sys.executable, "-m", "uvicorn", "bench.peer_instructor:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log", "--backlog", "4096"]
    row: dict[str, Any] = {"peer": "minimal FastAPI + instructor endpoint (openai SDK defaults)"}
    try:
        peer = Peer(cmd, health="/docs", env=env, port=port)
    except RuntimeError:
        return {**row, "skipped": "the endpoint did not come up"}
    try:
        return {**row, **_measure(f"{peer.url}/decide", case, runs, duration, direct)}
    finally:
        peer.stop()


def run(
    work: Path,
    llm_url: str,
    bodies: dict[str, Path],
    runs: int,
    duration: float,
    direct: list[float],
) -> list[dict[str, Any]]:
    return [
        litellm(work, llm_url, bodies["chat"], runs, duration, direct),
        instructor_endpoint(llm_url, bodies["llm"], runs, duration, direct),
    ]
