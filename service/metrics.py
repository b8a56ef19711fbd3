"""Counters for /metrics (Prometheus text format); labels never carry ids, keys or data."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.events: Counter[str] = Counter()

    def decided(self, row: Any) -> None:
        with self._lock:
            self.decisions[(row.kind, row.source)] += 1
            if row.fallback_reason:
                self.fallbacks[(row.kind, row.fallback_reason)] += 1
            for a in row.attempts:
                self.attempts[(a["model"], a["status"])] += 1

    def count(self, event: str) -> None:
        with self._lock:
            self.events[event] += 1

    def render(self, gauges: dict[str, float], breakers: dict[str, str]) -> str:
        lines = ["# TYPE arbiter_decisions_total counter"]
        with self._lock:
            lines += [
                f'arbiter_decisions_total{{kind="{k}",source="{s}"}} {n}'
                for (k, s), n in sorted(self.decisions.items())
            ]
            lines.append("# TYPE arbiter_fallbacks_total counter")
            lines += [
                f'arbiter_fallbacks_total{{kind="{k}",reason="{r}"}} {n}'
                for (k, r), n in sorted(self.fallbacks.items())
            ]
            lines.append("# TYPE arbiter_llm_attempts_total counter")
            lines += [
                f'arbiter_llm_attempts_total{{model="{m}",status="{s}"}} {n}'
                for (m, s), n in sorted(self.attempts.items())
            ]
            lines.append("# TYPE arbiter_events_total counter")
            lines += [
                f'arbiter_events_total{{event="{e}"}} {n}' for e, n in sorted(self.events.items())
            ]
        lines.append("# TYPE arbiter_breaker_open gauge")
        lines += [
            f'arbiter_breaker_open{{model="{m}"}} {int(st != "closed")}'
            for m, st in sorted(breakers.items())
        ]
        for name, value in sorted(gauges.items()):
            lines += [f"# TYPE arbiter_{name} gauge", f"arbiter_{name} {value}"]
        return "\n".join(lines) + "\n"
