"""`python -m bench.profile [rules|llm|null] ...`: py-spy the real service under load.

Starts the fake LLM and the service as `python -m bench` does, samples the service with
py-spy (`--gil`: only the thread holding the GIL, i.e. where the CPU goes) while wrk or
bench/load.py drives the path, and prints the functions with the most samples, by own
time and by total time. Needs `pip install py-spy` (not a dependency); run as root or with
ptrace allowed.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.__main__ import ROOT, FakeLLM, Service, bodies


def frame_name(frame: str) -> str:
    """'func (path/to/file.py:12)' -> 'func (file.py)'."""
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]})"


def top(raw: Path, n: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        c = int(count)
        samples += c
        names = [frame_name(f) for f in stack.split(";")]
        own[names[-1]] += c
        for name in set(names):
            total[name] += c
    out = [f"{samples} samples", "own time:"]
    out += [f"  {100 * v / samples:5.1f}% {k}" for k, v in own.most_common(n)]
    out += ["total time:"]
    out += [f"  {100 * v / samples:5.1f}% {k}" for k, v in total.most_common(n * 3)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("paths", nargs="*", default=["rules", "llm"], choices=["rules", "llm", "null"])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    if not shutil.which("py-spy"):
        raise SystemExit("py-spy is not installed: pip install py-spy")
    with tempfile.TemporaryDirectory(prefix="arbiter-profile-", dir=ROOT) as tmp:
        work = Path(tmp)
        b = bodies(work)
        fake = FakeLLM(0.2)
        try:
            for path in a.paths:
                svc = Service(work, fake.url, null_log=path == "null")
                raw = work / f"{path}.txt"
                spy = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "-p",
                        str(svc.proc.pid),
                        "-d",
                        str(int(a.seconds)),
                        "-r",
                        "250",
                        "-f",
                        "raw",
                        "-o",
                        str(raw),
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(0.5)
                try:
                    body, clients = (b["llm"], 100) if path == "llm" else (b["rules"], 32)
                    res = svc.decide(body, clients=clients, duration=a.seconds - 2)
                    spy.wait()
                finally:
                    svc.stop()
                print(f"== {path} path: {res['rps']:.0f} rps while sampled")
                print(top(raw, a.top))
        finally:
            fake.stop()


if __name__ == "__main__":
    main()
