"""One scheduled workspace snapshot: staged in parallel with others, committed one at a time.

The steps of ``snapshot.snapshot_workspace`` (stage outside the repository, then apply and
commit), with what a multi-threaded daemon adds:

* ``write_lock`` serialises apply+commit across workspaces: git has one index, while the
  listings and exports of different workspaces may overlap freely;
* ``cancel`` (set on SIGTERM) abandons a snapshot before its next API call and before it
  touches the working tree, so stopping never waits for a whole export and never leaves a
  half-applied folder. A commit already under way finishes.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

from backupd.config import RepositoryConfig
from backupd.dataarts.client import DataArtsClient
from backupd.errors import BackupdError, SnapshotCancelled
from backupd.logs import log
from backupd.observer import NO_OBSERVER, SnapshotObserver
from backupd.service.plan import WorkspaceJob
from backupd.snapshot import SnapshotResult, apply_staged, stage_workspace
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
    target, options = job.target, job.options
    identity = Identity(repository.author.name, repository.author.email)
    started = time.monotonic()

    def failed(message: str, event: str = "snapshot.failed") -> SnapshotResult:
        level = logging.WARNING if event == "snapshot.abandoned" else logging.ERROR
        log(logger, event, level=level, workspace=target.label, error=message)
        return SnapshotResult(target, ok=False, error=message, duration=time.monotonic() - started)

    if options.staging_root is not None:
        options.staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="backupd-", dir=options.staging_root))
    try:
        guarded = cast(DataArtsClient, CancellableClient(client, cancel))
        staged = stage_workspace(guarded, target, options, staging, observer)
        with write_lock:
            # Checked again under the lock: the stop may have come while another
            # workspace was committing.
            raise_if_cancelled(cancel)
            with GitRepo.open(repository.path, branch=repository.branch) as repo:
                changes, summary, sha = apply_staged(repo, target, staged, options, identity)
    except SnapshotCancelled as error:
        return failed(f"abandoned before touching the repository: {error}", "snapshot.abandoned")
    except BackupdError as error:
        return failed(str(error))
    except OSError as error:
        return failed(f"{error.strerror or error} ({error.filename or 'file system'})")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = SnapshotResult(
        target,
        ok=True,
        jobs=len(staged.jobs),
        scripts=staged.script_count,
        changes=changes,
        summary=summary,
        commit=sha,
        duration=time.monotonic() - started,
    )
    log(
        logger,
        "snapshot.done",
        workspace=target.label,
        jobs=result.jobs,
        added=len(summary.jobs_added),
        changed=len(summary.jobs_changed),
        removed=len(summary.jobs_removed),
        commit=sha or "none",
        seconds=round(result.duration, 2),
    )
    return result
