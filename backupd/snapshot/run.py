"""The snapshot driver: every chosen workspace of every source, then tag and push.

Each workspace is isolated: one failing never stops the others (borgmatic's rule) — except
when the service rejects the source's credentials, which would fail every workspace of that
source the same way; those are then reported once and not attempted. Sources with
``workspaces: all`` discover their workspaces first, at every run (discovery.py).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime

from backupd.config import (
    Config,
    SourceConfig,
)
from backupd.dataarts.client import DataArtsClient
from backupd.errors import ClockSkewError, CredentialsRejected, RepoError
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
from backupd.snapshot.options import SnapshotOptions
from backupd.snapshot.publish import push_snapshots, tag_snapshot
from backupd.snapshot.stage import remove_stale_staging
from backupd.snapshot.workspace import PreparedWorkspace, finish_workspace, prepare_workspace
from backupd.store.gitrepo import GitRepo, Identity, repository_lock
from backupd.store.remote import PushResult
from backupd.wiring import AuthCache, ClientFactory, make_client, snapshot_options, targets

logger = logging.getLogger(__name__)


def credentials_rejected(result: SnapshotResult) -> bool:
    return result.error_type is not None and issubclass(result.error_type, CredentialsRejected)


def _rejection_reason(result: SnapshotResult) -> str:
    if result.error_type is not None and issubclass(result.error_type, ClockSkewError):
        return "clock problem"
    return "credentials rejected"


def snapshot_source(
    client: DataArtsClient,
    repo: GitRepo,
    chosen: Sequence[WorkspaceTarget],
    options: SnapshotOptions,
    identity: Identity,
    *,
    parallel: int = 1,
    observer: SnapshotObserver = NO_OBSERVER,
) -> list[SnapshotResult]:
    """Snapshot one source's workspaces as a pipeline: ``parallel`` list and export at once
    while this thread commits the staged ones, one at a time, as they become ready.

    Git work and network waits overlap instead of adding up. The first workspace lists
    alone: the first exports start after one workspace's listing rather than after several
    sharing the listing rate. At most ``2 x parallel`` workspaces are staged or staging at
    once, which bounds the disk staging may use, and a workspace starts only while those
    hold fewer than ``JOBS_IN_FLIGHT`` jobs, which bounds memory. Rejected credentials end
    the source's run: workspaces not started yet are reported with the same error instead of
    asking again (same credentials, same answer).
    """
    stop = threading.Event()
    budget = _JobBudget(JOBS_IN_FLIGHT)
    weights: dict[int, int] = {}  # workspace index → jobs it counts against the budget
    first_listed = threading.Event()
    listing = threading.BoundedSemaphore(max(1, parallel))
    staged_slots = threading.BoundedSemaphore(2 * max(1, parallel))
    rejection: list[SnapshotResult] = []

    def prepare(index: int, target: WorkspaceTarget) -> PreparedWorkspace | SnapshotResult | None:
        staged_slots.acquire()
        if index:
            # The first workspace lists alone: its calls prove the credentials (wrong ones
            # are then refused once, not once per workspace) and its exports start soonest.
            first_listed.wait()
        weight = _Weight(budget, budget.admit())
        turn = _ListingTurn(listing, first_listed if index == 0 else None)
        try:
            if stop.is_set():
                weight.release()
                staged_slots.release()
                return None
            prepared = prepare_workspace(
                client,
                repo,
                target,
                options,
                observer=Fanout([observer, weight, turn]),
                lane=exports.lane(index),
            )
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
            turn.pass_on()

    outcomes: dict[int, SnapshotResult | None] = {}
    with (
        ExportQueue(options.export_window) as exports,
        ThreadPoolExecutor(max(1, parallel), thread_name_prefix="workspace") as pool,
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
                    outcome = finish_workspace(client, repo, outcome, options, identity)
                finally:
                    budget.release(weights.pop(index, 0))
                    staged_slots.release()
                    release_free_memory()
            outcomes[index] = outcome
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
    results = [
        outcome
        if (outcome := outcomes[i]) is not None
        else dataclasses.replace(rejection[0], target=target, duration=0.0)
        for i, target in enumerate(chosen)
    ]
    for result in results:
        observer.finished(result)
    return results


# Jobs whose listings and stored files a source's pipeline holds at once (1-2 kB each):
# with large workspaces fewer are staged side by side, so memory does not grow with their
# size. One workspace is always let through, however large.
JOBS_IN_FLIGHT = 16_000


class _JobBudget:
    """The jobs the workspaces in flight hold, kept under a limit.

    A workspace's size is known only once it is listed, and several list at once: each is
    admitted holding the mean size of those listed so far, then resized. Admitting on what
    is held now instead would let every waiting workspace in before any of them is listed.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._listed_jobs = 0
        self._listed = 0
        self._changed = threading.Condition()

    def _estimate(self) -> int:
        return self._listed_jobs // self._listed if self._listed else 0

    def admit(self) -> int:
        """Wait until one more workspace fits (or none is in flight); returns what it holds."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._used == 0 or self._used + self._estimate() <= self._limit
            )
            held = self._estimate()
            self._used += held
            return held

    def resize(self, held: int, jobs: int) -> None:
        """A workspace admitted holding ``held`` jobs was listed with ``jobs``."""
        with self._changed:
            self._used += jobs - held
            self._listed_jobs += jobs
            self._listed += 1
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

    def sized(self, target: WorkspaceTarget, jobs: int) -> None:
        self._budget.resize(self.jobs, jobs)
        self.jobs = jobs

    def release(self) -> None:
        jobs, self.jobs = self.jobs, 0
        self._budget.release(jobs)


class _ListingTurn(SnapshotObserver):
    """Holds one of the ``listing`` places from its creation until the workspace is listed
    (or its snapshot ended), then sets ``done``."""

    def __init__(self, listing: threading.BoundedSemaphore, done: threading.Event | None) -> None:
        listing.acquire()
        self._listing: threading.BoundedSemaphore | None = listing
        self._done = done

    def listed(self, target: WorkspaceTarget, jobs: int, batches: int) -> None:
        self.pass_on()

    def pass_on(self) -> None:
        listing, self._listing = self._listing, None
        if listing is not None:
            listing.release()
            if self._done is not None:
                self._done.set()


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RunReport:
    """One snapshot run: each workspace's result, the tag it created, how the push went."""

    results: tuple[SnapshotResult, ...]
    tag: str | None = None
    push: PushResult | None = None  # None: no remote configured (or nothing was run)


