"""One scheduled workspace snapshot: staged in parallel with others, committed one at a time.

``snapshot.snapshot_workspace`` (stage outside the repository, then apply and commit), with
what a multi-threaded daemon adds:

* ``write_lock`` serialises apply+commit across workspaces: git has one index, while the
  listings and exports of different workspaces may overlap freely;
* ``cancel`` (set on SIGTERM) abandons a snapshot before its next API call and before it
  touches the working tree, so stopping never waits for a whole export and never leaves a
  half-applied folder. A commit already under way finishes.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, cast

from backupd.config import RepositoryConfig, SourceConfig
from backupd.dataarts.client import DataArtsClient
from backupd.errors import BackupdError, SnapshotCancelled
from backupd.logs import log
from backupd.model import NO_OBSERVER, SnapshotObserver, SnapshotResult
from backupd.service.plan import WorkspaceJob
from backupd.snapshot.discovery import sync_workspaces
from backupd.snapshot.memory import release_free_memory
from backupd.snapshot.workspace import snapshot_workspace
from backupd.store.gitrepo import GitRepo, Identity

logger = logging.getLogger(__name__)


def raise_if_cancelled(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise SnapshotCancelled("the daemon is stopping")


class CancellableClient:
    """A DataArts client that refuses to start another call once ``cancel`` is set.

    Every call of the staging step goes through here, so "between batches" needs no hook in
    the snapshot code.
    """

    def __init__(self, client: DataArtsClient, cancel: threading.Event) -> None:
        self._client = client
        self._cancel = cancel

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            raise_if_cancelled(self._cancel)
            return attribute(*args, **kwargs)

        return guarded


def run_snapshot(
    job: WorkspaceJob,
    client: DataArtsClient,
    repository: RepositoryConfig,
    *,
    write_lock: threading.Lock,
    cancel: threading.Event,
    observer: SnapshotObserver = NO_OBSERVER,
) -> SnapshotResult:
    """Snapshot one workspace; every failure is logged and returned, never raised."""
    identity = Identity(repository.author.name, repository.author.email)
    try:
        repo = GitRepo.open(repository.path, branch=repository.branch)
    except BackupdError as error:
        log(
            logger,
            "snapshot.failed",
            level=logging.ERROR,
            workspace=job.target.label,
            error=str(error),
        )
        return SnapshotResult(job.target, ok=False, error=str(error), error_type=type(error))
    guarded = cast(DataArtsClient, CancellableClient(client, cancel))
    # Checked again under the lock: the stop may have come while another workspace was
    # committing.
    before_apply = functools.partial(raise_if_cancelled, cancel)
    with repo:
        if job.discover is not None:
            result = _snapshot_discovered(
                job, job.discover, guarded, repo, identity, write_lock, before_apply, observer
            )
        else:
            result = snapshot_workspace(
                guarded,
                repo,
                job.target,
                job.options,
                identity,
                commit_lock=write_lock,
                before_apply=before_apply,
                observer=observer,
            )
        if result.commit:
            with write_lock:
                repo.housekeep()
        release_free_memory()
        return result


def _snapshot_discovered(
    job: WorkspaceJob,
    source: SourceConfig,
    client: DataArtsClient,
    repo: GitRepo,
    identity: Identity,
    write_lock: threading.Lock,
    before_apply: Callable[[], None],
    observer: SnapshotObserver,
) -> SnapshotResult:
    """Discover the source's workspaces (committing the map), then snapshot each in turn.

    The daemon keeps one record per scheduled job, so the whole source is reported as
    ``<source>/*``: ok only when discovery and every workspace went well.
    """
    try:
        with write_lock:
            before_apply()
            found = sync_workspaces(client, repo, source, identity)
    except SnapshotCancelled as error:
        return SnapshotResult(job.target, ok=False, error=str(error), error_type=type(error))
    results = list(found.reports)
    for target in found.targets:
        results.append(
            snapshot_workspace(
                client,
                repo,
                target,
                job.options,
                identity,
                commit_lock=write_lock,
                before_apply=before_apply,
                observer=observer,
            )
        )
    failed = [r for r in results if not r.ok]
    commits = [r.commit for r in results if r.commit]
    return SnapshotResult(
        job.target,
        ok=not failed,
        jobs=sum(r.jobs for r in results),
        scripts=sum(r.scripts for r in results),
        resources=sum(r.resources for r in results),
        commit=commits[-1] if commits else None,
        error="; ".join(f"{r.target.label}: {r.error}" for r in failed) or None,
        error_type=failed[0].error_type if failed else None,
        duration=sum(r.duration for r in results),
    )
