"""Value types the pipeline, the service and the commands share, and the observer protocol.

Observers: the snapshot code calls their hooks and knows nothing about who listens: the
progress display, the status file and alerts (service/monitor.py) and Prometheus
(service/metrics.py) each implement the ones they need. Every method is a no-op here, and a
listener must not raise: a broken display or metric must never fail a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backupd.errors import (
    BackupdError,
)


@dataclass(frozen=True)
class WorkspaceTarget:
    """Which workspace to snapshot and where its folder lives in the repository."""

    source: str
    workspace_id: str
    folder: str

    @property
    def label(self) -> str:
        return f"{self.source}/{self.folder}"


@dataclass(frozen=True)
class JobCounts:
    """Jobs a snapshot added, changed, removed and renamed."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    renamed: int = 0  # neither added nor removed: the job kept its id under a new name


# A problem that is a warning: an optional part of the API (resources) is not available,
# so that part was not backed up; nothing that was backed up before is lost.
WARNING_PREFIX = "warning: "


def is_warning(problem: str) -> bool:
    return problem.startswith(WARNING_PREFIX)


@dataclass(frozen=True)
class SnapshotResult:
    """How one workspace snapshot went.

    ``gone``: a discovered workspace that DataArts no longer lists; it was not snapshotted
    and its folder was kept (``ok`` stays True: nothing failed, but someone should look).
    ``interrupted``: a stop (SIGTERM, SIGINT) cut the snapshot short before it touched the
    repository; not a failure (``ok`` is False: nothing was recorded), the next run does it.
    ``problems``: what a successful snapshot could not record — an item it could not export,
    decode or store (its previous version stays), an optional API that was absent, a
    deletion the service did not confirm. Everything else was committed; such a snapshot is
    *partial*. An absent optional API is a problem that starts with ``WARNING_PREFIX``
    (``is_warning``): status and check show it as a warning.
    """

    target: WorkspaceTarget
    ok: bool
    jobs: int = 0
    scripts: int = 0
    # Counts, not the changed paths: a run's results outlive its workspaces, and a first
    # snapshot of a large workspace changes tens of thousands of paths.
    changed_jobs: JobCounts = field(default_factory=JobCounts)
    commit: str | None = None
    error: str | None = None
    error_type: type[BackupdError] | None = None  # tells credential and clock problems apart
    duration: float = 0.0
    resources: int = 0
    gone: bool = False
    retries: int = 0  # API calls retried during this snapshot
    interrupted: bool = False
    problems: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return self.ok and bool(self.problems)


class SnapshotObserver:
    """Hooks of one or many workspace snapshots, in the order they happen."""

    def started(self, target: WorkspaceTarget) -> None:
        """The workspace's snapshot starts: its listing is next (before ``sized``)."""

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

    def started(self, target: WorkspaceTarget) -> None:
        for observer in self._observers:
            observer.started(target)

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
