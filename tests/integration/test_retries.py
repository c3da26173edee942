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
from pathlib import Path

import pytest

from backupd.dataarts.auth import StaticTokenAuth
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
    # Own backoff would wait ~1 ms: any longer pause comes from Retry-After.
    policy = RetryPolicy(attempts=10, base_delay=0.001, max_delay=0.001, max_retry_after=cap)
    with client_for(sim.url, retry=policy) as client:
        client.list_jobs(WID)  # two calls (BATCH, REAL_TIME): the second is throttled
    served = sim.served
    assert statuses(served)[:2] == [200, 429]
    assert statuses(served)[-1] == 200
    expected = min(announced, cap)
    for throttled, following in itertools.pairwise(served):
        if throttled.status == 429:
            gap = following.received - throttled.answered
            assert expected * 0.9 <= gap <= expected + 0.25


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


def test_rate_limits_hold_over_every_one_second_window(sim: Simulator, tmp_path: Path) -> None:
    names = sorted(sim.jobs(WID))
    export_rate, list_rate = 8.0, 16.0
    with client_for(
        sim.url,
        exports_per_second=export_rate,
        requests_per_second=list_rate,
        max_concurrent=4,
    ) as client:

        def export(worker: int) -> None:
            for index in range(5):
                client.export_jobs(WID, [names[worker * 5 + index]], tmp_path / f"{worker}-{index}")

        def list_scripts() -> None:
            for _ in range(10):
                client.list_scripts(WID)

        # Listers of their own, so the export limit does not pace the list calls.
        threads = [threading.Thread(target=export, args=(w,)) for w in range(4)]
        threads += [threading.Thread(target=list_scripts) for _ in range(4)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

    # No throttle on the simulator's side: it would count on its own stamps, which lag the
    # client's sends by more than the client's margin when the cores are busy. The stamps
    # are checked here instead, with that lag allowed for.
    export_times = [r.received for r in exports(sim)]
    list_times = [r.received for r in sim.served if r.path.endswith("/scripts")]
    assert len(export_times) == 20 and len(list_times) == 40
    # DataArts counts calls per second: no one-second window may hold more than the rate.
    # The stamps are taken by the simulator, which shares this process and its two cores with
    # the client: a thread hand-off can delay one stamp by tens of milliseconds, so the window
    # measured here is a little shorter than one second (a client without a limit puts all
    # its calls in a tenth of that).
    assert busiest_window(export_times, 1.0 - STAMP_JITTER) <= export_rate
    assert busiest_window(list_times, 1.0 - STAMP_JITTER) <= list_rate
    # ...and over the whole run the rate holds: 20 calls at 8 a second (40 at 16) span 1.5 s.
    assert max(export_times) - min(export_times) >= (20 - export_rate) / export_rate - STAMP_JITTER
    assert max(list_times) - min(list_times) >= (40 - list_rate) / list_rate - STAMP_JITTER
    assert elapsed >= (20 // export_rate) * 0.95  # it really did hold calls back


STAMP_JITTER = 0.05


def busiest_window(times: list[float], seconds: float) -> int:
    ordered = sorted(times)
    return max(
        sum(1 for t in ordered[i:] if t < start + seconds - 1e-3) for i, start in enumerate(ordered)
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
