"""A token bucket per source: ``burst`` requests at once, refilled at ``per_second``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from aiops.gateway.config import RateLimit


class TokenBucket:
    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._at = clock()

    def take(self) -> float:
        """0 when the request may pass; else the seconds until it would."""
        now = self._clock()
        self._tokens = min(float(self.limit.burst), self._tokens + (now - self._at) * self.limit.per_second)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.limit.per_second


class RateLimiter:
    """The buckets of all sources; a source whose limit changed (a reload) starts a fresh bucket."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, source: str, limit: RateLimit) -> int:
        """0 to pass, else the whole seconds to put in ``Retry-After``."""
        bucket = self._buckets.get(source)
        if bucket is None or bucket.limit != limit:
            bucket = self._buckets[source] = TokenBucket(limit, self._clock)
        wait = bucket.take()
        return 0 if wait == 0 else max(1, math.ceil(wait))
