"""Per-API rate budgets, their adaptation to 429s (AIMD) and their calls in flight, on a clock
of the test's own: nothing here depends on how fast the machine is."""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
from collections.abc import Iterable

import pytest

from backupd.dataarts.budget import (
    CALL_RANK,
    DOCUMENTED_RATES,
    EXPORT,
    JOB_DETAIL,
    JOBS_LIST,
    MANAGEMENT,
    RESOURCES_LIST,
    RESTORE,
    SCRIPTS_LIST,
    Budget,
    budget_of,
    budget_rates,
    ranked,
)
from backupd.dataarts.client import ClientSettings, in_order
from backupd.dataarts.retry import AdaptiveRate, RateLimiter
from tests.helpers import until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def busiest_second(starts: Iterable[float]) -> int:
    """The most calls started in any window of one second (the service's count)."""
    ordered = sorted(starts)
    return max(
        (sum(1 for t in ordered[i:] if t < start + 1.0) for i, start in enumerate(ordered)),
        default=0,
    )


def run_budgets(budgets: dict[str, Budget], clock: Clock, seconds: float) -> dict[str, list[float]]:
    """Every budget starts calls as fast as it lets them, side by side, for ``seconds``."""
    starts: dict[str, list[float]] = {name: [] for name in budgets}
    end = clock.now + seconds
    while clock.now < end:
        waits = []
        for name, budget in budgets.items():
            wait = budget.try_start()
            if wait <= 0:
                starts[name].append(clock.now)
            else:
                waits.append(wait)
        if len(waits) == len(budgets):
            clock.sleep(min(waits))
    return starts


# --- one budget per API --------------------------------------------------------------------


def test_the_documented_limits_are_the_defaults() -> None:
    assert dict(DOCUMENTED_RATES) == {
        JOBS_LIST: 30,
        SCRIPTS_LIST: 30,
        RESOURCES_LIST: 10,
        EXPORT: 10,
        JOB_DETAIL: 10,
        RESTORE: 10,
        MANAGEMENT: 10,
    }
    assert ClientSettings(endpoint="https://x", project_id="p").budget_rates() == dict(
        DOCUMENTED_RATES
    )


def test_no_second_holds_more_calls_of_an_api_than_its_rate_and_apis_do_not_share() -> None:
    clock = Clock()
    rates = {JOBS_LIST: 30.0, SCRIPTS_LIST: 30.0, RESOURCES_LIST: 10.0, EXPORT: 10.0}
    budgets = {
        name: Budget(name, rate, clock=clock, sleep=clock.sleep) for name, rate in rates.items()
    }
    starts = run_budgets(budgets, clock, 10.0)
    for name, rate in rates.items():
        assert busiest_second(starts[name]) <= rate, name
        # Each API gets its whole rate, whatever the others do: the calls of ten seconds.
        assert len(starts[name]) >= 9.5 * rate, name


