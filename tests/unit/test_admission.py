"""When the next workspace starts (the pipeline's admission) and how many downloads run at
once (the export queue): both follow the rate budgets, not a fixed count."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import cast

from backupd.dataarts.budget import EXPORT, JOBS_LIST
from backupd.dataarts.client import DataArtsClient
from backupd.model import WorkspaceTarget
from backupd.snapshot.export_queue import ExportQueue
from backupd.snapshot.run import _Admission, _Turn
from tests.helpers import until

TARGET = WorkspaceTarget("prod", "0" * 32, "sales")


@dataclass
class FakeRate:
    rate: float


@dataclass
class FakeBudget:
    in_flight_limit: int
    rate: FakeRate = field(default_factory=lambda: FakeRate(10.0))
    duration: float = 0.5  # of one call


class FakeClient:
    def __init__(self, listers: int = 3, export_rate: float = 10.0) -> None:
        self.credentials_proven = threading.Event()
        self.budgets = {
            JOBS_LIST: FakeBudget(listers),
            EXPORT: FakeBudget(7, FakeRate(export_rate)),
        }

    def budget(self, name: str) -> FakeBudget:
        return self.budgets[name]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def admission(client: FakeClient, clock: Clock) -> _Admission:
    return _Admission(cast(DataArtsClient, client), clock)


def enter_in_background(gate: _Admission, index: int) -> tuple[threading.Event, list[_Turn]]:
    entered = threading.Event()
    turns: list[_Turn] = []

    def run() -> None:
        turns.append(gate.enter(index, threading.Event()))
        entered.set()

    threading.Thread(target=run, daemon=True).start()
    return entered, turns


def assert_waits(gate: _Admission, entered: threading.Event) -> None:
    """The workspace waits for its turn (or to approach), not let in: a state, not a time
    waited."""
    until(lambda: gate.waiting == 1, "the workspace waits for its turn")
    assert not entered.is_set()


def test_the_first_workspace_lists_alone_then_others_list_side_by_side() -> None:
    clock = Clock()
    gate = admission(FakeClient(listers=4), clock)  # four calls in flight: four listing
    first = gate.enter(0, threading.Event())
    second, _ = enter_in_background(gate, 1)
    assert_waits(gate, second)  # the first lists alone (it proves the credentials)
    clock.now = 0.5
    first.listed(TARGET, jobs=0, batches=0)  # nothing to export (a no-change snapshot)
    assert second.wait(5)
    others = [enter_in_background(gate, index)[0] for index in (2, 3, 4)]
    assert all(entered.wait(5) for entered in others)  # four listing at once
    sixth, _ = enter_in_background(gate, 5)
    assert_waits(gate, sixth)


def test_after_an_incremental_first_workspace_proved_the_credentials_the_next_one_goes() -> None:
    client = FakeClient(listers=4)
    gate = admission(client, Clock())
    gate.first_exports_all(False)  # it exports what changed: the listing is the bound
    gate.enter(0, threading.Event())
    second, _ = enter_in_background(gate, 1)
    assert_waits(gate, second)  # no answer yet: the credentials are not proven
    client.credentials_proven.set()
    assert second.wait(5)  # the first one is still listing, ahead in every budget's line


def test_a_first_workspace_that_exports_every_job_lists_alone_to_the_end() -> None:
    client = FakeClient(listers=4)
    client.credentials_proven.set()
    gate = admission(client, Clock())
    gate.first_exports_all(True)
    first = gate.enter(0, threading.Event())
    second, _ = enter_in_background(gate, 1)
    assert_waits(gate, second)
    first.listed(TARGET, jobs=10, batches=1)
    assert second.wait(5)


def test_workspaces_are_admitted_in_order() -> None:
    clock = Clock()
    gate = admission(FakeClient(listers=5), clock)
    gate.enter(0, threading.Event()).listed(TARGET, jobs=0, batches=0)
    later, _ = enter_in_background(gate, 2)
    assert_waits(gate, later)  # workspace 1 has not started yet
    gate.enter(1, threading.Event())
    assert later.wait(5)


def test_the_next_workspace_in_line_may_read_its_stored_state_before_its_turn() -> None:
    gate = admission(FakeClient(listers=3), Clock())
    gate.approach(0, threading.Event())  # the first: at once
    near = threading.Event()

    def approach_third() -> None:
        gate.approach(2, threading.Event())
        near.set()

    threading.Thread(target=approach_third, daemon=True).start()
    assert_waits(gate, near)  # two ahead of it: not yet (each reader holds its layout)
    gate.enter(0, threading.Event()).listed(TARGET, jobs=0, batches=0)
    assert_waits(gate, near)
    gate.enter(1, threading.Event())
    assert near.wait(5)  # next in line now, while 0 and 1 list


def test_a_stop_ends_the_wait_to_approach() -> None:
    gate = admission(FakeClient(listers=3), Clock())
    stop = threading.Event()
    stop.set()
    returned = threading.Event()

    def approach_far_behind() -> None:
        gate.approach(5, stop)
        returned.set()

    threading.Thread(target=approach_far_behind, daemon=True).start()
    assert returned.wait(5)  # five ahead of it, but the run is stopping


def test_a_workspace_starts_when_the_listed_batches_run_low() -> None:
    clock = Clock()
    gate = admission(FakeClient(listers=3, export_rate=10.0), clock)
    first = gate.enter(0, threading.Event())
    # A listing takes two seconds, an export half a second: the next workspace is wanted
    # 5.5 s (2 x 2 + 1 + 0.5) ahead.
    clock.now = 2.0
    first.listed(TARGET, jobs=8000, batches=80)
    second, _ = enter_in_background(gate, 1)
    assert_waits(gate, second)  # 80 batches at 10/s: 8 s of exports listed already
    for _ in range(25):
        gate.downloaded(0)  # (unpacking them is not export work)
    assert_waits(gate, second)  # 55 batches: 5.5 s, still enough ...
    gate.downloaded(0)
    assert second.wait(5)  # ... and one fewer is not


def test_a_failed_workspace_gives_back_what_it_held() -> None:
    clock = Clock()
    gate = admission(FakeClient(listers=2), clock)
    first = gate.enter(0, threading.Event())
    first.listed(TARGET, jobs=8000, batches=80)
    second, _ = enter_in_background(gate, 1)
    assert_waits(gate, second)
    first.done()  # its export failed: its batches are no longer coming
    assert second.wait(5)


def test_downloads_run_no_more_at_once_than_the_export_budget_allows() -> None:
    limit = [2]
    running = 0
    changed = threading.Condition()
    release = threading.Event()

    def download() -> None:
        nonlocal running
        with changed:
            running += 1
            changed.notify_all()
        release.wait(10)
        with changed:
            running -= 1

    with ExportQueue(8, running=lambda: limit[0]) as exports:
        futures = [exports.submit(0, download) for _ in range(6)]
        assert exports.lane(0).window == 4  # a workspace keeps twice as many batches ahead
        with changed:
            assert changed.wait_for(lambda: running == 2, timeout=10)
            assert not changed.wait_for(lambda: running > 2, timeout=0.3)
        limit[0] = 4  # the calls got slower: more in flight (seen within a quarter second)
        with changed:
            assert changed.wait_for(lambda: running == 4, timeout=10)
            assert not changed.wait_for(lambda: running > 4, timeout=0.3)
        release.set()
        for future in futures:
            future.result(timeout=10)


def test_archives_are_unpacked_oldest_workspace_first() -> None:
    from backupd.snapshot.export import _OldestFirst

    lock = _OldestFirst()
    order: list[int] = []
    ready = threading.Barrier(4)

    def unpack(priority: int) -> None:
        ready.wait(10)
        with lock.held(priority):
            order.append(priority)

    with lock.held(0):  # one archive is being unpacked while three workspaces queue up
        threads = [threading.Thread(target=unpack, args=(p,)) for p in (3, 1, 2)]
        for thread in threads:
            thread.start()
        ready.wait(10)
        for _ in range(1000):  # until all three wait for the lock (they do not say so)
            if len(lock._waiting) == 3:
                break
            threading.Event().wait(0.01)
        assert len(lock._waiting) == 3
    for thread in threads:
        thread.join(10)
    assert order == [1, 2, 3]
