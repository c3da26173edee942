"""What a snapshot tells the world while it runs: the interface, and a fan-out.

The snapshot code calls these hooks and knows nothing about who listens: the progress bar
(progress.py), the status file and alerts (service/monitor.py) and Prometheus
(service/metrics.py) each implement the ones they need. Every method is a no-op here, and a
listener must not raise: a broken display or metric must never fail a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backupd.snapshot import SnapshotResult, WorkspaceTarget


class SnapshotObserver:
    """Hooks of one or many workspace snapshots, in the order they happen."""

    def sized(self, target: WorkspaceTarget, jobs: int) -> None:
        """The workspace's listing arrived: it holds ``jobs`` jobs (before ``listed``)."""

    def listed(self, target: WorkspaceTarget, jobs: int, batches: int) -> None:
        """The workspace is listed: ``jobs`` jobs will be exported in ``batches`` calls."""

    def exported(
        self, target: WorkspaceTarget, batch: int, batches: int, jobs: int, size: int
    ) -> None:
        """Export call number ``batch`` of ``batches`` returned ``jobs`` jobs in ``size`` bytes."""

    def finished(self, result: SnapshotResult) -> None:
        """The workspace's snapshot ended (committed, unchanged, failed or skipped)."""


class ApiObserver:
    """Hooks of the DataArts client: one per HTTP answer, one per retry."""

    def response(self, status: int) -> None:
        """An HTTP response arrived (every attempt, retries included)."""

    def retry(self, error: Exception) -> None:
        """A failed call is about to be tried again after ``error``."""


NO_OBSERVER = SnapshotObserver()


class Fanout(SnapshotObserver):
    """Passes every hook on to several observers, in order."""

    def __init__(self, observers: Sequence[SnapshotObserver]) -> None:
        self._observers = tuple(observers)

    def sized(self, target: WorkspaceTarget, jobs: int) -> None:
        for observer in self._observers:
            observer.sized(target, jobs)

    def listed(self, target: WorkspaceTarget, jobs: int, batches: int) -> None:
        for observer in self._observers:
            observer.listed(target, jobs, batches)

    def exported(
        self, target: WorkspaceTarget, batch: int, batches: int, jobs: int, size: int
    ) -> None:
        for observer in self._observers:
            observer.exported(target, batch, batches, jobs, size)

    def finished(self, result: SnapshotResult) -> None:
        for observer in self._observers:
            observer.finished(result)
