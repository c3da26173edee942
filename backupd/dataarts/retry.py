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
_HISTORY = 10.0  # seconds of call starts a RateLimiter keeps beyond its window
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
    Bursts are bounded by the callers' own concurrency limit. The rate may change at any
    time (``rate = …``): the calls of the last window count against the new one.
    """

    def __init__(
        self,
        rate: float,
        *,
        margin: float = 0.02,
        paced: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._margin = margin
        self._paced = paced
        self._starts: deque[float] = deque()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = math.inf  # a full bucket, whatever its size
        self._refilled_at = clock()
        self.rate = rate

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        with self._lock:
            self._rate = rate
            # The service counts whole seconds: 5.4/s is five calls a second (a window of
            # 0.93 s would let through ten in 1.0 s); below 1/s, one call per 1/rate seconds.
            self._limit = max(1, math.floor(rate)) if rate > 0 else 0
            self._window = max(1.0, self._limit / rate) + self._margin if rate > 0 else 0.0
            # Paced: a bucket of ``burst`` starts refilled at the window's rate, so a second's
            # calls are spread over it rather than sent at once. A bucket, not "``burst``
            # calls in a tenth of a window": a start late by a few milliseconds (a thread
            # waiting for the GIL) then does not push back every start after it.
            self._burst = max(2, self._limit // 10) if self._paced else self._limit
            self._refill = self._limit / self._window if self._window > 0 else 0.0
            self._tokens = min(self._tokens, float(self._burst))

    @property
    def limit(self) -> int:
        """Calls allowed in one window (the whole calls a second of ``rate``)."""
        return self._limit

    @property
    def margin(self) -> float:
        return self._margin

    @margin.setter
    def margin(self, margin: float) -> None:
        self._margin = margin
        self.rate = self._rate  # the window again

    def acquire(self) -> None:
        while (wait := self.try_acquire()) > 0:
            self._sleep(wait)

    def try_acquire(self) -> float:
        """Start a call now and return 0, or return the seconds until one may start."""
        with self._lock:
            if self._limit == 0:
                return 0.0
            now = self._clock()
            starts = self._starts
            while starts and starts[0] <= now - self._window - _HISTORY:
                starts.popleft()  # kept a while for ``started_in_window``, then dropped
            if len(starts) >= self._limit:
                wait = starts[-self._limit] + self._window - now
                if wait > 0:
                    return wait
            if self._burst < self._limit:
                refilled = self._tokens + max(0.0, now - self._refilled_at) * self._refill
                self._tokens, self._refilled_at = min(float(self._burst), refilled), now
                if self._tokens < 1.0 - 1e-6:  # (a wait of 1e-17 s would never end)
                    return (1.0 - self._tokens) / self._refill
                self._tokens = max(0.0, self._tokens - 1.0)
            starts.append(now)
            return 0.0

    def started_in_window(self, end: float) -> int:
        """Calls started in the one-second window that ends at ``end`` (this clock), as
        the service counted them when the call started at ``end`` arrived."""
        with self._lock:
            return sum(1 for start in self._starts if end - 1.0 < start <= end)


class AdaptiveRate:
    """A :class:`RateLimiter` that slows down when the service throttles and speeds up again
    (AIMD: additive increase, multiplicative decrease), so a budget shared with other tools
    on the same AK is polite without being starved.

    A 429 tells how many calls the service counted too many: those this limiter started in
    the second before the refused one (its own included). Refused below our own limit, the
    service's limit is lower (or another tool takes part of it): the rate is multiplied by
    ``decrease`` and then climbs quickly (``increase`` calls/s every second) only to one
    call/s under the count refused, and above it by one call/s every ``probe`` seconds (the
    service counts whole calls a second), so it stays just under that limit instead of
    running into it again and again. Refused at our own limit, the service counted more in
    its second than we started in ours: calls reach it later or sooner than they left, so
    the window's ``margin`` grows (up to ``MAX_MARGIN``) and the rate steps down one call/s;
    a second such refusal within ``recheck`` seconds counts as a limit under ours. 429s of
    calls already under way when the rate went down count as the same one. ``memory``
    seconds without a 429 forget what they taught. A Retry-After longer than one counting
    window holds every call of the budget until it has passed (``hold``); a shorter one is
    honoured by the refused call alone (its retry).
    """

    MAX_MARGIN = 0.25
    MARGIN_STEP = 0.03

    def __init__(
        self,
        ceiling: float,
        *,
        decrease: float = 0.5,
        increase: float | None = None,
        probe: float = 10.0,
        recheck: float = 10.0,
        memory: float = 60.0,
        floor: float | None = None,
        hold: bool = True,
        paced: bool = True,
        margin: float = 0.06,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ceiling = ceiling
        self._decrease = decrease
        self._increase = max(ceiling / 2, 0.1) if increase is None else increase
        self._probe = probe
        self._recheck = recheck
        self._memory = memory
        self._floor = min(ceiling, 0.2) if floor is None else floor
        self._hold = hold
        self._margin = margin
        self._clock = clock
        self._sleep = sleep
        self._limiter = RateLimiter(ceiling, margin=margin, paced=paced, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self._rate = ceiling
        self._since = clock()  # when the rate was last set
        self._decreased_at = -math.inf
        self._at_limit_at = -math.inf  # the last refusal at our own limit
        self._knee: float | None = None  # above it the climb is careful: refused near it
        self._hold_until = -math.inf
        self.throttles = 0  # 429s seen
        self.decreases = 0  # of which lowered the rate

    @property
    def rate(self) -> float:
        """The rate now (calls per second)."""
        with self._lock:
            return self._current(self._clock())

    @property
    def margin(self) -> float:
        """Seconds the counting window is longer than one second now."""
        with self._lock:
            self._current(self._clock())
            return self._limiter.margin

    def _current(self, now: float) -> float:
        """The rate climbed from where it was set at ``_since`` to ``now``, remembered (lock
        held)."""
        if now - self._decreased_at > self._memory:
            self._knee = None  # long ago: climb all the way, and quickly
            if self._limiter.margin != self._margin:
                self._limiter.margin = self._margin
        if self._rate >= self.ceiling or now <= self._since:
            return self._rate
        elapsed = now - self._since
        rate = self._rate
        knee = math.inf if self._knee is None else self._knee
        if rate < knee:
            fast = min(elapsed, (knee - rate) / self._increase)
            rate += fast * self._increase
            elapsed -= fast
        if elapsed > 0:
            rate += elapsed / self._probe
        rate = min(rate, self.ceiling)
        self._rate, self._since = rate, now
        if abs(self._limiter.rate - rate) > 1e-9:
            self._limiter.rate = rate
        return rate

    def acquire(self) -> None:
        while (wait := self.try_acquire()) > 0:
            self._sleep(wait)

    def try_acquire(self) -> float:
        """Start a call now and return 0, or return the seconds until one may start."""
        with self._lock:
            now = self._clock()
            if now < self._hold_until:
                return self._hold_until - now
            self._current(now)
        return self._limiter.try_acquire()

    def throttled(self, started: float, retry_after: float | None = None) -> bool:
        """The service refused (429) a call started at ``started`` (this clock); returns
        whether that lowered the rate."""
        with self._lock:
            now = self._clock()
            self.throttles += 1
            if self._hold and retry_after is not None and retry_after > 1.0:
                self._hold_until = max(self._hold_until, now + retry_after)
            if started <= self._decreased_at:
                return False  # under way before the last decrease: the same episode
            self._current(now)
            # What the service saw: the calls of the second before the refused one, its own
            # included (the rate set may be higher than what was sent).
            sent = max(1, self._limiter.started_in_window(started))
            at_limit = sent >= self._limiter.limit - 1
            if at_limit and now - self._at_limit_at > self._recheck:
                self._at_limit_at = now
                margin = self._limiter.margin
                self._limiter.margin = min(self.MAX_MARGIN, margin + self.MARGIN_STEP)
                rate = max(self._floor, min(self._rate, sent - 1.0))
            else:
                self._knee = max(self._floor, sent - 1.0)
                rate = max(self._floor, sent * self._decrease)
            self._rate = rate
            self._since = self._decreased_at = now
            self._limiter.rate = rate
            self.decreases += 1
            return True
