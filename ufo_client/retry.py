"""When to send a request again: 503 and 429 answers, after the server's Retry-After, a bounded number of times.

The sync and async clients share this decision; only how they sleep differs.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field

import httpx


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; a naive one is read as such
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Retry answers whose status is in `statuses`, at most `max_retries` times.

    The wait is the answer's Retry-After, or `backoff_s * 2**attempt` without one. A server asking for a
    wait longer than `max_wait_s` is not retried: the error is raised at once, carrying `retry_after`.
    """

    max_retries: int = 3
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))
    backoff_s: float = 0.5
    max_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff_s < 0 or self.max_wait_s < 0:
            raise ValueError("RetryPolicy: max_retries, backoff_s and max_wait_s must be >= 0")

    def wait_s(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before sending again after `response` to try number `attempt` (0-based), or None."""
        if response.status_code not in self.statuses or attempt >= self.max_retries:
            return None
        wait = retry_after_s(response.headers.get("retry-after"))
        if wait is None:
            wait = self.backoff_s * 2**attempt
        return wait if wait <= self.max_wait_s else None


NO_RETRY = RetryPolicy(max_retries=0)
