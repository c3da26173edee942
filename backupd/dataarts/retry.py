"""Bounded retries with exponential backoff and jitter, and a client-side rate limit.

Our own loop rather than a retry library: it is a dozen lines, and it must honour the
server's Retry-After and re-run the whole request (re-signing it), which a decorator-based
library would hide behind callbacks.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from backupd.errors import ServerError, ThrottledError, TransportError
from backupd.logs import log

T = TypeVar("T")
logger = logging.getLogger(__name__)

RETRYABLE = (ThrottledError, ServerError, TransportError)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, error: Exception, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never synchronised


def call_with_retries(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[Exception], None] | None = None,
) -> T:
    """Run ``operation``; retry only errors that a later attempt can fix."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    attempt = 1
    while True:
        try:
            return operation()
        except RETRYABLE as error:
            if attempt >= policy.attempts:
                raise
            wait = policy.delay(attempt, error, rng)
            log(
                logger,
                "api.retry",
                level=logging.WARNING,
                operation=what,
                attempt=attempt,
                wait=round(wait, 2),
                error=str(error),
            )
            if on_retry is not None:
                on_retry(error)
            sleep(wait)
            attempt += 1


class RateLimiter:
    """At most ``rate`` calls in any window of one second, the way DataArts counts its limits.

    Unlike a token bucket that holds one token, a call that starts a little late (a thread
    waking up, the GIL) does not push every later call back: the limit is on the calls in
    the last second, so the long-run rate stays at ``rate``. ``margin`` lengthens the window
    by a few milliseconds, for the time a request takes to reach the gateway, which varies.
    Bursts are bounded by the callers' own concurrency limit.
    """

    def __init__(
        self,
        rate: float,
        *,
        margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        limit = max(1, math.floor(rate)) if rate > 0 else 0
        self._window = limit / rate + margin if rate > 0 else 0.0
        self._starts: deque[float] = deque(maxlen=limit or None)
        self._limit = limit
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while (wait := self.try_acquire()) > 0:
            self._sleep(wait)

    def try_acquire(self) -> float:
        """Start a call now and return 0, or return the seconds until one may start."""
        if self._limit == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            if len(self._starts) == self._limit:
                wait = self._starts[0] + self._window - now
                if wait > 0:
                    return wait
            self._starts.append(now)  # the deque drops the oldest start
            return 0.0
