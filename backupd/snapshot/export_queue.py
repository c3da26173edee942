"""Export downloads of the workspaces of one source, served oldest workspace first.

Workspaces snapshotted together share one queue: the workspace that started first gets all
the calls it can use, so workspaces finish one after another and their commits spread out
over the run, instead of all progressing at the same pace and finishing (and committing)
together at its end. A later workspace's batches fill any gap the first one leaves.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

_Task = tuple[Future[Any], Callable[[], Any]]
_LAST = 1 << 62  # the priority of the stop markers: after every real task


class ExportQueue:
    """``workers`` threads running submitted calls, lowest priority number first, then in
    the order they were submitted. Closing runs what is queued, then stops the threads."""

    def __init__(self, workers: int, *, name: str = "export") -> None:
        self._tasks: queue.PriorityQueue[tuple[int, int, _Task | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{number}", daemon=True)
            for number in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def lane(self, priority: int) -> Lane:
        return Lane(self, priority)

    def submit(self, priority: int, call: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._tasks.put((priority, next(self._order), (future, call)))
        return future

    def close(self) -> None:
        for _ in self._threads:
            self._tasks.put((_LAST, next(self._order), None))
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> ExportQueue:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _work(self) -> None:
        while (task := self._tasks.get()[2]) is not None:
            self._run(*task)
            # Not kept while waiting for the next: a call holds its workspace's staged tree.
            del task

    @staticmethod
    def _run(future: Future[Any], call: Callable[[], Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return  # cancelled while it waited
        try:
            result = call()
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits on it
            future.set_exception(error)
        else:
            future.set_result(result)


@dataclass(frozen=True)
class Lane:
    """One workspace's place in an :class:`ExportQueue`."""

    queue: ExportQueue
    priority: int

    def submit(self, call: Callable[[], T]) -> Future[T]:
        return self.queue.submit(self.priority, call)