def test_a_fractional_rate_counts_whole_calls_per_second() -> None:
    # 5.5/s is five calls in any second: a window shrunk to 5/5.5 s would let ten through
    # in one second of the service's count.
    clock = Clock()
    limiter = RateLimiter(5.5, margin=0.0, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(40):
        limiter.acquire()
        starts.append(clock.now)
    assert busiest_second(starts) == 5


def test_every_call_counts_against_the_budget_of_its_api() -> None:
    project = "/v1/0123456789abcdef0123456789abcdef"
    assert budget_of("GET", f"{project}/jobs") == JOBS_LIST
    assert budget_of("GET", f"{project}/jobs?jobType=BATCH&limit=100") == JOBS_LIST
    assert budget_of("GET", f"{project}/jobs/some%20job") == JOB_DETAIL
    assert budget_of("POST", f"{project}/jobs/batch-export") == EXPORT
    assert budget_of("GET", f"{project}/jobs/batch-export") == JOB_DETAIL  # a job's name
    assert budget_of("POST", f"{project}/jobs/check-file") == RESTORE
    assert budget_of("POST", f"{project}/jobs/import") == RESTORE
    assert budget_of("GET", f"{project}/system-tasks/42") == RESTORE
    assert budget_of("GET", f"{project}/scripts") == SCRIPTS_LIST
    assert budget_of("GET", f"{project}/resources") == RESOURCES_LIST
    assert budget_of("GET", f"{project}/instances") == MANAGEMENT
    assert budget_of("GET", f"{project}/workspaces/abc") == MANAGEMENT


def test_the_deprecated_keys_set_every_api_of_their_kind() -> None:
    rates = budget_rates({EXPORT: 5.0}, list_rate=12.0)
    assert rates == {
        **DOCUMENTED_RATES,
        EXPORT: 5.0,
        **dict.fromkeys((JOBS_LIST, SCRIPTS_LIST, RESOURCES_LIST, MANAGEMENT), 12.0),
    }
    settings = ClientSettings(endpoint="https://x", project_id="p", exports_per_second=2.0)
    assert {name: rate for name, rate in settings.budget_rates().items() if rate == 2.0} == {
        EXPORT: 2.0,
        JOB_DETAIL: 2.0,
        RESTORE: 2.0,
    }


# --- calls in flight from measured durations --------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "duration", "expected"),
    [
        (10.0, 0.55, 7),  # a 100-job export: six and a half in flight keep 10/s going
        (10.0, 2.0, 21),  # slow exports: more in flight, the same rate
        (10.0, 5.0, 32),  # ... up to the bound
        (30.0, 0.05, 3),  # listing pages: few
        (0.5, 0.05, 2),
    ],
)
def test_calls_in_flight_are_the_rate_times_a_calls_duration(
    rate: float, duration: float, expected: int
) -> None:
    clock = Clock()
    budget = Budget("export", rate, max_in_flight=32, clock=clock, sleep=clock.sleep)
    for _ in range(60):  # the running average settles on the durations measured
        started = clock.now
        clock.now += duration
        budget.finished(started)
    assert budget.duration == pytest.approx(duration, rel=1e-3)
    assert budget.in_flight_limit == expected


def test_calls_slower_than_the_average_raise_the_limit_before_one_ends() -> None:
    clock = Clock()
    budget = Budget("export", 10.0, clock=clock, sleep=clock.sleep)
    assert budget.in_flight_limit == 6  # 10/s x a first guess of 0.5 s, + 1
    with budget.slot():
        clock.sleep(2.0)  # no export has ended yet, but one has been under way for 2 s
        assert budget.in_flight_limit == 21
    assert budget.in_flight_limit == 6  # (the average moves when calls end)


def test_the_limit_holds_callers_back_until_a_call_ends() -> None:
    clock = Clock()
    budget = Budget("export", 1.0, max_in_flight=1, clock=clock, sleep=clock.sleep)
    with budget.slot():
        assert budget.in_flight_limit == 1
        # A second caller would wait here; the count tells it is full.
        assert budget.peak_in_flight == 1
    with budget.slot():
        pass
    assert budget.peak_in_flight == 1


# --- adapting to 429s (AIMD) ------------------------------------------------------------------


def start_calls(rate: AdaptiveRate, clock: Clock, count: int) -> list[float]:
    starts = []
    for _ in range(count):
        rate.acquire()
        starts.append(clock.now)
    return starts


def test_a_429_below_our_own_limit_halves_the_rate_then_it_climbs_back() -> None:
    clock = Clock()
    rate = AdaptiveRate(10.0, clock=clock, sleep=clock.sleep)
    started = start_calls(rate, clock, 6)
    clock.sleep(0.05)  # the answer comes a round trip later
    # Six calls in the second were too many: the service allows fewer than we do.
    assert rate.throttled(started[-1], retry_after=None)
    assert rate.rate == pytest.approx(3.0)  # half of what the service saw, not of ours
    clock.sleep(0.5)
    assert 4.0 < rate.rate < 5.1  # quickly back to one call/s under the count refused ...
    clock.sleep(5.0)
    assert 5.0 < rate.rate < 6.0  # ... then carefully (one call/s every 10 s) ...
    clock.sleep(60.0)
    assert rate.rate == 10.0  # ... and a minute without a 429: up to the configured ceiling
    clock.sleep(100.0)
    assert rate.rate == 10.0  # never above it


