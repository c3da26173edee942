"""Applying a staged workspace to the repository and committing it (under the lock).

The deletion guards run here, on the change about to be committed; a half-applied folder
is reset, never left behind as if it were true.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from backupd.errors import (
    BackupdError,
    RepoError,
    SnapshotRefused,
    describe_os_error,
)
from backupd.logs import log
from backupd.model import WorkspaceTarget
from backupd.snapshot.deletions import ListCheck
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
from backupd.store.layout import INDEX_FILE, JOB_SUFFIX
from backupd.store.renames import renamed_jobs
from backupd.store.summary import MOVED, ChangeSummary, commit_message, shown, summarise
from backupd.store.tree import ChangeSet, apply_changes
from backupd.store.volatile import keep_equivalent

logger = logging.getLogger(__name__)

FEW_DELETIONS = 2  # deletions of one list the mass-deletion guard always lets through


def check_lists(
    target: WorkspaceTarget, checks: Sequence[ListCheck], options: SnapshotOptions
) -> None:
    """Refuse a snapshot that would delete most of one list (BATCH jobs, REAL_TIME jobs,
    scripts, resources), each on its own: real-time jobs can be a small share of a workspace,
    and a few resources can sit beside thousands of jobs. The deletions were proven by the
    service; this guard asks for intent (--allow-mass-delete) when they are massive."""
    for check in checks:
        guard_deletions(target, check.kind, check.gone, check.stored, check.listed, options)


def guard_deletions(
    target: WorkspaceTarget,
    kind: str,
    removed: int,
    stored: int,
    listed: int,
    options: SnapshotOptions,
) -> None:
    """The mass-deletion guard for one list: ``removed`` of its ``stored`` items would go.

    A deletion or two is never massive: a list of one real-time job may lose it.
    """
    if options.allow_mass_delete or stored == 0 or removed <= FEW_DELETIONS:
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
    job_users = saved_by(summary, changes, staged.editors, staged.names)
    renamed = dict(summary.jobs_renamed)
    rank: dict[str, int] = {}  # a user's commit comes after those of users who saved earlier
    for job in staged.jobs if options.commit_per_author else ():  # one commit: no order
        if (user := job_users.get(job.name)) is not None:
            rank[user] = max(rank.get(user, 0), job.last_update_time or 0)
    first = not (workspace_dir / INDEX_FILE).exists()
    # Per path only when commits are split by it: a first snapshot changes ~5 paths a job.
    users = {} if first else attribute(changes, job_users, staged.names, renamed)
    groups = split_commits(changes, users, per_author=options.commit_per_author, rank=rank)
    return groups, job_users


MAX_MOVES_LISTED = 200


def commit_moves(
    repo: GitRepo, target: WorkspaceTarget, staged: StagedWorkspace, identity: Identity
) -> str | None:
    """Move what an older backupd stored under other paths to where the name mapping puts
    it, content unchanged, in a commit of its own that says so: git sees renames, and
    ``git log --follow`` goes on past them. The index moves with them."""
    folder = target.label
    base = repo.path / folder
    try:
        for old, new in staged.moves:
            destination = base / new
            destination.parent.mkdir(parents=True, exist_ok=True)
            (base / old).replace(destination)
            _prune_empty(base / old, base)
        if staged.moved_index is not None:
            (base / INDEX_FILE).write_bytes(staged.moved_index)
        paths = [f"{folder}/{path}" for pair in staged.moves for path in pair]
        repo.stage([*paths, f"{folder}/{INDEX_FILE}"], blobs_stored=False)
        sha = repo.commit(
            moves_message(folder, staged.moves), author=identity, committer=identity, folder=folder
        )
    except (BackupdError, OSError) as error:
        with contextlib.suppress(BackupdError, OSError):
            repo.reset_folder(folder)
        if isinstance(error, OSError):
            raise RepoError(f"cannot move files in {base}: {describe_os_error(error)}") from error
        raise
    log(logger, "snapshot.moved", workspace=folder, files=len(staged.moves), commit=sha or "none")
    return sha


def moves_message(folder: str, moves: Sequence[tuple[str, str]]) -> str:
    lines = [
        f"{folder}: {len(moves)} files {MOVED}",
        "",
        "backupd stores every DataArts name through one name -> path mapping, so that this",
        "repository checks out on Linux, macOS and Windows (see README.md). These files",
        "keep their content; only their paths change (git log --follow goes past this):",
        "",
    ]
    for old, new in moves[:MAX_MOVES_LISTED]:
        lines.append(f"  {shown(old)} -> {shown(new)}")
    if len(moves) > MAX_MOVES_LISTED:
        lines.append(f"  … and {len(moves) - MAX_MOVES_LISTED} more")
    return "\n".join(lines) + "\n"


def _prune_empty(path: Path, stop: Path) -> None:
    folder = path.parent
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


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
    moved = commit_moves(repo, target, staged, identity) if staged.moves else None
    changes = staged.changes.change_set()
    # Noise (volatile fields, key order, number spelling) keeps the stored bytes.
    changes = keep_equivalent(changes, staged.tree, workspace_dir, options.volatile)
    if not changes.has_content_changes:
        return ChangeSet(unchanged_count=changes.unchanged_count), ChangeSummary(), moved
    # A job that vanished and one that appeared may be one job renamed (same id, or the
    # same definition but for its name): the summary says so, and one commit holds both.
    renames = renamed_jobs(
        changes,
        staged.tree,
        workspace_dir,
        staged.names,
        options.volatile.by_suffix.get(JOB_SUFFIX, ()),
    )
    summary = summarise(changes, staged.names, renames)
    check_lists(target, staged.checks, options)
    groups, job_users = plan_commits(workspace_dir, staged, changes, summary, options)
    log(
        logger,
        "snapshot.apply",
        level=logging.DEBUG,
        workspace=target.label,
        added=len(changes.added),
        modified=len(changes.modified),
        removed=len(changes.removed),
        renamed=len(summary.jobs_renamed),
    )
    try:
        apply_changes(staged.tree, workspace_dir, changes)
        sha = moved
        for group in groups:
            paths = (f"{folder}/{path}" for path in group.changes.paths)
            repo.stage(paths, blobs_stored=staged.blobs_stored)
            # One commit (the usual case) records the whole change: its summary is made.
            done = (
                summary
                if group.changes is changes
                else summarise(group.changes, staged.names, summary.jobs_renamed)
            )
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
