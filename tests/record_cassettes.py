"""Re-record the committed eval cassettes (evals/<kind>/cassettes/) from the scripted loopback
server in tests/fake_openai.py — not from a real model:

    python -m tests.record_cassettes

Its answers are the deterministic policy's verdicts (returns, exceptions) and the cheapest
tied plan (routing), schema-valid, sent as tool calls. They exercise `--mode recorded` end to
end; they say nothing about how a real model judges. To record from a real model instead:

    ARBITER_LLM_BASE_URL=... ARBITER_LLM_API_KEY=... arbiter eval --mode live --record
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from service.evals.runner import RunConfig, run_suites
from service.evals.suite import load_suites
from service.kinds.registry import KINDS
from service.settings import PROJECT_ROOT, Settings
from tests.fake_openai import FakeOpenAI, rules_answer


def main() -> None:
    for name in list(os.environ):
        if name.startswith("ARBITER_LLM_"):
            del os.environ[name]  # this machine's own LLM settings play no part
    evals = PROJECT_ROOT / "evals"
    for kind in KINDS:
        shutil.rmtree(evals / kind / "cassettes", ignore_errors=True)
    with FakeOpenAI(answer=rules_answer) as llm, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=f"sqlite:///{Path(tmp) / 'unused.db'}",
            llm_base_url=llm.base_url,
        )
        result = run_suites(
            settings=settings,
            config=RunConfig(mode="live", record=True, concurrency=1),
            suites=load_suites(evals, list(KINDS)),
        )
    s = result.summary
    print(  # noqa: T201
        f"recorded {result.cassettes_recorded} cassette(s) for {s['cases']} cases; "
        f"agreement {s['agreement']}, model verdicts {s['model_verdicts']}"
    )


if __name__ == "__main__":
    main()