def test_429s_of_calls_already_under_way_count_as_one() -> None:
    clock = Clock()
    rate = AdaptiveRate(10.0, clock=clock, sleep=clock.sleep)
    started = start_calls(rate, clock, 6)
    clock.sleep(0.05)
    assert rate.throttled(started[-1], retry_after=None)
    clock.sleep(0.01)
    # Answers for calls sent before the decrease: the same episode, no second halving.
    assert not rate.throttled(started[-2], retry_after=None)
    assert not rate.throttled(started[0], retry_after=None)
    assert rate.rate == pytest.approx(3.0, abs=0.1)
    assert (rate.throttles, rate.decreases) == (3, 1)


def test_a_429_at_our_own_limit_widens_the_window_then_a_second_one_halves() -> None:
    # The service counted more calls in its second than we started in ours: they reached it
    # later or sooner than they left (a busy network, a busy gateway). Once is a warning.
    clock = Clock()
    rate = AdaptiveRate(10.0, margin=0.03, clock=clock, sleep=clock.sleep)
    started = start_calls(rate, clock, 10)
    clock.sleep(0.05)
    assert rate.throttled(started[-1], retry_after=None)
    assert rate.rate == pytest.approx(9.0)
    assert rate.margin == pytest.approx(0.06)
    clock.sleep(1.0)
    assert rate.rate == 10.0  # back at once
    started = start_calls(rate, clock, 20)
    clock.sleep(0.05)
    assert rate.throttled(started[-1], retry_after=None)  # again, within ten seconds
    assert rate.rate == pytest.approx(5.0)  # a limit after all: halved, then careful
    clock.sleep(5.0)
    assert rate.rate < 10.0


def test_a_retry_after_longer_than_a_second_holds_every_call_of_the_budget() -> None:
    clock = Clock()
    rate = AdaptiveRate(10.0, clock=clock, sleep=clock.sleep)
    started = start_calls(rate, clock, 3)
    throttled_at = clock.now
    rate.throttled(started[-1], retry_after=30.0)
    (next_start,) = start_calls(rate, clock, 1)
    assert next_start == pytest.approx(throttled_at + 30.0)
    # One second or less is the counting window: the refused call waits it out on its own,
    # the others go on at the lowered rate.
    clock = Clock()
    rate = AdaptiveRate(10.0, clock=clock, sleep=clock.sleep)
    started = start_calls(rate, clock, 10)
    rate.throttled(started[-1], retry_after=1.0)
    assert rate.try_acquire() < 1.0


def test_the_rate_stays_under_a_lower_limit_of_the_service() -> None:
    clock = Clock()
    rate = AdaptiveRate(10.0, clock=clock, sleep=clock.sleep)
    starts = start_calls(rate, clock, 6)
    rate.throttled(starts[-1], None)  # 6 calls in a second were too many (a limit of 5)
    clock.sleep(3.0)
    assert rate.rate == pytest.approx(5.0 + 2.6 / 10.0, abs=0.1)  # fast to 5, then careful
    starts = start_calls(rate, clock, 30)
    assert busiest_second(starts) == 5
    clock.sleep(61.0)  # a minute without refusals: the limit may be gone; climb again
    clock.sleep(10.0)
    assert rate.rate == 10.0


@dataclasses.dataclass
class Server:
    """A gateway that counts each API's calls per second and refuses those over ``limit``."""

    limit: float
    accepted: list[float] = dataclasses.field(default_factory=list)

    def answer(self, arrival: float) -> bool:
        recent = [t for t in self.accepted if arrival - t < 1.0]
        if len(recent) >= self.limit:
            return False
        self.accepted.append(arrival)
        return True


