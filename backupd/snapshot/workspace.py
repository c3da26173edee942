"""One workspace, start to commit: prepare (list, export, stage), then finish (apply, commit).

Failures are returned as results, never raised, so one workspace never stops another.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from backupd.dataarts.source import JobSource
from backupd.errors import (
    BackupdError,
    SnapshotCancelled,
    describe_os_error,
)
from backupd.logs import log
from backupd.model import (
    NO_OBSERVER,
    JobCounts,
    SnapshotObserver,
    SnapshotResult,
    WorkspaceTarget,
    is_warning,
)
from backupd.snapshot.apply import apply_staged
from backupd.snapshot.export_queue import Lane
from backupd.snapshot.optional import OptionalParts
from backupd.snapshot.options import SnapshotOptions
from backupd.snapshot.plan import (
    Baseline,
    keep_layout,
    read_baseline,
    read_stored_layout,
    record_progress,
)
from backupd.snapshot.scratch import make_staging
from backupd.snapshot.stage import StagedWorkspace, stage_workspace
from backupd.store.blobs import BlobWriter
from backupd.store.gitrepo import GitRepo, Identity
from backupd.store.layout import StoredLayout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedWorkspace:
    """A workspace staged and waiting for its commit (its staging folder still exists)."""

    target: WorkspaceTarget
    staging: Path
    last_full: float  # of the baseline (its files are not needed once staged)
    staged: StagedWorkspace
    started: float
    retries_before: int
    # Whether the folder differed from HEAD (a crashed run's leftovers); looked at beside
    # the network work, rather than on the thread that commits.
    dirty: bool | None = None


@dataclass(frozen=True)
class StoredState:
    """What the repository holds of a workspace: the last commit's folder, and whose each
    of its paths is (its index read)."""

    baseline: Baseline
    layout: StoredLayout


def read_stored(repo: GitRepo, target: WorkspaceTarget) -> StoredState:
    """The workspace's stored state (raises RepoError, OSError). Up to a few tenths of a
    second of CPU for a large workspace (less when its layout was kept): the driver reads it
    while the workspace waits for its turn, so that its listing starts at once when it comes."""
    baseline = read_baseline(repo, target.label)
    layout = read_stored_layout(repo, baseline.files, folder=target.label, tree=baseline.tree)
    return StoredState(baseline, layout)


def prepare_workspace(
    client: JobSource,
    repo: GitRepo,
    target: WorkspaceTarget,
    options: SnapshotOptions,
    *,
    observer: SnapshotObserver = NO_OBSERVER,
    lane: Lane | None = None,
    optional: OptionalParts | None = None,
    stored: StoredState | None = None,
) -> PreparedWorkspace | SnapshotResult:
    """The network half of a snapshot: list, export and stage (reads the repository only).

    Returns the failure as a result when it fails; the staging folder is then gone.
    ``optional``: what this run learned about optional APIs (shared by a source's
    workspaces); ``stored``: the workspace's stored state when read already (else read here).
    """
    observer.started(target)
    started = time.monotonic()
    retries_before = client.retries
    try:
        staging = make_staging(options.staging_root)
    except OSError as error:
        message = f"cannot create a staging folder: {describe_os_error(error)}"
        return _failure(target, error, message, started, client.retries - retries_before)
    blobs = BlobWriter(repo.path)
    dirty = _folder_dirty_beside(repo, target.label)
    try:
        if stored is None:
            stored = read_stored(repo, target)
        baseline = stored.baseline
        staged = stage_workspace(
            client,
            target,
            options,
            staging,
            baseline,
            observer=observer,
            lane=lane,
            blobs=blobs,
            stored=stored.layout,
            optional=optional,
        )
        del stored  # the staged tree holds what is still needed
        staged = replace(staged, blobs_stored=blobs.finish())
    except (BackupdError, OSError) as error:
        blobs.abandon()
        shutil.rmtree(staging, ignore_errors=True)
        message = describe_os_error(error) if isinstance(error, OSError) else str(error)
        return _failure(target, error, message, started, client.retries - retries_before)
    return PreparedWorkspace(
        target, staging, baseline.last_full, staged, started, retries_before, dirty.result()
    )


def _folder_dirty_beside(repo: GitRepo, folder: str) -> Future[bool | None]:
    """Whether ``folder`` differs from HEAD (None: not known; the commit looks again), asked
    of git in a thread of its own while the workspace lists and exports: nothing this
    process does changes the folder before its own commit, and a large folder's status takes
    a few tenths of a second, which would otherwise follow the last answer."""
    answer: Future[bool | None] = Future()

    def look() -> None:
        try:
            answer.set_result(repo.folder_dirty(folder))
        except BackupdError:
            answer.set_result(None)
        except BaseException as error:  # noqa: BLE001 - whatever it is, the waiter gets it
            answer.set_exception(error)

    threading.Thread(target=look, name="folder-status", daemon=True).start()
    return answer


def finish_workspace(
    client: JobSource,
    repo: GitRepo,
    prepared: PreparedWorkspace,
    options: SnapshotOptions,
    identity: Identity,
    *,
    commit_lock: AbstractContextManager[object] | None = None,
    cancel: threading.Event | None = None,
) -> SnapshotResult:
    """The repository half: apply the staged change and commit it; removes the staging.

    ``cancel`` is looked at under the lock, last of all: a stop that came while another
    workspace was committing still leaves this one untouched.
    """
    target, staged = prepared.target, prepared.staged
    try:
        with commit_lock or contextlib.nullcontext():
            if cancel is not None and cancel.is_set():
                raise SnapshotCancelled("backupd is stopping")
            _, summary, sha = apply_staged(
                repo, target, staged, options, identity, dirty=prepared.dirty
            )
            tree = record_progress(
                repo,
                target.label,
                staged.times,
                full=staged.full,
                last_full=prepared.last_full,
                partial=any(not is_warning(problem) for problem in staged.problems),
            )
            if tree is not None and staged.layout_file is not None:
                keep_layout(repo, target.label, tree, staged.layout_file)
    except (BackupdError, OSError) as error:
        message = describe_os_error(error) if isinstance(error, OSError) else str(error)
        retries = client.retries - prepared.retries_before
        return _failure(target, error, message, prepared.started, retries)
    finally:
        shutil.rmtree(prepared.staging, ignore_errors=True)
    result = SnapshotResult(
        target,
        ok=True,
        jobs=len(staged.jobs),
        scripts=staged.script_count,
        resources=staged.resource_count,
        changed_jobs=JobCounts(
            len(summary.jobs_added),
            len(summary.jobs_changed),
            len(summary.jobs_removed),
            len(summary.jobs_renamed),
        ),
        commit=sha,
        duration=time.monotonic() - prepared.started,
        retries=client.retries - prepared.retries_before,
        problems=staged.problems,
    )
    log(
        logger,
        "snapshot.done",
        workspace=target.label,
        jobs=result.jobs,
        exported=staged.exported,
        mode="full" if staged.full else "incremental",
        added=len(summary.jobs_added),
        changed=len(summary.jobs_changed),
        removed=len(summary.jobs_removed),
        renamed=len(summary.jobs_renamed),
        commit=sha or "none",
        retries=result.retries,
        seconds=round(result.duration, 2),
        problems=len(result.problems),
    )
    for problem in result.problems:
        log(
            logger,
            "snapshot.partial",
            level=logging.WARNING,
            workspace=target.label,
            problem=problem,
        )
    return result


def _failure(
    target: WorkspaceTarget, error: BaseException, message: str, started: float, retries: int
) -> SnapshotResult:
    cancelled = isinstance(error, SnapshotCancelled)
    if cancelled:
        message = f"interrupted before touching the repository: {message}"
    log(
        logger,
        "snapshot.interrupted" if cancelled else "snapshot.failed",
        level=logging.WARNING if cancelled else logging.ERROR,
        workspace=target.label,
        error=message,
    )
    return SnapshotResult(
        target,
        ok=False,
        error=message,
        error_type=type(error) if isinstance(error, BackupdError) else None,
        duration=time.monotonic() - started,
        retries=retries,
        interrupted=cancelled,
    )
