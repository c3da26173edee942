"""The snapshot driver: every chosen workspace of every source, then tag and push.

Each workspace is isolated: one failing never stops the others (borgmatic's rule) — except
when the service rejects the source's credentials, which would fail every workspace of that
source the same way; those are then reported once and not attempted. Sources with
``workspaces: all`` discover their workspaces first, at every run (discovery.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from backupd.config import (
    Config,
    SourceConfig,
)
from backupd.dataarts.budget import EXPORT, JOBS_LIST, ranked
from backupd.dataarts.source import JobSource
from backupd.errors import BackupdError, ClockSkewError, CredentialsRejected, RepoError
from backupd.logs import log
from backupd.model import (
    NO_OBSERVER,
    Fanout,
    SnapshotObserver,
    SnapshotResult,
    WorkspaceTarget,
)
from backupd.snapshot.discovery import ALL_FOLDERS, sync_workspaces
from backupd.snapshot.export_queue import ExportQueue
from backupd.snapshot.memory import release_free_memory
from backupd.snapshot.optional import OptionalParts
from backupd.snapshot.options import SnapshotOptions
from backupd.snapshot.plan import is_full_snapshot
from backupd.snapshot.publish import push_snapshots, tag_snapshot
from backupd.snapshot.stage import job_weight
from backupd.snapshot.workspace import (
    PreparedWorkspace,
    StoredState,
    finish_workspace,
    prepare_workspace,
    read_stored,
)
from backupd.store.gitrepo import GitRepo, Identity
from backupd.store.remote import PushResult

logger = logging.getLogger(__name__)


def credentials_rejected(result: SnapshotResult) -> bool:
    return result.error_type is not None and issubclass(result.error_type, CredentialsRejected)


def _rejection_reason(result: SnapshotResult) -> str:
    if result.error_type is not None and issubclass(result.error_type, ClockSkewError):
        return "clock problem"
    return "credentials rejected"


def snapshot_source(
    client: JobSource,
    repo: GitRepo,
    chosen: Sequence[WorkspaceTarget],
    options: SnapshotOptions,
    identity: Identity,
    *,
    parallel: int | None = None,
    observer: SnapshotObserver = NO_OBSERVER,
    cancel: threading.Event | None = None,
    commit_lock: AbstractContextManager[object] | None = None,
) -> list[SnapshotResult]:
    """Snapshot one source's workspaces as a pipeline: workspaces list and export side by
    side while this thread commits the staged ones, one at a time, as they become ready.

    Git work and network waits overlap instead of adding up. How many workspaces are under
    way follows the rate budgets, not a fixed count (``parallel``, default
    ``WORKSPACES_AT_ONCE``, only bounds it): a workspace starts listing while fewer are
    listing than the job list's budget keeps busy, and while the batches listed but not
    exported yet would keep the export budget busy for less than the time a listing takes
    (``_Admission``). The first workspace lists alone until its first answer proved the
    credentials, or, when it exports every job (a first or a full snapshot: the exports are
    then the bound, and its own start soonest), until it is listed. A workspace's calls
    rank by its place in line (``ranked``): the listings that share a budget end one after
    another, not all together, late. At most ``2 x parallel`` workspaces are staged or
    staging at once, which bounds the disk staging may use, and a workspace starts only
    while those hold fewer than ``JOBS_IN_FLIGHT`` jobs (each counted at its stored size,
    or the mean, until it is listed), which bounds memory. Rejected credentials end the
    source's run: workspaces not started yet are reported with the same error instead of
    asking again (same credentials, same answer).

    ``commit_lock`` (a daemon's) is held only to apply and commit; ``cancel`` (a stop) ends
    the workspaces between two API calls, and under the lock before anything is applied.
    """
    parallel = max(1, WORKSPACES_AT_ONCE if parallel is None else parallel)
    stop = threading.Event()
    optional = OptionalParts()  # one warning per run for an optional API that is absent
    budget = _JobBudget(JOBS_IN_FLIGHT)
    weights: dict[int, int] = {}  # workspace index → jobs it counts against the budget
    admission = _Admission(client)
    staged_slots = threading.BoundedSemaphore(2 * parallel)
    rejection: list[SnapshotResult] = []
    export_budget = client.budget(EXPORT)

    def prepare(index: int, target: WorkspaceTarget) -> PreparedWorkspace | SnapshotResult | None:
        staged_slots.acquire()
        admission.approach(index, stop)
        # Its jobs count against the budget from here: the state read ahead is held too.
        weight = _Weight(budget, budget.admit())
        stored = None if stop.is_set() else _read_ahead(repo, target)
        if (size := stored_size(stored)) is not None:
            weight.sized(target, size)
        if index == 0:
            admission.first_exports_all(exports_all(options, stored))
        turn = admission.enter(index, stop)
        try:
            if stop.is_set():
                weight.release()
                staged_slots.release()
                return None
            with ranked(index):  # its calls go before those of the workspaces after it
                prepared = prepare_workspace(
                    client,
                    repo,
                    target,
                    options,
                    observer=Fanout([observer, weight, turn]),
                    lane=exports.lane(index),
                    optional=optional,
                    stored=stored,
                )
            del stored
            if isinstance(prepared, SnapshotResult):
                weight.release()
                staged_slots.release()
                if credentials_rejected(prepared) and not stop.is_set():
                    rejection.append(prepared)
                    stop.set()  # before the turn passes on: waiting workspaces must see it
            weights[index] = weight.jobs
            return prepared
        except BaseException:
            weight.release()
            staged_slots.release()
            raise
        finally:
            turn.done()

    outcomes: dict[int, SnapshotResult | None] = {}
    with (
        ExportQueue(
            export_budget.max_in_flight,
            running=lambda: export_budget.in_flight_limit,
            finished=admission.downloaded,
        ) as exports,
        ThreadPoolExecutor(parallel, thread_name_prefix="workspace") as pool,
    ):
        futures = {pool.submit(prepare, i, t): i for i, t in enumerate(chosen)}
        for future in as_completed(futures):
            # Popped: a done future holds its result, and a staged workspace holds its
            # listing and changed paths; kept, every workspace's would stay until the end.
            index = futures.pop(future)
            outcome = future.result()
            del future
            if isinstance(outcome, PreparedWorkspace):
                try:
                    outcome = finish_workspace(
                        client,
                        repo,
                        outcome,
                        options,
                        identity,
                        commit_lock=commit_lock,
                        cancel=cancel,
                    )
                finally:
                    budget.release(weights.pop(index, 0))
                    staged_slots.release()
                    release_free_memory()
            outcomes[index] = outcome
            if outcome is not None:
                # Reported now, while the others still wait on the network: the status file
                # is written (and synced) once a workspace, not all of them at the end.
                observer.finished(outcome)
    skipped = [t for i, t in enumerate(chosen) if outcomes[i] is None]
    if skipped:
        log(
            logger,
            "source.skipped",
            level=logging.WARNING,
            source=skipped[0].source,
            workspaces=",".join(t.label for t in skipped),
            reason=_rejection_reason(rejection[0]),
        )
    results = []
    for index, target in enumerate(chosen):
        outcome = outcomes[index]
        if outcome is None:  # not attempted: the source's credentials were refused
            outcome = dataclasses.replace(rejection[0], target=target, duration=0.0)
            observer.finished(outcome)
        results.append(outcome)
    return results


def stored_size(stored: StoredState | None) -> int | None:
    """What a workspace held at its last snapshot (``job_weight``), which sizes it before it
    is listed; None when it was never stored (a new folder: nothing is known of its size)."""
    if stored is None or not stored.baseline.files:
        return None
    return job_weight(len(stored.layout.jobs), len(stored.baseline.files))


def exports_all(options: SnapshotOptions, stored: StoredState | None) -> bool:
    """Whether a workspace will export every job (its stored state unknown: it may)."""
    return stored is None or is_full_snapshot(options, stored.baseline, time.time())


def _read_ahead(repo: GitRepo, target: WorkspaceTarget) -> StoredState | None:
    """The workspace's stored state, read before its turn; None when that failed (the
    workspace then reads it again, and reports what failed as its result)."""
    try:
        return read_stored(repo, target)
    except (BackupdError, OSError):
        return None


# Workspaces of one source under way at most (listing, exporting or staged): the rate
# budgets and the job budget decide how many actually are.
WORKSPACES_AT_ONCE = 16
# Before any workspace was listed: the seconds a listing is expected to take.
FIRST_LISTING_GUESS = 2.0


class _Admission:
    """When the next workspace may start: in order; the first one alone until its first
    answer proved the credentials, or until it is listed when it exports every job (its
    exports are the bound then: listing beside them takes the CPU and the job list's calls
    they need, and measured slower at 20 x 2,000); while fewer are listing than keep the
    job list's budget busy, and while the export work listed already (batches not
    downloaded yet) lasts less than a listing takes to come (at the export budget's rate),
    so the next workspace's batches are there in time and no more listings are held than
    that."""

    def __init__(self, client: JobSource, clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._clock = clock
        self._changed = threading.Condition()
        self._next = 0  # the index whose turn it is
        self._listing = 0  # workspaces listing now
        self._backlog = 0  # batches listed, not downloaded yet
        self._left: dict[int, int] = {}  # workspace index → its batches not downloaded yet
        self._first_listed = False
        self._first_exports_all = True  # until told otherwise
        self._listing_time = FIRST_LISTING_GUESS  # running average, seconds
        self._waiters = 0  # callers of ``approach`` or ``enter`` waiting

    def now(self) -> float:
        return self._clock()

    @property
    def waiting(self) -> int:
        """Workspaces waiting in ``approach`` or ``enter``."""
        with self._changed:
            return self._waiters

    def listers(self) -> int:
        """Workspaces listing at once: as many as the job list's budget has calls in flight,
        at least three (a listing has one page under way at a time now and then: its first
        page, its second job type). More would not list faster, only finish each listing
        later, and the next workspace's exports wait for its listing."""
        return max(3, self._client.budget(JOBS_LIST).in_flight_limit)

    def _lead(self) -> float:
        """Seconds of export work to have listed ahead: twice a listing, a second, and the
        time an export takes (the batches in flight count as not downloaded yet)."""
        return 2 * self._listing_time + 1.0 + self._client.budget(EXPORT).duration

    def _may_start(self, index: int, stop: threading.Event) -> bool:
        if stop.is_set():
            return index == self._next
        if index != self._next:
            return False
        first_ahead = self._first_exports_all or not self._client.credentials_proven.is_set()
        if index > 0 and not self._first_listed and first_ahead:
            return False
        if self._listing >= self.listers():
            return False
        rate = max(0.1, self._client.budget(EXPORT).rate.rate)
        return self._backlog / rate < self._lead()

    def first_exports_all(self, exports_all: bool) -> None:
        """Whether the first workspace exports every job (known before it enters)."""
        with self._changed:
            self._first_exports_all = exports_all
            self._changed.notify_all()

    def approach(self, index: int, stop: threading.Event) -> None:
        """Wait until workspace ``index`` is next in line (or the run stops): it then reads
        its stored state, while the ones before it list, instead of after its turn came.
        Only the next one: each holds its whole stored layout meanwhile."""
        with self._changed:
            self._waiters += 1
            while index > self._next and not stop.is_set():
                self._changed.wait(0.25)
            self._waiters -= 1

    def enter(self, index: int, stop: threading.Event) -> _Turn:
        """Wait for workspace ``index``'s turn; it is then listing."""
        with self._changed:
            # The export rate climbs back after a 429, and the client proves the credentials,
            # without telling: look again now and then (soon, while the first one's answer
            # is all the next one waits for).
            self._waiters += 1
            while not self._may_start(index, stop):
                soon = not (self._first_listed or self._first_exports_all)
                self._changed.wait(0.01 if soon else 0.25)
            self._waiters -= 1
            self._next += 1
            self._listing += 1
            self._changed.notify_all()
        return _Turn(self, index)

    def listed(self, turn: _Turn, batches: int) -> None:
        with self._changed:
            self._listing -= 1
            self._left[turn.index] = batches
            self._backlog += batches
            elapsed = self._clock() - turn.began
            self._listing_time += 0.3 * (elapsed - self._listing_time)
            if turn.index == 0:
                self._first_listed = True
            self._changed.notify_all()

    def downloaded(self, index: int) -> None:
        """One of workspace ``index``'s batches is downloaded (unpacking it is not export
        work: while a workspace unpacks what it downloaded, the budget needs the next)."""
        with self._changed:
            left = self._left.get(index, 0)
            if left > 0:
                self._left[index] = left - 1
                self._backlog -= 1
                self._changed.notify_all()

    def ended(self, turn: _Turn, listing: bool) -> None:
        """A workspace's preparation ended (staged or failed), maybe while ``listing``."""
        with self._changed:
            if listing:
                self._listing -= 1
            self._backlog -= self._left.pop(turn.index, 0)
            if turn.index == 0:
                self._first_listed = True  # failed or not: the others may go now
            self._changed.notify_all()


class _Turn(SnapshotObserver):
    """One workspace's passage through ``_Admission``: listing, then its batches exported."""

    def __init__(self, admission: _Admission, index: int) -> None:
        self._admission = admission
        self.index = index
        self.began = admission.now()
        self._listing = True

    def listed(self, target: WorkspaceTarget, jobs: int, batches: int) -> None:
        if self._listing:
            self._listing = False
            self._admission.listed(self, batches)

    def done(self) -> None:
        listing, self._listing = self._listing, False
        self._admission.ended(self, listing)


# Jobs whose listings and stored files a source's pipeline holds at once (1-2 kB each):
# with large workspaces fewer are staged side by side, so memory does not grow with their
# size. One workspace is always let through, however large.
JOBS_IN_FLIGHT = 16_000


class _JobBudget:
    """The jobs the workspaces in flight hold, kept under a limit.

    A workspace's size is known once its stored state is read (its size at the last
    snapshot) and again once it is listed, and several list at once: each is admitted
    holding the mean size of those known so far, then resized. Admitting on what is held
    now instead would let every waiting workspace in before any of them is sized.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._known_jobs = 0  # the sizes known, of ``_known`` workspaces
        self._known = 0
        self._waiting = 0  # callers of ``admit`` waiting for room
        self._changed = threading.Condition()

    @property
    def waiting(self) -> int:
        """Workspaces waiting in ``admit`` for room."""
        with self._changed:
            return self._waiting

    def _estimate(self) -> int:
        return self._known_jobs // self._known if self._known else 0

    def admit(self) -> int:
        """Wait until one more workspace fits (or none is in flight); returns what it holds."""
        with self._changed:
            self._waiting += 1
            self._changed.wait_for(
                lambda: self._used == 0 or self._used + self._estimate() <= self._limit
            )
            self._waiting -= 1
            held = self._estimate()
            self._used += held
            return held

    def resize(self, held: int, jobs: int, *, first: bool) -> None:
        """A workspace holding ``held`` jobs holds ``jobs``; ``first``: its size was not
        known before (``held`` was an estimate)."""
        with self._changed:
            self._used += jobs - held
            self._known_jobs += jobs if first else jobs - held
            self._known += int(first)
            self._changed.notify_all()

    def release(self, jobs: int) -> None:
        with self._changed:
            self._used -= jobs
            self._changed.notify_all()


class _Weight(SnapshotObserver):
    """The jobs one workspace holds against the budget: an estimate until it is listed."""

    def __init__(self, budget: _JobBudget, held: int) -> None:
        self._budget = budget
        self.jobs = held
        self._known = False

    def sized(self, target: WorkspaceTarget, jobs: int) -> None:
        self._budget.resize(self.jobs, jobs, first=not self._known)
        self.jobs, self._known = jobs, True

    def release(self) -> None:
        jobs, self.jobs = self.jobs, 0
        self._budget.release(jobs)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SourceRun:
    """What to snapshot of one source: ``targets``, or (``discover``) the workspaces that
    discovery finds, narrowed to ``wanted`` (labels, folders or the source name; empty:
    all of them)."""

    source: SourceConfig
    targets: tuple[WorkspaceTarget, ...] = ()
    discover: bool = False
    wanted: frozenset[str] = frozenset()

    def keeps(self, target: WorkspaceTarget) -> bool:
        return not self.wanted or bool({target.label, target.folder, target.source} & self.wanted)


# An open client for a source, closed (or not: a daemon's outlive a run) when the run is done.
ClientOpener = Callable[[SourceConfig], AbstractContextManager[JobSource]]


@dataclass(frozen=True)
class RunReport:
    """One snapshot run: each workspace's result, the tag it created, how the push went."""

    results: tuple[SnapshotResult, ...]
    tag: str | None = None
    push: PushResult | None = None  # None: no remote configured (or nothing was pushed)


def discover_workspaces(
    client: JobSource,
    repo: GitRepo,
    run: SourceRun,
    identity: Identity,
    *,
    commit_lock: AbstractContextManager[object] | None = None,
    observer: SnapshotObserver = NO_OBSERVER,
) -> tuple[list[WorkspaceTarget], list[SnapshotResult]]:
    """The source's workspaces as discovery finds them now (committing the workspace map),
    and the reports it makes: a ``gone`` result per vanished workspace, a failed
    ``<source>/*`` when discovery failed (the workspaces found last time are then kept)."""
    with commit_lock or contextlib.nullcontext():
        found = sync_workspaces(client, repo, run.source, identity)
    reports = [r for r in found.reports if r.target.folder == ALL_FOLDERS or run.keeps(r.target)]
    for report in reports:
        observer.finished(report)
    return [t for t in found.targets if run.keeps(t)], reports


def snapshot_sources(
    config: Config,
    repo: GitRepo,
    runs: Sequence[SourceRun],
    identity: Identity,
    *,
    clients: ClientOpener,
    options_for: Callable[[SourceConfig], SnapshotOptions],
    observer: SnapshotObserver = NO_OBSERVER,
    cancel: threading.Event | None = None,
    commit_lock: AbstractContextManager[object] | None = None,
    parallel: int | None = None,
) -> list[SnapshotResult]:
    """THE driver: snapshot what ``runs`` name, source by source, into ``repo``.

    `backupd snapshot` calls it with every configured source (holding the repository lock);
    the daemon with one workspace at a time (``commit_lock`` serialises its commits,
    ``cancel`` is its stop). ``clients`` opens a source's API client, ``options_for`` gives
    its snapshot options (both from the wiring). ``parallel`` bounds the workspaces of a
    source under way at once (default: as many as its rate budgets keep busy, see
    :func:`snapshot_source`). Discovery and reporting (``observer.finished``) happen here
    and nowhere else; tagging and pushing follow in :class:`Publisher`.
    """
    del config  # the sources' own settings come through ``clients`` and ``options_for``
    results: list[SnapshotResult] = []
    for run in runs:
        if cancel is not None and cancel.is_set():
            break
        options = options_for(run.source)
        with clients(run.source) as client:
            chosen = list(run.targets)
            if run.discover:
                found, reports = discover_workspaces(
                    client, repo, run, identity, commit_lock=commit_lock, observer=observer
                )
                results += reports
                chosen = found
            results += snapshot_source(
                client,
                repo,
                chosen,
                options,
                identity,
                parallel=parallel,
                observer=observer,
                cancel=cancel,
                commit_lock=commit_lock,
            )
    return results


class Publisher:
    """Tags restore points and pushes them, after the snapshots of a run.

    One push at a time, outside the commit lock (it may wait on the network); a push that
    failed is tried again after the next snapshot even when that one changed nothing.
    """

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._push_lock = threading.Lock()
        # A first push after start always: an earlier process's push may have failed.
        self._push_pending = True

    def tag(
        self,
        repo: GitRepo,
        config: Config,
        results: Sequence[SnapshotResult],
        identity: Identity,
        *,
        commit_lock: AbstractContextManager[object] | None = None,
    ) -> str | None:
        """Mark a restore point (``history.tags``); a failure is logged and the next run tags."""
        if config.history.tags == "none":
            return None
        with commit_lock or contextlib.nullcontext():
            try:
                return tag_snapshot(repo, config.history.tags, self._clock(), results, identity)
            except RepoError as error:  # the commits stand; the next run tags again
                log(logger, "tag.failed", level=logging.ERROR, error=str(error))
                return None

    def push(
        self, repo: GitRepo, config: Config, results: Sequence[SnapshotResult]
    ) -> PushResult | None:
        """Push when something was committed (or an earlier push failed); None: not pushed."""
        if config.remote is None or not results:
            return None
        if not (any(r.commit for r in results) or self._push_pending):
            return None
        with self._push_lock:
            try:
                result = push_snapshots(repo, config)
            except BackupdError as error:
                log(logger, "push.failed", level=logging.WARNING, error=str(error))
                result = PushResult(ok=False, remote="", error=str(error))
            self._push_pending = not result.ok
        return result


def listed_targets(source: SourceConfig) -> list[WorkspaceTarget]:
    """The workspaces the config lists (none for 'workspaces: all': discovery finds those)."""
    return [WorkspaceTarget(source.name, w.id, w.folder) for w in source.listed_workspaces]


def select_sources(config: Config, only: Iterable[str] = ()) -> list[SourceRun]:
    """What ``only`` (labels 'source/folder', folders or source names; empty: all) chooses
    of each source. A discovering source's folders are known only after discovery."""
    wanted = frozenset(only)
    runs = []
    for source in config.sources:
        if source.discovers:
            if _concerns(source, wanted):
                runs.append(SourceRun(source, discover=True, wanted=wanted))
            continue
        selection = SourceRun(source, wanted=wanted)
        chosen = tuple(t for t in listed_targets(source) if selection.keeps(t))
        if chosen:
            runs.append(dataclasses.replace(selection, targets=chosen))
    return runs


def _concerns(source: SourceConfig, wanted: frozenset[str]) -> bool:
    """Could ``wanted`` name a workspace of this source (whose folders are not known yet)?"""
    return not wanted or any(
        item == source.name or item.startswith(f"{source.name}/") or "/" not in item
        for item in wanted
    )
