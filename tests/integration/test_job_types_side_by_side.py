"""The job types of a workspace are listed side by side, over real HTTP to the simulator."""

from __future__ import annotations

import threading

from backupd.simulator.server import Simulator, _Call, _Response
from tests.helpers import workspace_id
from tests.integration.test_retries import client_for

WID = workspace_id(12)


class _HoldingLastBatchPages(Simulator):
    """Holds each BATCH page after the first two until a REAL_TIME page was asked: a client
    that lists the job types one after the other is held the whole wait (and fails)."""

    def __init__(self) -> None:
        super().__init__()
        self.real_time_asked = threading.Event()
        self.held: list[bool] = []  # per held page: whether REAL_TIME was asked meanwhile

    def _list_jobs(self, call: _Call) -> _Response:
        query = call.request.query
        if query.get("jobType") == "REAL_TIME":
            self.real_time_asked.set()
        elif int(query.get("offset") or 0) >= 2:
            self.held.append(self.real_time_asked.wait(30))  # a bound for a broken client only
        return super()._list_jobs(call)


def test_the_second_job_type_is_listed_before_the_first_one_ends() -> None:
    sim = _HoldingLastBatchPages()
    with sim:
        sim.add_workspace(WID, "ws")
        names = sim.populate(WID, 500, realtime_fraction=0.2)
        with client_for(sim.url) as client:
            jobs = client.list_jobs(WID)
    assert sorted(job.name for job in jobs) == sorted(names)
    assert {job.job_type for job in jobs} == {"BATCH", "REAL_TIME"}
    assert sim.held and all(sim.held)
