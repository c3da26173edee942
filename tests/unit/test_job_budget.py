"""The job budget: how many listed jobs a source's pipeline holds at once."""

from __future__ import annotations

import threading

from backupd.snapshot.plan import Baseline
from backupd.snapshot.run import _JobBudget, stored_size
from backupd.snapshot.workspace import StoredState
from backupd.store.index import JobRecord
from backupd.store.layout import StoredLayout
from backupd.store.staging import StoredFiles
from tests.helpers import until


def _admit_in_background(budget: _JobBudget) -> tuple[threading.Event, list[int]]:
    admitted = threading.Event()
    held: list[int] = []
    waiter = threading.Thread(
        target=lambda: (held.append(budget.admit()), admitted.set()), daemon=True
    )
    waiter.start()
    return admitted, held


def assert_waits(budget: _JobBudget, admitted: threading.Event) -> None:
    """The workspace is waiting for room, not let in (a state, not a time waited)."""
    until(lambda: budget.waiting == 1, "the workspace waits for room")
    assert not admitted.is_set()


def test_one_workspace_always_goes_however_large() -> None:
    budget = _JobBudget(1000)
    held = budget.admit()  # nothing in flight: admitted at once
    assert held == 0  # nothing listed yet to estimate its size from
    budget.resize(held, 50_000, first=True)  # one huge workspace is in flight
    admitted, _ = _admit_in_background(budget)
    assert_waits(budget, admitted)  # the next waits for it
    budget.release(50_000)
    assert admitted.wait(5)


def test_workspaces_listing_at_once_are_admitted_by_their_expected_size() -> None:
    # Admitting while what is *held* is under the limit would let every waiting workspace in
    # before any of them is listed; each must count as the mean listed size meanwhile.
    budget = _JobBudget(1000)
    budget.resize(budget.admit(), 300, first=True)
    assert budget.admit() == 300
    assert budget.admit() == 300  # 900 held: three fit
    admitted, _ = _admit_in_background(budget)
    assert_waits(budget, admitted)  # a fourth would hold 1200
    budget.release(300)
    assert admitted.wait(5)


def test_a_listing_smaller_than_expected_lets_the_next_one_in() -> None:
    budget = _JobBudget(1000)
    budget.resize(budget.admit(), 600, first=True)
    admitted, held = _admit_in_background(budget)
    assert_waits(budget, admitted)  # 600 + 600 expected > 1000
    budget.release(600)  # the first committed
    assert admitted.wait(5)
    assert held == [600]
    budget.resize(600, 100, first=True)  # it listed fewer than the mean
    admitted, held = _admit_in_background(budget)
    assert admitted.wait(5)
    assert held == [350]  # the mean of 600 and 100


def test_a_size_known_before_the_listing_counts_once() -> None:
    # A workspace's stored size (read ahead) sizes it before its listing does; its listing
    # then corrects that size, and the mean is of workspaces, not of the times they were sized.
    budget = _JobBudget(1000)
    first = budget.admit()
    budget.resize(first, 800, first=True)  # its stored state: 800 jobs
    admitted, held = _admit_in_background(budget)
    assert_waits(budget, admitted)  # 800 + 800 expected > 1000
    budget.resize(800, 400, first=False)  # listed: 400 now
    assert admitted.wait(5)
    assert held == [400]  # the mean of one workspace, 400


def test_a_workspace_is_sized_by_its_stored_jobs_only_once_it_was_stored() -> None:
    assert stored_size(None) is None  # its stored state could not be read
    never = StoredState(Baseline(), StoredLayout())
    assert stored_size(never) is None  # a new folder: 0 would say nothing of its size
    record = JobRecord("BATCH", 1, "ann", None, {})
    files = StoredFiles([("jobs/a/a.job", "0" * 40), ("jobs/b/b.job", "1" * 40)])
    stored = StoredState(Baseline(files=files), StoredLayout(jobs={"a": record, "b": record}))
    assert stored_size(stored) == 2
    many = StoredFiles([(f"jobs/a/{n}.sql", "2" * 40) for n in range(20)])
    assert stored_size(StoredState(Baseline(files=many), stored.layout)) == 5  # 20 files / 4
