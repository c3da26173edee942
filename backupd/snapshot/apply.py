"""Applying a staged workspace to the repository and committing it (under the lock).

The deletion guards run here, on the change about to be committed; a half-applied folder
is reset, never left behind as if it were true.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from backupd.errors import (
    BackupdError,
    RepoError,
    SnapshotRefused,
    describe_os_error,
)
from backupd.logs import log
from backupd.model import WorkspaceTarget
from backupd.snapshot.options import SnapshotOptions
from backupd.snapshot.stage import StagedWorkspace
from backupd.store.authors import (
    CommitGroup,
    attribute,
    identity_for,
    saved_by,
    split_commits,
)
from backupd.store.gitrepo import GitRepo, Identity
from backupd.store.layout import INDEX_FILE
from backupd.store.summary import ChangeSummary, commit_message, summarise
from backupd.store.tree import ChangeSet, apply_changes
from backupd.store.volatile import keep_equivalent

logger = logging.getLogger(__name__)


def check_resource_deletions(
    target: WorkspaceTarget,
    summary: ChangeSummary,
    stored: int,
    listed: int,
    options: SnapshotOptions,
) -> None:
    """The job rules, applied to resources on their own: a workspace can hold many jobs and a
    few resources, and an empty resource listing is as likely a glitch as an empty job list."""
    _guard_deletions(target, "resources", len(summary.resources_removed), stored, listed, options)


def check_deletions(
    target: WorkspaceTarget,
    summary: ChangeSummary,
    stored_jobs: int,
    listed_jobs: int,
    options: SnapshotOptions,
) -> None:
    """Refuse snapshots that look like a listing glitch rather than real deletions."""
    _guard_deletions(target, "jobs", len(summary.jobs_removed), stored_jobs, listed_jobs, options)


def _guard_deletions(
    target: WorkspaceTarget,
    kind: str,
    removed: int,
    stored: int,
    listed: int,
    options: SnapshotOptions,
) -> None:
    if options.allow_mass_delete or stored == 0:
        return
    if listed == 0:
        raise SnapshotRefused(
            f"{target.label}: the service listed no {kind} but the repository holds "
            f"{stored}; refusing to record them all as deleted (if they really were "
            "deleted, run again with --allow-mass-delete)"
        )
    if removed / stored > options.max_delete_fraction:
        raise SnapshotRefused(
            f"{target.label}: {removed} of {stored} {kind} would be deleted, more than "
            f"safety.max_delete_fraction ({options.max_delete_fraction:g}); refusing (if this "
            "is real, run again with --allow-mass-delete)"
        )


def plan_commits(
    workspace_dir: Path,
    staged: StagedWorkspace,
    changes: ChangeSet,
    summary: ChangeSummary,
    options: SnapshotOptions,
) -> tuple[list[CommitGroup], dict[str, str]]:
    """The commits recording ``changes`` and the job → user map their messages show.

    Call before applying: a workspace's first snapshot (no index yet) imports what exists
    rather than recording anyone's edit: backupd authors it (its message still names who
    last saved each job).
    """
    job_users = saved_by(summary, changes, staged.editors)
    rank: dict[str, int] = {}  # a user's commit comes after those of users who saved earlier
    for job in staged.jobs if options.commit_per_author else ():  # one commit: no order
        if (user := job_users.get(job.name)) is not None:
            rank[user] = max(rank.get(user, 0), job.last_update_time or 0)
    first = not (workspace_dir / INDEX_FILE).exists()
    # Per path only when commits are split by it: a first snapshot changes ~5 paths a job.
    users = {} if first else attribute(changes, job_users)
    groups = split_commits(changes, users, per_author=options.commit_per_author, rank=rank)
    return groups, job_users


def apply_staged(
    repo: GitRepo,
    target: WorkspaceTarget,
    staged: StagedWorkspace,
    options: SnapshotOptions,
    identity: Identity,
    *,
    dirty: bool | None = None,
) -> tuple[ChangeSet, ChangeSummary, str | None]:
    """Apply a staged tree to the workspace folder and commit; no commit when nothing changed.

    ``dirty``: whether the folder differs from HEAD, when the caller looked already.
    """
    folder = target.label
    # Whatever an interrupted run left in this folder is not history: start from HEAD.
    if repo.folder_dirty(folder) if dirty is None else dirty:
        repo.reset_folder(folder)
    workspace_dir = repo.path / folder
    changes = staged.changes.change_set()
    # Noise (volatile fields, key order, number spelling) keeps the stored bytes.
    changes = keep_equivalent(changes, staged.tree, workspace_dir, options.volatile)
    if not changes.has_content_changes:
        return ChangeSet(unchanged_count=changes.unchanged_count), ChangeSummary(), None
    summary = summarise(changes)
    check_deletions(target, summary, staged.stored_jobs, len(staged.jobs), options)
    check_resource_deletions(
        target, summary, staged.stored_resources, staged.resource_count, options
    )
    groups, job_users = plan_commits(workspace_dir, staged, changes, summary, options)
    log(
        logger,
        "snapshot.apply",
        level=logging.DEBUG,
        workspace=target.label,
        added=len(changes.added),
        modified=len(changes.modified),
        removed=len(changes.removed),
    )
    try:
        apply_changes(staged.tree, workspace_dir, changes)
        sha = None
        for group in groups:
            paths = (f"{folder}/{path}" for path in group.changes.paths)
            repo.stage(paths, blobs_stored=staged.blobs_stored)
            # One commit (the usual case) records the whole change: its summary is made.
            done = summary if group.changes is changes else summarise(group.changes)
            message = commit_message(folder, done, users=job_users)
            author = identity if group.user is None else identity_for(group.user, options.authors)
            sha = repo.commit(message, author=author, committer=identity, folder=folder) or sha
    except (BackupdError, OSError) as error:
        # A half-applied tree (disk full, git failure) must not stay behind as if it were true.
        with contextlib.suppress(BackupdError, OSError):
            repo.reset_folder(folder)
        if isinstance(error, OSError):
            raise RepoError(f"cannot write {workspace_dir}: {describe_os_error(error)}") from error
        raise
    return changes, summary, sha
