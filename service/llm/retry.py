"""Transport retries: which failures are retried, how long to wait, when to stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState, wait_random_exponential
from tenacity.stop import stop_base

from service.errors import ModelHTTPError, ModelTimeout, ModelUnreachable

RETRY_AFTER_STATUSES = (429, 503)
"""Statuses whose Retry-After header is honoured (RFC 9110 §10.2.3)."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds == float("inf"):  # NaN or infinite: no usable hint
        return None
    return max(0.0, seconds)


def is_transient(exc: BaseException) -> bool:
    """Timeouts, unreachable endpoints, 408/409/429 and 5xx are retried; other 4xx are not."""
    if isinstance(exc, ModelHTTPError):
        return exc.transient
    return isinstance(exc, ModelTimeout | ModelUnreachable)


def wait_policy(*, backoff_max_s: float) -> Callable[[RetryCallState], float]:
    """Jittered exponential backoff, or the server's Retry-After on a 429 or 503."""
    backoff = wait_random_exponential(multiplier=min(0.1, backoff_max_s), max=backoff_max_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if (
            isinstance(exc, ModelHTTPError)
            and exc.status_code in RETRY_AFTER_STATUSES
            and exc.retry_after_s is not None
        ):
            return exc.retry_after_s
        return float(backoff(state))

    return wait


class stop_at(stop_base):
    """Stop when the coming wait would end at or past the deadline (time.monotonic())."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self.deadline
