"""Batch exports: chunks of at most 100 names, each archive verified and staged in order.

A job deleted between listing and export fails its whole batch (400); the batch is halved
until the job is isolated, and the job counts as deleted only once the service confirms it
(deletions.settle_rejected). An archive that stays broken (or holds a file no job of it
names) is halved the same way: a job whose own export cannot be read is reported
(``failed``), never recorded as deleted, and the rest of its batch is stored.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path

from backupd.dataarts.budget import EXPORT
from backupd.dataarts.source import JobSource
from backupd.errors import (
    ApiError,
    ArchiveError,
    describe_os_error,
)
from backupd.logs import log
from backupd.model import NO_OBSERVER, SnapshotObserver, WorkspaceTarget
from backupd.snapshot.export_queue import ExportQueue, Lane
from backupd.snapshot.ingest import JobPaths, UnattributedFiles, ingest_archive
from backupd.snapshot.options import SnapshotOptions
from backupd.store.staging import StagedTree

logger = logging.getLogger(__name__)


# Jobs whose own export may be unreadable before the fault counts as the service's (a proxy
# answering HTML, a size limit every job exceeds): the workspace then fails, as it should.
MAX_UNREADABLE_JOBS = 5

# What batch-export answers when a listed job no longer exists (dlf-api.md §3.1, §3.2).
VANISHED_JOB_CODES = frozenset({"DLF.0100", "DLF.3051"})


class _OldestFirst:
    """A lock that goes to the waiter with the lowest priority number (the workspace that
    started first), then in the order they came."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held = False
        self._waiting: list[tuple[int, int]] = []
        self._order = itertools.count()

    @contextlib.contextmanager
    def held(self, priority: int) -> Iterator[None]:
        ticket = (priority, next(self._order))
        with self._changed:
            heapq.heappush(self._waiting, ticket)
            self._changed.wait_for(lambda: not self._held and self._waiting[0] == ticket)
            heapq.heappop(self._waiting)
            self._held = True
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()


# One archive unpacked at a time in the process, the oldest workspace's first. Unpacking is
# Python work (inflating, parsing, canonical JSON) between many small file writes, each of
# which lets go of the interpreter lock: workspaces unpacking side by side only fought over
# that lock (millions of futex calls, as much system time as the work itself), and taking
# turns they all finished late together, their commits piling up at the end of the run.
UNPACKING = _OldestFirst()


def batches(names: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(names), size):
        yield names[start : start + size]


