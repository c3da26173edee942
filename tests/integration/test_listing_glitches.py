"""The one paging loop against a service that glitches (dlf-api.md §2.3, §12): a page that
disagrees with the listing is read again, a bad offset probe is never taken for a mode, and
a listing is returned only when its rows and its total agree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.dataarts.retry import RetryPolicy
from backupd.errors import ApiError
from backupd.secret import Secret
from backupd.simulator.gateway import DEFAULT_TOKEN
from backupd.simulator.server import Glitch, OffsetMode, Simulator
from tests.helpers import workspace_id

A, B = workspace_id(31), workspace_id(32)


def client_for(simulator: Simulator, page_size: int) -> DataArtsClient:
    settings = ClientSettings(
        endpoint=simulator.url,
        project_id=simulator.project_id,
        page_size=page_size,
        timeout=10,
        retry=RetryPolicy(attempts=2, base_delay=0.01),
        requests_per_second=1000,
        exports_per_second=1000,
    )
    return DataArtsClient(settings, StaticTokenAuth(Secret(DEFAULT_TOKEN)))


@pytest.fixture(params=["page", "record"])
def sim(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    """Two workspaces of 43 jobs (about a third REAL_TIME) and their scripts."""
    with Simulator(offset_mode=request.param) as simulator:
        for wid in (A, B):
            simulator.add_workspace(wid, wid[-2:])
            simulator.populate(wid, 43, realtime_fraction=0.35, scripts=30)
        yield simulator


def names(simulator: Simulator, wid: str, job_type: str | None = None) -> list[str]:
    types = simulator.content(wid)["job_types"]
    return sorted(n for n, t in types.items() if job_type in (None, t))


def job_calls(simulator: Simulator, wid: str = A, job_type: str = "BATCH") -> list[dict[str, str]]:
    """The queries of one workspace's job-list calls of one type, in order."""
    return [
        c.query
        for c in simulator.calls
        if c.path.endswith("/jobs") and c.query.get("jobType") == job_type and c.workspace == wid
    ]


@pytest.mark.parametrize("total", [0, 5, 7, 500])
def test_a_first_page_reporting_another_total_is_read_again(sim: Simulator, total: int) -> None:
    # Taken at its word, total 0 (or 5) ends the listing after its first page: every job of
    # the later pages would look deleted. Total 7 agrees with a full first page of 7 rows:
    # the next answer must then agree that nothing follows.
    sim.faults.glitches.append(Glitch("BATCH", "total", total=total, offset=0))
    with client_for(sim, 7) as client:
        listed = [job.name for job in client.list_jobs(A)]
    assert listed == names(sim, A)
    assert sim.faults.glitches == []
    first_pages = [q for q in job_calls(sim) if q["offset"] == "0"]
    assert len(first_pages) == 2  # the glitched one and its re-read, no second pass


@pytest.mark.parametrize("kind", ["empty", "total", "drop"])
def test_a_later_page_that_disagrees_is_read_again(sim: Simulator, kind: str) -> None:
    later = 3 if sim.offset_mode == "page" else 21
    sim.faults.glitches.append(Glitch("BATCH", kind, total=1, offset=later))
    with client_for(sim, 7) as client:
        listed = [job.name for job in client.list_jobs(A)]
    assert listed == names(sim, A)
    assert sim.faults.glitches == []
    offsets = [q["offset"] for q in job_calls(sim)]
    assert offsets.count(str(later)) == 2 and offsets.count("0") == 1  # one re-read, one pass


def test_a_last_page_missing_rows_is_read_again(sim: Simulator) -> None:
    batch = len(names(sim, A, "BATCH"))
    last = (batch - 1) // 7 if sim.offset_mode == "page" else (batch - 1) // 7 * 7
    sim.faults.glitches.append(Glitch("BATCH", "drop", rows=1, offset=last))
    with client_for(sim, 7) as client:
        assert [job.name for job in client.list_jobs(A)] == names(sim, A)


def test_scripts_and_resources_pages_are_checked_alike(sim: Simulator) -> None:
    for name in ("r1", "r2", "r3", "r4", "r5"):
        sim.add_resource(A, name)
    sim.faults.glitches += [
        Glitch("scripts", "total", total=16, offset=0),
        Glitch("scripts", "empty", offset=2 if sim.offset_mode == "page" else 8, skip=0),
        Glitch("resources", "drop", rows=2),
    ]
    with client_for(sim, 4) as client:
        scripts = [script["name"] for script in client.list_scripts(A)]
        resources = [resource["name"] for resource in client.list_resources(A)]
    assert scripts == sorted(sim.scripts(A))
    assert resources == sorted(sim.resources(A))


