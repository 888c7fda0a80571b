"""Per-API-key rate limit: one token bucket per key id, 429 with Retry-After when a key's bucket is empty.

In-process: each gateway replica keeps its own buckets, so N replicas behind a load balancer allow up to N times
the configured rate to one key (size the setting per replica). Keys come from the configured key ring, so the
number of buckets is bounded. Off (rate 0) by default; requests without a key (keys not enforced) are not limited.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from service.api.errors import ApiError


class TokenBucket:
    """`rate` tokens per second up to `burst`; a request takes one token."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> float:
        """0 when a token was taken; else the seconds until one will be there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets by key id. `check(key_id)` raises ApiError(429) with Retry-After when over the limit."""

    def __init__(self, requests_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = requests_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()  # dependencies run on the event loop, but keep it safe for threads too

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, key_id: str) -> None:
        if not self.enabled:
            return
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = TokenBucket(self.rate, self.burst, now)
            wait_s = bucket.take(now)
        if wait_s > 0:
            raise ApiError(429, f"API key {key_id} is over its rate limit of {self.rate:g} requests/s "
                           f"(burst {self.burst}); retry in {wait_s:.1f} s", slug="rate-limited",
                           headers={"Retry-After": str(max(1, math.ceil(wait_s)))})
