"""The rate budgets of one source: one per API, as the service counts them (dlf-api.md §7.1).

DataArts limits each API per user on its own: listing jobs 30 calls/s, listing scripts 30/s,
listing resources 10/s, exporting 10/s, and so on. A budget holds one API's rate (adapted to
the 429s the service answers, see :class:`AdaptiveRate`) and how many of its calls may be
in flight: the rate times the duration of a call (Little's law), measured as calls end, so
the rate is used whether a call takes 50 ms or 3 s, and no more calls wait on the service
than the rate can start.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType

from backupd.dataarts.retry import AdaptiveRate

JOBS_LIST = "jobs_list"
SCRIPTS_LIST = "scripts_list"
RESOURCES_LIST = "resources_list"
EXPORT = "export"
JOB_DETAIL = "job_detail"
RESTORE = "restore"  # check-file, import, system-task query
MANAGEMENT = "management"  # instance and workspace lists (discovery)

# The documented per-user limits (dlf-api.md §7.1), calls per second.
DOCUMENTED_RATES: Mapping[str, float] = MappingProxyType(
    {
        JOBS_LIST: 30.0,
        SCRIPTS_LIST: 30.0,
        RESOURCES_LIST: 10.0,
        EXPORT: 10.0,
        JOB_DETAIL: 10.0,
        RESTORE: 10.0,
        MANAGEMENT: 10.0,
    }
)
# The budgets of listing calls and of export-class calls (what the deprecated
# requests_per_second and exports_per_second limited).
LISTING_BUDGETS = (JOBS_LIST, SCRIPTS_LIST, RESOURCES_LIST, MANAGEMENT)
EXPORT_BUDGETS = (EXPORT, JOB_DETAIL, RESTORE)

# The rank of the calls made in this context: of two calls waiting for one budget, the one
# of the lower rank starts first (ties in the order they came). A snapshot ranks each
# workspace's calls by its place in line, so the budget finishes one listing after another
# instead of all of them together, late, while the exports wait for the next one.
CALL_RANK: contextvars.ContextVar[int] = contextvars.ContextVar("call_rank", default=0)


@contextlib.contextmanager
def ranked(rank: int) -> Iterator[None]:
    """The calls made in this context (and in contexts copied from it) have ``rank``."""
    token = CALL_RANK.set(rank)
    try:
        yield
    finally:
        CALL_RANK.reset(token)


class Ticket:
    """A caller's place in a budget's line, from its first try to its start."""

    __slots__ = ("order", "rank", "waiting")

    def __init__(self, rank: int, order: int) -> None:
        self.rank = rank
        self.order = order
        self.waiting = True

    def __lt__(self, other: Ticket) -> bool:
        return (self.rank, self.order) < (other.rank, other.order)


# A call's duration before any was measured: 0.5 s lets a budget of 10/s start six at once.
FIRST_GUESS = 0.5
SMOOTHING = 0.2  # weight of the newest duration in the running average


class Budget:
    """One API's rate and calls in flight. Thread-safe."""

    def __init__(
        self,
        name: str,
        rate: float,
        *,
        max_in_flight: int = 32,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.rate = AdaptiveRate(rate, clock=clock, sleep=sleep)
        self.clock = clock
        self._max_in_flight = max(1, max_in_flight)
        self._duration = FIRST_GUESS
        self._in_flight = 0
        self._since: dict[int, float] = {}  # slot → when it was taken
        self._tokens = itertools.count()
        self._line: list[Ticket] = []  # heap: the callers that have not started yet
        self._changed = threading.Condition()
        self.calls = 0  # started
        self.peak_in_flight = 0

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    @property
    def duration(self) -> float:
        """The running average of a call's duration (seconds)."""
        with self._changed:
            return self._duration

    @property
    def waiting(self) -> int:
        """Callers in line that have not started their call yet."""
        with self._changed:
            return sum(1 for ticket in self._line if ticket.waiting)

    @property
    def in_flight_limit(self) -> int:
        """Calls that may be in flight: enough to start ``rate`` calls a second when each
        takes the average duration, one more for the spread; 1 to ``max_in_flight``."""
        with self._changed:
            return self._limit()

    def _limit(self) -> int:
        # A call under way for longer than the average says the calls got slower before
        # any of them ended: the first 2 s exports must not wait 2 s to be known.
        duration = self._duration
        if self._since:
            duration = max(duration, self.clock() - min(self._since.values()))
        wanted = math.ceil(self.rate.rate * duration) + 1
        return min(self._max_in_flight, max(1, wanted))

    @contextlib.contextmanager
    def line(self) -> Iterator[Ticket]:
        """A place in line, by the context's rank (``CALL_RANK``), held until ``started``
        (or the end of the block): only the first in line takes a slot and a start, also
        while it sleeps for the rate, so the calls of the lower rank go first."""
        with self._changed:
            ticket = Ticket(CALL_RANK.get(), next(self._tokens))
            heapq.heappush(self._line, ticket)
        try:
            yield ticket
        finally:
            self.started(ticket)

    def started(self, ticket: Ticket) -> None:
        """``ticket``'s call started: the next in line may go."""
        with self._changed:
            if ticket.waiting:
                ticket.waiting = False
                while self._line and not self._line[0].waiting:
                    heapq.heappop(self._line)
                self._changed.notify_all()

    @contextlib.contextmanager
    def slot(self, ticket: Ticket | None = None) -> Iterator[None]:
        """Hold one of the calls in flight (waits for one, and with ``ticket``, for being
        first in line)."""
        with self._changed:
            # The limit moves with the durations (which notify) and with the rate, which
            # climbs back after a 429 without telling: look again now and then.
            while self._in_flight >= self._limit() or (
                ticket is not None and self._line and self._line[0] is not ticket
            ):
                self._changed.wait(0.25)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            token = next(self._tokens)
            self._since[token] = self.clock()
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= 1
                del self._since[token]
                self._changed.notify_all()  # the first in line may be any of the waiters

    def try_start(self) -> float:
        """Start a call now (0) or say how many seconds until the rate allows one."""
        wait = self.rate.try_acquire()
        if wait <= 0:
            with self._changed:
                self.calls += 1
        return wait

    def finished(self, started: float) -> None:
        """A call started at ``started`` (this budget's clock) got its answer."""
        elapsed = max(0.0, self.clock() - started)
        with self._changed:
            self._duration += SMOOTHING * (elapsed - self._duration)
            self._changed.notify_all()

    def throttled(self, started: float, retry_after: float | None) -> None:
        """The service refused (429) a call started at ``started``."""
        self.rate.throttled(started, retry_after)


def budget_rates(
    rates: Mapping[str, float],
    *,
    list_rate: float | None = None,
    export_rate: float | None = None,
) -> dict[str, float]:
    """Each budget's rate: ``rates`` over the documented ones; ``list_rate`` for every
    listing budget and ``export_rate`` for every export-class budget when given (what the
    deprecated requests_per_second and exports_per_second set)."""
    chosen = {**DOCUMENTED_RATES, **rates}
    for names, rate in ((LISTING_BUDGETS, list_rate), (EXPORT_BUDGETS, export_rate)):
        if rate is not None:
            chosen.update(dict.fromkeys(names, rate))
    return chosen


def budget_of(method: str, path: str) -> str:
    """The budget a call counts against, from its method and path (``/v1/{project}/…``),
    as the service tells its APIs apart."""
    parts = [part for part in path.split("?", 1)[0].split("/") if part]
    rest = parts[2:]  # after v1/{project_id}
    if not rest:
        return JOBS_LIST
    head = rest[0]
    if head == "jobs":
        if len(rest) == 1:
            return JOBS_LIST
        if method == "POST" and rest[1] == "batch-export":
            return EXPORT
        if method == "POST" and rest[1] in ("check-file", "import"):
            return RESTORE
        return JOB_DETAIL
    if head == "scripts":
        return SCRIPTS_LIST
    if head == "resources":
        return RESOURCES_LIST
    if head == "system-tasks":
        return RESTORE
    if head in ("instances", "workspaces"):
        return MANAGEMENT
    return JOBS_LIST
