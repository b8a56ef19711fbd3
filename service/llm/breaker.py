"""A circuit breaker per model: skip a failing model for a cool-down, then probe it once."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _State:
    failures: deque[float] = field(default_factory=deque)
    opened_at: float | None = None
    probe: object | None = None  # the caller holding the one half-open probe


class Breakers:
    """closed → open after `threshold` failures within `window_s`; after `cooldown_s` one
    probe is let through (half-open); its success closes the breaker, its failure re-opens it."""

    def __init__(
        self,
        *,
        threshold: int,
        window_s: float,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.threshold = threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def state(self, model: str) -> str:
        with self._lock:
            s = self._states.get(model)
            if s is None or s.opened_at is None:
                return "closed"
            if self.clock() - s.opened_at >= self.cooldown_s:
                return "half_open"
            return "open"

    def allow(self, model: str, *, owner: object | None = None) -> bool:
        """Whether a call to `model` may go out now (a half-open breaker allows one probe,
        held by `owner` until its success, its failure or `release`)."""
        with self._lock:
            s = self._states.setdefault(model, _State())
            if s.opened_at is None:
                return True
            if self.clock() - s.opened_at < self.cooldown_s or s.probe is not None:
                return False
            s.probe = owner if owner is not None else object()
            return True

    def release(self, model: str, *, owner: object) -> None:
        """Give back `owner`'s probe that ended with no answer (cancelled, or not needed)."""
        with self._lock:
            s = self._states.get(model)
            if s is not None and s.probe is owner:
                s.probe = None

    def success(self, model: str) -> None:
        with self._lock:
            self._states[model] = _State()

    def failure(self, model: str) -> None:
        with self._lock:
            s = self._states.setdefault(model, _State())
            now = self.clock()
            if s.probe is not None or s.opened_at is not None:
                s.opened_at, s.probe = now, None
                return
            s.failures.append(now)
            while s.failures and now - s.failures[0] > self.window_s:
                s.failures.popleft()
            if len(s.failures) >= self.threshold:
                s.opened_at = now
                s.failures.clear()

    def snapshot(self) -> dict[str, str]:
        return {m: self.state(m) for m in list(self._states)}
