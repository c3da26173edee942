"""The job budget: how many listed jobs a source's pipeline holds at once."""

from __future__ import annotations

import threading
import time

from backupd.runner import _JobBudget


def _admitted_within(budget: _JobBudget, seconds: float) -> bool:
    admitted = threading.Event()
    waiter = threading.Thread(target=lambda: (budget.admit(), admitted.set()), daemon=True)
    waiter.start()
    return admitted.wait(seconds)


def test_one_workspace_always_goes_however_large() -> None:
    budget = _JobBudget(1000)
    assert _admitted_within(budget, 1)
    budget.take(50_000)  # one huge workspace is in flight
    assert not _admitted_within(budget, 0.2)  # the next waits for it


def test_a_workspace_starts_again_once_the_jobs_in_flight_drop_below_the_limit() -> None:
    budget = _JobBudget(1000)
    budget.take(600)
    assert _admitted_within(budget, 1)  # 600 < 1000: a second may list
    budget.take(600)
    admitted = threading.Event()
    waiter = threading.Thread(target=lambda: (budget.admit(), admitted.set()), daemon=True)
    waiter.start()
    time.sleep(0.1)
    assert not admitted.is_set()
    budget.release(600)  # the first committed
    assert admitted.wait(5)
