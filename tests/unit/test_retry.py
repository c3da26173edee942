"""Which errors are retried (only those a later attempt can fix), and how long between tries."""

from __future__ import annotations

import itertools
import random

import pytest

from backupd.dataarts.retry import RateLimiter, RetryPolicy, call_with_retries
from backupd.errors import (
    ApiError,
    AuthError,
    CertificateError,
    ClockSkewError,
    CredentialsRejected,
    ServerError,
    ThrottledError,
    TransportError,
)


def _calls_until_given_up(error: Exception) -> int:
    calls: list[int] = []

    def operation() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        call_with_retries(
            operation, policy=RetryPolicy(attempts=4), what="test", sleep=lambda _: None
        )
    return len(calls)


@pytest.mark.parametrize(
    "error",
    [
        AuthError("forbidden", status=403),
        CredentialsRejected("bad signature", status=401),
        ClockSkewError("signature expired", status=401),
        CertificateError("not trusted"),
        ApiError("bad request", status=400),
    ],
    ids=lambda e: type(e).__name__,
)
def test_credential_clock_and_certificate_errors_are_not_retried(error: Exception) -> None:
    assert _calls_until_given_up(error) == 1


@pytest.mark.parametrize(
    "error",
    [ThrottledError("slow down", status=429), ServerError("oops", status=503), TransportError("x")],
    ids=lambda e: type(e).__name__,
)
def test_transient_errors_are_retried(error: Exception) -> None:
    assert _calls_until_given_up(error) == 4


def test_backoff_doubles_with_jitter_and_stops_at_the_cap() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    error = ServerError("boom")
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        delays = {policy.delay(attempt, error, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 40  # jittered: clients do not retry in lockstep


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_retry_after=10.0)
    rng = random.Random(0)
    assert policy.delay(1, ThrottledError("slow down", retry_after=3.0), rng) == 3.0
    assert policy.delay(1, ThrottledError("slow down", retry_after=600.0), rng) == 10.0
    assert 0.25 <= policy.delay(1, ThrottledError("slow down"), rng) <= 0.5


def test_success_after_failures_returns_the_value() -> None:
    outcomes: list[Exception | str] = [ServerError("a"), TransportError("b"), "done"]

    def operation() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    retried: list[Exception] = []
    result = call_with_retries(
        operation,
        policy=RetryPolicy(attempts=3, base_delay=0.01),
        what="x",
        sleep=lambda _: None,
        on_retry=retried.append,
    )
    assert result == "done" and len(retried) == 2


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _starts(
    limiter: RateLimiter, clock: _Clock, count: int, late: float = 0.0, late_at: int = 3
) -> list[float]:
    starts = []
    for index in range(count):
        limiter.acquire()
        starts.append(clock.now)
        if index == late_at:
            clock.now += late  # this caller was slow to make its next request
    return starts


def test_rate_limit_never_admits_more_than_rate_calls_in_any_second() -> None:
    clock = _Clock()
    limiter = RateLimiter(10, margin=0.0, clock=clock, sleep=clock.sleep)
    starts = _starts(limiter, clock, 45)
    for index, start in enumerate(starts):
        assert sum(1 for t in starts[index:] if t < start + 1.0) <= 10
    assert starts[-1] - starts[0] == pytest.approx(4.0)  # and no slower than that


def test_a_late_call_does_not_push_the_later_ones_back() -> None:
    clock = _Clock()
    limiter = RateLimiter(10, margin=0.0, clock=clock, sleep=clock.sleep)
    on_time = _starts(limiter, clock, 41)
    clock = _Clock()
    limiter = RateLimiter(10, margin=0.0, clock=clock, sleep=clock.sleep)
    late = _starts(limiter, clock, 41, late=0.05)
    assert late[-1] == pytest.approx(on_time[-1])


def test_paced_calls_are_spread_over_the_window_and_a_late_one_pushes_none_back() -> None:
    # 30/s paced: three at once, then one every 1/30 s (not 30 at once), never more in a
    # second.
    clock = _Clock()
    limiter = RateLimiter(30, margin=0.0, paced=True, clock=clock, sleep=clock.sleep)
    on_time = _starts(limiter, clock, 91)
    assert on_time[:4] == pytest.approx([100.0, 100.0, 100.0, 100.0 + 1 / 30])
    for index, start in enumerate(on_time):
        assert sum(1 for t in on_time[index:] if t < start + 0.1) <= 6
        assert sum(1 for t in on_time[index:] if t < start + 1.0) <= 30
    assert on_time[-1] - on_time[0] == pytest.approx(3.0)
    # A call late (a thread waiting for the GIL) delays no other: pacing by "three in a
    # tenth of a window" did, each late start pushing back every start after it.
    clock = _Clock()
    limiter = RateLimiter(30, margin=0.0, paced=True, clock=clock, sleep=clock.sleep)
    late = _starts(limiter, clock, 91, late=0.12, late_at=2)
    assert late[-1] == pytest.approx(on_time[-1])
    for index, start in enumerate(late):
        assert sum(1 for t in late[index:] if t < start + 1.0) <= 30


def test_a_fractional_rate_spaces_single_calls() -> None:
    clock = _Clock()
    limiter = RateLimiter(0.5, margin=0.01, clock=clock, sleep=clock.sleep)
    starts = _starts(limiter, clock, 3)
    assert [round(b - a, 3) for a, b in itertools.pairwise(starts)] == [2.01, 2.01]