def _concerns(source: SourceConfig, wanted: set[str]) -> bool:
    """Could ``only`` name a workspace of this source (whose folders are not known yet)?"""
    return not wanted or any(
        item == source.name or item.startswith(f"{source.name}/") or "/" not in item
        for item in wanted
    )


def run(
    config: Config,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory | None = None,
    auth_cache: AuthCache | None = None,
    clock: Callable[[], datetime] = utc_now,
    observer: SnapshotObserver = NO_OBSERVER,
) -> RunReport:
    """Snapshot the configured workspaces, tag the restore point, push to the remote.

    ``only``: labels, folder names or source names. The push runs outside the lock: it may
    wait on the network, and its failure is part of the report, never an exception.
    """
    identity = Identity(config.repository.author.name, config.repository.author.email)
    with GitRepo.open(config.repository.path, branch=config.repository.branch) as repo:
        with repository_lock(repo):
            repo.prepare(identity)  # also repairs what a killed run left in the repository
            remove_stale_staging(config.staging_dir)
            results = snapshot_all(
                config,
                repo,
                identity,
                only=only,
                allow_mass_delete=allow_mass_delete,
                client_factory=client_factory
                or functools.partial(make_client, auth_cache=auth_cache),
                observer=observer,
            )
            tag = _tag(repo, config, clock(), results, identity)
            repo.housekeep()
        pushed = None
        if config.remote is not None and results:
            pushed = push_snapshots(repo, config)
    return RunReport(tuple(results), tag, pushed)


def _tag(
    repo: GitRepo,
    config: Config,
    now: datetime,
    results: list[SnapshotResult],
    identity: Identity,
) -> str | None:
    try:
        return tag_snapshot(repo, config.history.tags, now, results, identity)
    except RepoError as error:  # the commits stand; the next run tags again
        log(logger, "tag.failed", level=logging.ERROR, error=str(error))
        return None


def snapshot_all(
    config: Config,
    repo: GitRepo,
    identity: Identity,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory = make_client,
    observer: SnapshotObserver = NO_OBSERVER,
) -> list[SnapshotResult]:
    """Snapshot the chosen workspaces into ``repo``; call with the lock held.

    ``only``: labels ('source/folder'), folder names or source names. The results include a
    ``gone`` result for each discovered workspace DataArts no longer lists, and a failed
    ``<source>/*`` result when discovering a source's workspaces failed.
    """
    wanted = set(only)
    results: list[SnapshotResult] = []

    def is_wanted(target: WorkspaceTarget) -> bool:
        return not wanted or bool({target.label, target.folder, target.source} & wanted)

    for source in config.sources:
        options = snapshot_options(config, source, allow_mass_delete=allow_mass_delete)
        if source.discovers:
            if not _concerns(source, wanted):
                continue
        elif not (chosen := [t for t in targets(source) if is_wanted(t)]):
            continue
        with client_factory(source) as client:
            if source.discovers:
                found = sync_workspaces(client, repo, source, identity)
                reports = [
                    r
                    for r in found.reports
                    if r.target.folder == ALL_FOLDERS or is_wanted(r.target)
                ]
                for report in reports:
                    observer.finished(report)
                results += reports
                chosen = [t for t in found.targets if is_wanted(t)]
            results += snapshot_source(
                client,
                repo,
                chosen,
                options,
                identity,
                parallel=config.daemon.max_parallel,
                observer=observer,
            )
    return results


def run_snapshots(
    config: Config,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory | None = None,
    auth_cache: AuthCache | None = None,
) -> list[SnapshotResult]:
    """Snapshot the configured workspaces (then tag and push, as configured)."""
    report = run(
        config,
        only=only,
        allow_mass_delete=allow_mass_delete,
        client_factory=client_factory,
        auth_cache=auth_cache,
    )
    return list(report.results)
