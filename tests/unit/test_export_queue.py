"""ExportQueue: the source's downloads, oldest workspace first."""

from __future__ import annotations

import threading
import time
import weakref

import pytest

from backupd.snapshot.export_queue import ExportQueue


def test_the_lowest_priority_number_goes_first_then_submission_order() -> None:
    started: list[str] = []
    gate = threading.Event()
    with ExportQueue(1) as exports:
        blocker = exports.submit(0, gate.wait)  # holds the only worker while we queue
        later = exports.lane(2)
        first = exports.lane(1)
        futures = [
            later.submit(lambda: started.append("ws2 batch 1")),
            later.submit(lambda: started.append("ws2 batch 2")),
            first.submit(lambda: started.append("ws1 batch 1")),
            first.submit(lambda: started.append("ws1 batch 2")),
        ]
        gate.set()
        for future in [blocker, *futures]:
            future.result(timeout=10)
    assert started == ["ws1 batch 1", "ws1 batch 2", "ws2 batch 1", "ws2 batch 2"]


def test_a_cancelled_call_never_runs_and_errors_reach_the_caller() -> None:
    ran: list[int] = []
    gate = threading.Event()
    with ExportQueue(1) as exports:
        exports.submit(0, gate.wait)
        skipped = exports.submit(0, lambda: ran.append(1))
        failing = exports.submit(0, lambda: 1 / 0)
        assert skipped.cancel()
        gate.set()
        with pytest.raises(ZeroDivisionError):
            failing.result(timeout=10)
    assert ran == []
    assert skipped.cancelled()


def test_closing_runs_what_is_queued_and_stops_the_threads() -> None:
    done: list[int] = []
    exports = ExportQueue(2, name="closing")
    for number in range(6):
        exports.submit(number % 3, lambda number=number: done.append(number))
    exports.close()
    assert sorted(done) == list(range(6))
    assert not [t for t in threading.enumerate() if t.name.startswith("closing_")]


def test_an_idle_worker_does_not_hold_on_to_the_last_call() -> None:
    # A download call holds its workspace's staged tree (the stored files of the folder):
    # kept by an idle worker, a finished workspace's would stay for the rest of the run.
    class Download:
        def __call__(self) -> str:
            return "archive"

    with ExportQueue(2) as exports:
        call = Download()
        finished = weakref.ref(call)
        assert exports.submit(0, call).result(timeout=10) == "archive"
        del call
        deadline = time.monotonic() + 5
        while finished() is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker may still be on its way back to the queue
        assert finished() is None


def test_threads_start_as_calls_need_them_not_all_at_once() -> None:
    # Each thread keeps freed memory of its own: the queue runs the calls in flight and one
    # spare, not its 28 possible threads taking turns.
    gate = threading.Event()
    with ExportQueue(28, running=lambda: 2, name="as_needed") as exports:
        futures = [exports.submit(0, gate.wait) for _ in range(10)]
        gate.set()
        for future in futures:
            future.result(timeout=10)
        started = [t for t in threading.enumerate() if t.name.startswith("as_needed_")]
        assert 2 <= len(started) <= 3
    assert not [t for t in threading.enumerate() if t.name.startswith("as_needed_")]