def test_a_page_that_keeps_disagreeing_fails_the_listing_after_a_second_pass(
    sim: Simulator,
) -> None:
    later = 2 if sim.offset_mode == "page" else 14
    sim.faults.glitches.append(Glitch("BATCH", "empty", offset=later, times=20))
    with client_for(sim, 7) as client, pytest.raises(ApiError) as caught:
        client.list_jobs(A)
    assert "refusing to work from a partial listing" in str(caught.value)
    assert "kept disagreeing" in str(caught.value)
    # Bounded: two passes, each reading the bad page three times at most.
    assert len(job_calls(sim)) <= 2 * (1 + 1 + 3 + 5)


@pytest.mark.parametrize("kind", ["empty", "total", "drop"])
def test_a_bad_offset_probe_is_asked_again_and_never_switches_other_lists(
    sim: Simulator, kind: str
) -> None:
    sim.faults.glitches.append(Glitch("BATCH", kind, offset=1, total=3, rows=2))
    with client_for(sim, 7) as client:
        first = [job.name for job in client.list_jobs(A)]
        # Another workspace, the other job type and the scripts all page correctly after it.
        second = [job.name for job in client.list_jobs(B)]
        scripts = [script["name"] for script in client.list_scripts(B)]
        modes = dict(client._offset_modes)
    assert first == names(sim, A) and second == names(sim, B)
    assert scripts == sorted(sim.scripts(B))
    assert sim.faults.glitches == []
    assert modes == {"jobs?7": sim.offset_mode, "scripts?7": sim.offset_mode}
    # The bad answer and a good one; the confirmed mode then serves every later listing.
    assert [q["offset"] for q in job_calls(sim)].count("1") == 2
    if sim.offset_mode == "record":  # B pages without probing (page numbers: offset 1 is a page)
        assert "1" not in [q["offset"] for q in job_calls(sim, B)]


def test_an_unconfirmed_probe_is_not_remembered() -> None:
    with Simulator(offset_mode="record") as simulator:
        simulator.add_workspace(A, "a")
        simulator.populate(A, 30, realtime_fraction=0.0, scripts=4)
        # Both passes lose both their probes: the listing fails, and no mode is kept.
        simulator.faults.glitches.append(Glitch("BATCH", offset=1, times=4))
        with client_for(simulator, 7) as client:
            with pytest.raises(ApiError, match="offset probe"):
                client.list_jobs(A)
            assert client._offset_modes == {}
            assert [job.name for job in client.list_jobs(A)] == sorted(simulator.jobs(A))
            assert client._offset_modes == {"jobs?7": "record"}


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_a_silently_clamped_page_size_is_taken_from_the_service(offset_mode: OffsetMode) -> None:
    # Asked for 1,000 rows, served 100 (dlf-api.md §12): the same short first page twice is
    # the service's page size, in either offset mode.
    clamped = Simulator(offset_mode=offset_mode, max_page_size=100, page_size_policy="clamp")
    with clamped as simulator:
        simulator.add_workspace(A, "a")
        simulator.populate(A, 230, realtime_fraction=0.0, scripts=2)
        with client_for(simulator, 1000) as client:
            assert [job.name for job in client.list_jobs(A)] == sorted(simulator.jobs(A))


def test_a_total_that_moves_while_paging_is_read_again_then_refused() -> None:
    with Simulator() as simulator:
        simulator.add_workspace(A, "a")
        simulator.populate(A, 40, realtime_fraction=0.0)
        simulator.faults.create_while_listing = True
        with client_for(simulator, 7) as client, pytest.raises(ApiError) as caught:
            client.list_jobs(A)
    assert "refusing to work from a partial listing" in str(caught.value)


def test_existence_checks_answer_from_the_show_calls(sim: Simulator) -> None:
    sim.add_resource(A, "lib")
    resource_id = sim.resources(A)["lib"]["id"]
    job = names(sim, A)[0]
    script = sorted(sim.scripts(A))[0]
    with client_for(sim, 7) as client:
        assert client.job_exists(A, job) and not client.job_exists(A, "gone job")
        assert client.script_exists(A, script) and not client.script_exists(A, "gone")
        assert client.resource_exists(A, resource_id)
        assert not client.resource_exists(A, "0" * 32)
        sim.faults.error_rate = 1.0
        with pytest.raises(ApiError):
            client.job_exists(A, job)  # not an answer: never taken for "gone"