@dataclass(frozen=True)
class BatchExporter:
    """Exports named jobs into the staged tree, one verified archive at a time."""

    client: JobSource
    target: WorkspaceTarget
    options: SnapshotOptions
    staging: Path
    tree: StagedTree
    observer: SnapshotObserver = NO_OBSERVER
    lane: Lane | None = None  # the source's shared export queue; else a queue of its own
    paths: JobPaths | None = None  # where jobs are stored (None: under their own names)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    # What the export called each stored file of a job, where not jobs/<job>/<file>.
    exported_as: dict[str, dict[str, str]] = field(default_factory=dict)
    # Jobs whose export could not be read or stored: job → why.
    failed: dict[str, str] = field(default_factory=dict)

    def export_all(self, names: Sequence[str]) -> list[str]:
        """Export ``names`` in batches; return those the service rejected as not existing.

        As many batches as the export budget has calls in flight (``Lane.window``) wait in
        (or download from) the export queue while the archives that arrived are checked and
        staged in order, so unpacking overlaps with waiting on the network, and the budget
        is used whether an export takes 0.1 s or 3 s.
        """
        if self.lane is not None:
            return self._export_all(names, self.lane)
        budget = self.client.budget(EXPORT)
        workers = max(1, self.options.export_window)
        with ExportQueue(workers, running=lambda: budget.in_flight_limit) as own:
            return self._export_all(names, own.lane(0))

    def _export_all(self, names: Sequence[str], lane: Lane) -> list[str]:
        chunks = list(batches(names, self.options.batch_size))
        pending: deque[tuple[int, Sequence[str], Future[tuple[Path, int]]]] = deque()
        upcoming = iter(enumerate(chunks, start=1))

        def top_up() -> None:
            # The window follows the export budget: it grows while its calls take longer.
            while len(pending) < lane.window:
                item = next(upcoming, None)
                if item is None:
                    return
                number, chunk = item
                download = lane.submit(functools.partial(self.download, chunk))
                pending.append((number, chunk, download))

        rejected: list[str] = []
        try:
            top_up()
            while pending:
                number, chunk, download = pending.popleft()
                top_up()
                label = f"batch {number}/{len(chunks)}"
                try:
                    rejected += self.export_isolating(chunk, label, download)
                except _NotOneJobs as error:
                    raise _not_one_jobs(label, len(self.failed), str(error)) from error
                if len(chunk) > 1 and all(name in self.failed for name in chunk):
                    raise _not_one_jobs(label, len(chunk), self.failed[chunk[0]])
                size = download.result()[1] if download.exception() is None else 0
                self.observer.exported(self.target, number, len(chunks), len(chunk), size)
        finally:
            for _, _, download in pending:
                download.cancel()
            wait([download for _, _, download in pending])
            for _, _, download in pending:  # started before a failure: drop their archives
                # (A cancelled future is done too, and exception() would raise for it.)
                if not download.cancelled() and not download.exception():
                    download.result()[0].unlink(missing_ok=True)
        return rejected

    def download(self, names: Sequence[str]) -> tuple[Path, int]:
        """One batch-export call into a new zip file in staging: (path, size)."""
        zip_path = self.staging / f"batch-{next(self._numbers)}.zip"
        try:
            size = self.client.export_jobs(
                self.target.workspace_id,
                names,
                zip_path,
                export_depend=self.options.export_depend,
                max_bytes=self.options.max_archive_bytes,
            )
        except BaseException:
            zip_path.unlink(missing_ok=True)
            raise
        return zip_path, size

    def export_isolating(
        self,
        names: Sequence[str],
        label: str,
        download: Future[tuple[Path, int]] | None = None,
        *,
        attempts: int | None = None,
    ) -> list[str]:
        """Export ``names``; return those the service rejected as not existing.

        A job deleted between listing and export makes the whole batch fail (400); halving
        the batch isolates it in about 2·log2(batch) calls instead of one call per job. An
        archive that stays unreadable (its downloads were retried) is halved the same way,
        each piece tried once; a single job's is ``failed``.
        """
        try:
            self.export(names, label, download, attempts=attempts)
        except ArchiveError as error:
            if _local_failure(error):
                raise
            if len(self.failed) >= MAX_UNREADABLE_JOBS:
                raise _NotOneJobs(str(error)) from error
            if len(names) == 1:
                self.failed[names[0]] = str(error)
                log(
                    logger,
                    "snapshot.export_unreadable",
                    level=logging.WARNING,
                    workspace=self.target.label,
                    job=names[0],
                    error=str(error),
                )
                return []
            log(
                logger,
                "snapshot.batch_split",
                level=logging.INFO if isinstance(error, UnattributedFiles) else logging.WARNING,
                workspace=self.target.label,
                batch=label,
                jobs=len(names),
                error=str(error),
            )
            return self._halves(names, label, attempts=1)
        except ApiError as error:
            if not _rejects_names(error):
                raise
            if len(names) == 1:
                log(
                    logger,
                    "snapshot.export_rejected",
                    level=logging.WARNING,
                    workspace=self.target.label,
                    job=names[0],
                    error=str(error),
                )
                return [names[0]]
            return self._halves(names, label)
        return []

    def _halves(
        self, names: Sequence[str], label: str, *, attempts: int | None = None
    ) -> list[str]:
        middle = len(names) // 2
        first = self.export_isolating(names[:middle], f"{label} part 1", attempts=attempts)
        return first + self.export_isolating(names[middle:], f"{label} part 2", attempts=attempts)

    def export(
        self,
        names: Sequence[str],
        label: str,
        download: Future[tuple[Path, int]] | None = None,
        *,
        attempts: int | None = None,
    ) -> None:
        """Check and stage one archive (downloaded now, or by ``download``); a bad archive is
        fetched again (``attempts`` in all; default: options.archive_attempts)."""
        attempts = attempts or self.options.archive_attempts
        for attempt in range(1, attempts + 1):
            zip_path: Path | None = None
            try:
                if attempt == 1 and download is not None:
                    zip_path, size = download.result()
                else:
                    zip_path, size = self.download(names)
                with UNPACKING.held(self.lane.priority if self.lane is not None else 0):
                    stored = ingest_archive(
                        zip_path,
                        self.options.archive_limits,
                        self.tree,
                        names,
                        zip_path.name,
                        self.paths or _OWN_NAMES,
                    )
                # Its files are written while the next archive (maybe another workspace's)
                # is unpacked: the lock is not held for that.
                _flush(self.tree, zip_path.name)
            except ArchiveError as error:
                # Another download cannot tell whose a file is: only fewer jobs can.
                last = isinstance(error, UnattributedFiles)
                if last or attempt >= attempts or _local_failure(error):
                    raise type(error)(f"{label}: {error}") from error
                log(
                    logger,
                    "snapshot.archive_retry",
                    level=logging.WARNING,
                    workspace=self.target.label,
                    batch=label,
                    attempt=attempt,
                    error=str(error),
                )
                continue
            finally:
                if zip_path is not None:
                    zip_path.unlink(missing_ok=True)
            self.exported_as.update(stored)
            log(
                logger,
                "snapshot.batch",
                level=logging.DEBUG,
                workspace=self.target.label,
                batch=label,
                jobs=len(names),
                bytes=size,
            )
            return


class _NotOneJobs(ArchiveError):
    """More single jobs' exports are unreadable than one bad job explains."""


def _not_one_jobs(label: str, jobs: int, error: str) -> ArchiveError:
    return ArchiveError(
        f"{label}: the archive stays unreadable, and so do the exports of {jobs} of its jobs "
        f"alone: the fault is not one job's (last: {error})"
    )


class _OwnNames:
    """Every job stored under its own name (no mapping known)."""

    def component(self, job: str) -> str:
        return job

    def previous_files(self, job: str) -> dict[str, str]:
        return {}


_OWN_NAMES = _OwnNames()


def _flush(tree: StagedTree, archive_name: str) -> None:
    """Wait until the archive's files are written; our disk failing is an ArchiveError
    caused by the OSError (never downloaded again: see ``_local_failure``)."""
    try:
        tree.flush()
    except OSError as error:
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "disk full while unpacking" if full else "cannot stage"
        raise ArchiveError(
            f"{archive_name}: {what} into {tree.root}: {describe_os_error(error)}"
        ) from error


def _rejects_names(error: ApiError) -> bool:
    """A 400 that a missing job causes (not throttling, server or credential trouble)."""
    return type(error) is ApiError and error.status == 400 and error.code in VANISHED_JOB_CODES


def _local_failure(error: ArchiveError) -> bool:
    """Our disk failed (full, unwritable), not the archive: downloading again cannot help."""
    cause: BaseException | None = error.__cause__
    while isinstance(cause, ArchiveError):  # wrapped with the batch's label
        cause = cause.__cause__
    return isinstance(cause, OSError)
