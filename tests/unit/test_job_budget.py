"""The job budget: how many listed jobs a source's pipeline holds at once."""

from __future__ import annotations

import threading
import time

from backupd.snapshot.run import _JobBudget


def _admit_in_background(budget: _JobBudget) -> tuple[threading.Event, list[int]]:
    admitted = threading.Event()
    held: list[int] = []
    waiter = threading.Thread(
        target=lambda: (held.append(budget.admit()), admitted.set()), daemon=True
    )
    waiter.start()
    return admitted, held


def test_one_workspace_always_goes_however_large() -> None:
    budget = _JobBudget(1000)
    held = budget.admit()  # nothing in flight: admitted at once
    assert held == 0  # nothing listed yet to estimate its size from
    budget.resize(held, 50_000)  # one huge workspace is in flight
    admitted, _ = _admit_in_background(budget)
    assert not admitted.wait(0.2)  # the next waits for it
    budget.release(50_000)
    assert admitted.wait(5)


def test_workspaces_listing_at_once_are_admitted_by_their_expected_size() -> None:
    # Admitting while what is *held* is under the limit would let every waiting workspace in
    # before any of them is listed; each must count as the mean listed size meanwhile.
    budget = _JobBudget(1000)
    budget.resize(budget.admit(), 300)
    assert budget.admit() == 300
    assert budget.admit() == 300  # 900 held: three fit
    admitted, _ = _admit_in_background(budget)
    assert not admitted.wait(0.2)  # a fourth would hold 1200
    budget.release(300)
    assert admitted.wait(5)


def test_a_listing_smaller_than_expected_lets_the_next_one_in() -> None:
    budget = _JobBudget(1000)
    budget.resize(budget.admit(), 600)
    admitted, held = _admit_in_background(budget)
    time.sleep(0.1)
    assert not admitted.is_set()  # 600 + 600 expected > 1000
    budget.release(600)  # the first committed
    assert admitted.wait(5)
    assert held == [600]
    budget.resize(600, 100)  # it listed fewer than the mean
    admitted, held = _admit_in_background(budget)
    assert admitted.wait(5)
    assert held == [350]  # the mean of 600 and 100