@pytest.mark.parametrize(("limit", "ceiling", "duration"), [(5, 10, 0.55), (15, 30, 0.05)])
def test_a_service_allowing_half_the_rate_sees_few_429s_and_most_of_its_limit(
    limit: int, ceiling: float, duration: float
) -> None:
    """Calls as fast as the budget lets them (several in flight), against a service that
    allows half the configured rate: the budget settles under its limit."""
    clock = Clock()
    rate = AdaptiveRate(ceiling, clock=clock, sleep=clock.sleep)
    server = Server(limit)
    calls, total, refused = 0, 20 * limit, 0
    # (time its answer comes, start, accepted?) of the calls in flight; 8 workers.
    in_flight: list[tuple[float, float, bool]] = []
    retry_at: list[float] = []
    started_at = clock.now
    while calls < total:
        free = 8 - len(in_flight)
        pending = [t for t in retry_at if t <= clock.now]
        if free > 0 and (pending or calls + len(in_flight) + len(retry_at) < total):
            wait = rate.try_acquire()
            if wait <= 0:
                if pending:
                    retry_at.remove(pending[0])
                ok = server.answer(clock.now)
                in_flight.append((clock.now + (duration if ok else 0.05), clock.now, ok))
                continue
        else:
            wait = math.inf
        later = [t for t in retry_at if t > clock.now]
        events = [end for end, _, _ in in_flight] + later + [clock.now + wait]
        clock.now = max(clock.now, min(events))
        for end, start, ok in [item for item in in_flight if item[0] <= clock.now]:
            in_flight.remove((end, start, ok))
            if ok:
                calls += 1
            else:
                refused += 1
                rate.throttled(start, 1.0)
                retry_at.append(clock.now + 1.0)  # the refused call waits Retry-After
    elapsed = clock.now - started_at
    assert busiest_second(server.accepted) <= limit
    assert refused / (calls + refused) < 0.05
    assert elapsed < 1.15 * (total / limit + duration)  # most of the service's limit used


def test_the_window_is_the_services_when_the_rate_changes() -> None:
    clock = Clock()
    rate = AdaptiveRate(10.0, clock=clock, sleep=clock.sleep)
    starts = start_calls(rate, clock, 25)
    rate.throttled(starts[-1], None)
    starts += start_calls(rate, clock, 25)
    # Whatever the rate did, a second never held more calls than the ceiling allows.
    assert busiest_second(starts) <= 10
    assert all(b >= a for a, b in itertools.pairwise(starts))


# --- who goes first: the calls of the lower rank ------------------------------------------------


def test_waiting_calls_start_by_rank_then_in_the_order_they_came() -> None:
    clock = Clock()
    budget = Budget("jobs_list", 1000.0, max_in_flight=1, clock=clock, sleep=clock.sleep)
    started: list[str] = []

    def call(rank: int, label: str) -> None:
        with ranked(rank), budget.line() as ticket, budget.slot(ticket):
            assert budget.try_start() <= 0
            budget.started(ticket)
            started.append(label)

    with budget.slot():  # the one call in flight: every other waits in line behind it
        threads = []
        for rank, label in ((3, "c"), (1, "a1"), (2, "b"), (1, "a2")):
            threads.append(threading.Thread(target=call, args=(rank, label)))
            threads[-1].start()
            until(lambda: budget.waiting == len(threads), "every caller in line")
    for thread in threads:
        thread.join(10)
    assert started == ["a1", "a2", "b", "c"]
    assert budget.waiting == 0


def test_the_first_in_line_keeps_its_place_while_it_waits_for_the_rate() -> None:
    clock = Clock()
    budget = Budget("jobs_list", 1.0, clock=clock, sleep=clock.sleep)
    assert budget.try_start() <= 0  # this second's one call is taken
    with ranked(0), budget.line() as first:
        with budget.slot(first):
            assert budget.try_start() > 0  # it would sleep for the rate now, slot given back
        later: list[bool] = []

        def second() -> None:
            with ranked(5), budget.line() as ticket, budget.slot(ticket):
                later.append(True)

        thread = threading.Thread(target=second)
        thread.start()
        until(lambda: budget.waiting == 2, "the second caller in line")
        assert not later  # a slot is free, but the first in line has not started yet
        clock.sleep(1.1)
        with budget.slot(first):
            assert budget.try_start() <= 0
            budget.started(first)
        thread.join(10)
        assert later == [True]


def test_the_pages_of_a_listing_keep_the_rank_of_the_caller() -> None:
    ranks: list[int] = []

    def fetch(offset: int) -> int:
        ranks.append(CALL_RANK.get())
        return offset

    with ranked(7):
        assert list(in_order(fetch, range(6), 3)) == list(range(6))
    assert ranks == [7] * 6
