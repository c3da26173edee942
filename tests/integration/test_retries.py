"""Retries, throttling and the client-side limits, over real HTTP to the simulator.

Each test counts what the simulator actually received (``Simulator.served`` records every
request, injected faults and rejected credentials included).
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.budget import Budget
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.dataarts.retry import RetryPolicy
from backupd.errors import ApiError, AuthError, ServerError, TransportError
from backupd.secret import Secret
from backupd.simulator.server import DEFAULT_TOKEN, ServedRecord, Simulator
from tests.helpers import workspace_id

WID = workspace_id(11)
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02)


def client_for(
    url: str,
    *,
    retry: RetryPolicy = FAST_RETRY,
    token: str = DEFAULT_TOKEN,
    timeout: float = 10,
    requests_per_second: float = 1000,
    exports_per_second: float = 1000,
    max_concurrent: int = 2,
    project_id: str = "0123456789abcdef0123456789abcdef",
) -> DataArtsClient:
    settings = ClientSettings(
        endpoint=url,
        project_id=project_id,
        timeout=timeout,
        retry=retry,
        requests_per_second=requests_per_second,
        exports_per_second=exports_per_second,
        max_concurrent=max_concurrent,
    )
    return DataArtsClient(settings, StaticTokenAuth(Secret(token)))


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    simulator.add_workspace(WID, "ws")
    simulator.populate(WID, 30)
    return simulator


def statuses(records: list[ServedRecord]) -> list[int]:
    return [record.status for record in records]


def exports(sim: Simulator) -> list[ServedRecord]:
    return [r for r in sim.served if r.path.endswith("/batch-export")]


# --- what is retried ---------------------------------------------------------------------------


def test_server_errors_are_retried_a_bounded_number_of_times(sim: Simulator) -> None:
    sim.faults.error_rate = 1.0
    with client_for(sim.url) as client, pytest.raises(ServerError):
        client.list_jobs(WID)
    assert len(sim.served) == FAST_RETRY.attempts
    assert all(status in (500, 503) for status in statuses(sim.served))
    assert client.retries == FAST_RETRY.attempts - 1


def test_intermittent_server_errors_are_survived(sim: Simulator) -> None:
    sim.faults.error_rate = 0.5  # the simulator's fault dice are seeded: same run every time
    with client_for(sim.url, retry=RetryPolicy(attempts=10, base_delay=0.001)) as client:
        for _ in range(3):
            jobs = client.list_jobs(WID)
            assert [job.name for job in jobs] == sorted(sim.jobs(WID))
    assert {500, 503} & set(statuses(sim.served))
    assert client.retries == sum(status >= 500 for status in statuses(sim.served))


@pytest.mark.parametrize(("announced", "cap"), [(0.4, 10.0), (5.0, 0.3)])
def test_throttling_waits_as_long_as_retry_after_says_up_to_a_cap(
    sim: Simulator, announced: float, cap: float
) -> None:
    sim.faults.throttle_rps = 1
    sim.faults.retry_after = announced
    # Own backoff would wait ~1 ms: the wait asked for after the 429 comes from Retry-After.
    policy = RetryPolicy(attempts=10, base_delay=0.001, max_delay=0.001, max_retry_after=cap)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the waits asked for, not the time they took
        waits.append(seconds)
        time.sleep(seconds)

    settings = ClientSettings(endpoint=sim.url, project_id=sim.project_id, retry=policy)
    with DataArtsClient(settings, StaticTokenAuth(Secret(DEFAULT_TOKEN)), sleep=sleep) as client:
        client.list_jobs(WID)  # two calls (BATCH, REAL_TIME): the second is throttled
    served = sim.served
    assert statuses(served)[:2] == [200, 429]
    assert statuses(served)[-1] == 200
    expected = min(announced, cap)
    assert waits[0] == expected  # the retry's wait: Retry-After, capped
    # Then the budget, halved, waits out the second its two calls were counted in: the
    # retry never comes sooner than Retry-After.
    for throttled, following in itertools.pairwise(served):
        if throttled.status == 429:
            assert following.received - throttled.answered >= expected * 0.9


def test_connection_failures_are_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with client_for(f"http://127.0.0.1:{port}") as client, pytest.raises(TransportError) as caught:
        client.list_jobs(WID)
    assert str(caught.value) == (
        f"list jobs: cannot connect to http://127.0.0.1:{port}: connection refused"
    )
    assert client.retries == FAST_RETRY.attempts - 1


def test_read_timeouts_are_retried_then_reported(sim: Simulator) -> None:
    sim.faults.latency = 0.6
    policy = RetryPolicy(attempts=2, base_delay=0.01)
    with client_for(sim.url, retry=policy, timeout=0.2) as client:
        with pytest.raises(TransportError, match="timed out"):
            client.list_scripts(WID)
        assert client.retries == 1
        sim.faults.latency = 0.0
        assert len(client.list_scripts(WID)) == len(sim.scripts(WID))


def test_a_cut_short_export_is_detected_and_downloaded_again(
    sim: Simulator, tmp_path: Path
) -> None:
    names = sorted(sim.jobs(WID))[:10]
    sim.faults.truncate_rate = 1.0
    with client_for(sim.url) as client:
        with pytest.raises(TransportError, match=r"connection to .* broken: peer closed"):
            client.export_jobs(WID, names, tmp_path / "jobs.zip")
        assert len(exports(sim)) == FAST_RETRY.attempts

        sim.clear_calls()
        sim.faults.truncate_rate = 0.5
        client.export_jobs(WID, names, tmp_path / "jobs.zip")
    with zipfile.ZipFile(tmp_path / "jobs.zip") as archive:
        assert archive.testzip() is None
        assert {i.filename: archive.read(i) for i in archive.infolist()} == sim.export_files(
            WID, names
        )


def test_requests_that_cannot_succeed_are_sent_once(sim: Simulator, tmp_path: Path) -> None:
    with client_for(sim.url) as client, pytest.raises(ApiError) as missing:
        client.export_jobs(WID, ["no_such_job"], tmp_path / "x.zip")
    assert (missing.value.status, missing.value.code) == (400, "DLF.0100")
    assert len(sim.served) == 1

    sim.clear_calls()
    with client_for(sim.url, token="wrong") as client, pytest.raises(AuthError) as denied:
        client.list_jobs(WID)
    assert denied.value.status == 401
    assert len(sim.served) == 1

    sim.clear_calls()
    with client_for(sim.url, project_id="f" * 32) as client, pytest.raises(ApiError) as lost:
        client.list_jobs(WID)
    assert (lost.value.status, lost.value.code) == (404, "APIGW.0101")
    assert len(sim.served) == 1
    assert client.retries == 0


# --- client-side limits ------------------------------------------------------------------------


class SharedClock:
    """A clock of the test's own for the client's pacing: ``sleep`` moves it on at once.
    Threads sleeping side by side each move it, so it runs ahead of what they waited, never
    behind: the service's count of calls per second can only look lower than it was."""

    def __init__(self) -> None:
        self.now = 5000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)


def test_each_api_is_paced_by_a_budget_of_its_own(sim: Simulator, tmp_path: Path) -> None:
    """The real client over HTTP, its pacing on the test's clock: the calls each budget
    started, counted per second of that clock, and the calls the service saw per API."""
    clock = SharedClock()
    rates = {"jobs_list": 3.0, "scripts_list": 2.0, "export": 1.0}
    settings = ClientSettings(
        endpoint=sim.url, project_id=sim.project_id, retry=FAST_RETRY, page_size=5, rates=rates
    )
    auth = StaticTokenAuth(Secret(DEFAULT_TOKEN))
    names = sorted(sim.jobs(WID))
    with DataArtsClient(settings, auth, clock=clock, sleep=clock.sleep) as client:
        starts: dict[str, list[float]] = {name: [] for name in rates}
        for name in rates:
            budget = client.budget(name)

            def recorded(budget: Budget = budget, name: str = name) -> float:
                wait = Budget.try_start(budget)
                if wait <= 0:
                    starts[name].append(clock())
                return wait

            budget.try_start = recorded  # type: ignore[method-assign]
        client.list_jobs(WID)
        jobs_listed = clock()
        client.list_scripts(WID)
        for index in range(4):
            client.export_jobs(WID, [names[index]], tmp_path / f"{index}.zip")

    served = Counter(record.api for record in sim.served if record.status == 200)
    for name, rate in rates.items():
        assert len(starts[name]) == served[name] > 1, name  # every call counted in its budget
        assert busiest_second(starts[name], 1.0) <= rate, name
    # The job listing used up its budget's second; the scripts' own budget started at once.
    assert starts["scripts_list"][0] == jobs_listed


def busiest_second(times: list[float], seconds: float) -> int:
    """The most calls started in any window of ``seconds`` (the service counts per second)."""
    ordered = sorted(times)
    return max(
        sum(1 for t in ordered[i:] if t < start + seconds) for i, start in enumerate(ordered)
    )


def test_concurrent_calls_are_capped_per_source(sim: Simulator, tmp_path: Path) -> None:
    names = sorted(sim.jobs(WID))
    sim.faults.export_latency = 0.15
    with client_for(sim.url, max_concurrent=2) as client:
        threads = [
            threading.Thread(
                target=client.export_jobs, args=(WID, [names[i]], tmp_path / f"{i}.zip")
            )
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    served = exports(sim)
    assert statuses(served) == [200] * 8
    assert peak_in_flight(served) == 2


def peak_in_flight(records: list[ServedRecord]) -> int:
    events = sorted(
        [(r.received, 1) for r in records] + [(r.answered, -1) for r in records],
        key=lambda event: (event[0], event[1]),
    )
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak
