"""One snapshot of one workspace: list → export batches → unpack/normalise → apply → commit.

A snapshot is all-or-nothing. Everything up to the complete, normalised tree happens in a
staging folder outside the repository; the working tree is touched only once that tree
exists, and only the changed files are written. A failure anywhere before that leaves the
repository exactly as it was.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from backupd.dataarts.client import DataArtsClient, JobSummary
from backupd.errors import ArchiveError, BackupdError, SnapshotRefused
from backupd.logs import log
from backupd.observer import NO_OBSERVER, SnapshotObserver
from backupd.store.archive import ArchiveLimits, extract_archive
from backupd.store.authors import CommitGroup, attribute, identity_for, split_commits
from backupd.store.gitrepo import GitRepo, Identity
from backupd.store.normalise import (
    canonical_json,
    normalise_file,
    parse_json,
    script_view,
)
from backupd.store.summary import ChangeSummary, commit_message, job_of, summarise
from backupd.store.tree import META_DIR, ChangeSet, apply_changes, plan_changes
from backupd.store.volatile import VolatileRules, keep_equivalent

logger = logging.getLogger(__name__)

INDEX_FILE = f"{META_DIR}/index.json"
RESOURCES_DIR = "resources"  # resources/<name>.resource: definitions from the resource list


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
class SnapshotOptions:
    export_depend: bool = True
    batch_size: int = 100
    archive_limits: ArchiveLimits = ArchiveLimits()
    max_archive_bytes: int = 1024**3
    staging_root: Path | None = None
    max_delete_fraction: float = 0.5
    allow_mass_delete: bool = False
    volatile: VolatileRules = VolatileRules()
    commit_per_author: bool = False
    # DataArts user → git identity; users not listed get default_identity().
    authors: Mapping[str, Identity] = field(default_factory=dict)


@dataclass(frozen=True)
class StagedWorkspace:
    """A complete, normalised workspace tree in staging, not yet applied."""

    tree: Path
    jobs: tuple[JobSummary, ...]
    script_count: int
    resource_count: int = 0


@dataclass(frozen=True)
class SnapshotResult:
    """How one workspace snapshot went.

    ``gone``: a discovered workspace that DataArts no longer lists; it was not snapshotted
    and its folder was kept (``ok`` stays True: nothing failed, but someone should look).
    """

    target: WorkspaceTarget
    ok: bool
    jobs: int = 0
    scripts: int = 0
    changes: ChangeSet = field(default_factory=ChangeSet)
    summary: ChangeSummary = field(default_factory=ChangeSummary)
    commit: str | None = None
    error: str | None = None
    error_type: type[BackupdError] | None = None  # tells credential and clock problems apart
    duration: float = 0.0
    resources: int = 0
    gone: bool = False


def batches(names: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(names), size):
        yield names[start : start + size]


# --- staging (network and disk, no repository access) -----------------------------------------


def stage_workspace(
    client: DataArtsClient,
    target: WorkspaceTarget,
    options: SnapshotOptions,
    staging: Path,
    observer: SnapshotObserver = NO_OBSERVER,
) -> StagedWorkspace:
    """Build the workspace's complete normalised tree under ``staging/tree``."""
    tree = staging / "tree"
    tree.mkdir(parents=True)
    jobs = client.list_jobs(target.workspace_id)
    scripts = client.list_scripts(target.workspace_id)
    resources = client.list_resources(target.workspace_id)
    log(
        logger,
        "snapshot.listed",
        workspace=target.label,
        jobs=len(jobs),
        scripts=len(scripts),
        resources=len(resources),
    )

    names = [job.name for job in jobs]
    total_batches = (len(names) + options.batch_size - 1) // options.batch_size
    observer.listed(target, len(names), total_batches)
    for number, batch in enumerate(batches(names, options.batch_size), start=1):
        zip_path = staging / f"batch-{number}.zip"
        size = client.export_jobs(
            target.workspace_id,
            batch,
            zip_path,
            export_depend=options.export_depend,
            max_bytes=options.max_archive_bytes,
        )
        unpacked = staging / f"batch-{number}"
        files = extract_archive(zip_path, unpacked, options.archive_limits)
        zip_path.unlink()
        ingest_export(unpacked, files, tree, batch, archive_name=f"batch {number}")
        shutil.rmtree(unpacked)
        log(
            logger,
            "snapshot.batch",
            level=logging.DEBUG,
            workspace=target.label,
            batch=f"{number}/{total_batches}",
            jobs=len(batch),
            bytes=size,
        )
        observer.exported(target, number, total_batches, len(batch), size)

    for script in scripts:
        write_standalone_script(tree, script)
    # After the exports: the listing is the authority on every resource of the workspace.
    for resource in resources:
        write_resource(tree, resource)
    write_index(tree, jobs)
    return StagedWorkspace(
        tree=tree, jobs=tuple(jobs), script_count=len(scripts), resource_count=len(resources)
    )


def ingest_export(
    unpacked: Path, files: Sequence[str], tree: Path, requested: Sequence[str], *, archive_name: str
) -> None:
    """Normalise one unpacked export into the tree; the export must hold exactly ``requested``."""
    exported: set[str] = set()
    for relative in files:
        parts = PurePosixPath(relative).parts
        if parts[0] == "jobs" and relative.endswith(".job"):
            exported.add(parts[1] if len(parts) == 3 else PurePosixPath(parts[1]).stem)
    missing = sorted(set(requested) - exported)
    unexpected = sorted(exported - set(requested))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"lacks {len(missing)} requested job(s): {', '.join(missing[:5])}")
        if unexpected:
            problems.append(f"holds jobs not asked for: {', '.join(unexpected[:5])}")
        raise ArchiveError(f"{archive_name}: export {'; '.join(problems)}")
    for relative in files:
        content = normalise_file(relative, (unpacked / relative).read_bytes())
        destination = tree / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(content)
        if relative.endswith(".script"):
            write_view(destination, content)


def write_view(script_file: Path, content: bytes) -> None:
    """Write the readable view of a stored .script next to it (unless a real file is there)."""
    try:
        view = script_view(parse_json(content))
    except ValueError:
        return
    if view is None:
        return
    extension, text = view
    target = script_file.with_suffix(extension)
    if not target.exists():
        target.write_bytes(text)


def write_standalone_script(tree: Path, script: dict[str, Any]) -> None:
    name = str(script["name"])
    if not _safe_name(name):
        raise ArchiveError(f"script list: unusable script name {name!r}")
    destination = tree / "scripts" / f"{name}.script"
    destination.parent.mkdir(parents=True, exist_ok=True)
    content = canonical_json(script)
    destination.write_bytes(content)
    write_view(destination, content)


def write_resource(tree: Path, resource: dict[str, Any]) -> None:
    """Store a resource definition as listed (the OBS object it points to stays in OBS)."""
    name = str(resource["name"])
    if not _safe_name(name):
        raise ArchiveError(f"resource list: unusable resource name {name!r}")
    destination = tree / RESOURCES_DIR / f"{name}.resource"
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(canonical_json(resource))


def _safe_name(name: str) -> bool:
    return (
        bool(name)
        and name not in {".", ".."}
        and not any(c in name for c in "/\\\0")
        and len(name.encode("utf-8")) <= 240
    )


def write_index(tree: Path, jobs: Sequence[JobSummary]) -> None:
    index = {
        "jobs": {
            job.name: {
                "jobType": job.job_type,
                "lastUpdateTime": job.last_update_time,
                "lastUpdateUser": job.last_update_user,
            }
            for job in jobs
        }
    }
    destination = tree / INDEX_FILE
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(canonical_json(index))


# --- applying (repository, under the lock) ----------------------------------------------------


def read_index(workspace_dir: Path) -> dict[str, dict[str, Any]]:
    """Job metadata recorded by the previous snapshot (empty when there is none)."""
    try:
        data = parse_json((workspace_dir / INDEX_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return jobs if isinstance(jobs, dict) else {}


def editors(workspace_dir: Path, jobs: Sequence[JobSummary]) -> dict[str, str]:
    """Who saved each job since the last snapshot (only jobs whose lastUpdateTime moved)."""
    previous = read_index(workspace_dir)
    return {
        job.name: job.last_update_user
        for job in jobs
        if job.last_update_user
        and (previous.get(job.name) or {}).get("lastUpdateTime") != job.last_update_time
    }


def stored_job_count(repo: GitRepo, folder: str) -> int:
    prefix = f"{folder}/jobs/"
    jobs = {
        path[len(prefix) :].split("/", 1)[0]
        for path in repo.tracked_files(f"{folder}/jobs")
        if path.endswith(".job")
    }
    return len(jobs)


def stored_resource_count(repo: GitRepo, folder: str) -> int:
    return sum(
        1 for path in repo.tracked_files(f"{folder}/{RESOURCES_DIR}") if path.endswith(".resource")
    )


def check_resource_deletions(
    target: WorkspaceTarget,
    summary: ChangeSummary,
    stored: int,
    listed: int,
    options: SnapshotOptions,
) -> None:
    """The job rules, applied to resources on their own: a workspace can hold many jobs and a
    few resources, and an empty resource listing is as likely a glitch as an empty job list."""
    if options.allow_mass_delete or stored == 0:
        return
    if listed == 0:
        raise SnapshotRefused(
            f"{target.label}: the service listed no resources but the repository holds "
            f"{stored}; refusing to record them all as deleted (if they really were deleted, "
            "run again with --allow-mass-delete)"
        )
    removed = len(summary.resources_removed)
    if removed / stored > options.max_delete_fraction:
        raise SnapshotRefused(
            f"{target.label}: {removed} of {stored} resources would be deleted, more than "
            f"safety.max_delete_fraction ({options.max_delete_fraction:g}); refusing (if this "
            "is real, run again with --allow-mass-delete)"
        )


def check_deletions(
    target: WorkspaceTarget,
    summary: ChangeSummary,
    stored_jobs: int,
    listed_jobs: int,
    options: SnapshotOptions,
) -> None:
    """Refuse snapshots that look like a listing glitch rather than real deletions."""
    if options.allow_mass_delete or stored_jobs == 0:
        return
    if listed_jobs == 0:
        raise SnapshotRefused(
            f"{target.label}: the service listed no jobs but the repository holds "
            f"{stored_jobs}; refusing to record them all as deleted (if they really were "
            "deleted, run again with --allow-mass-delete)"
        )
    removed = len(summary.jobs_removed)
    if removed / stored_jobs > options.max_delete_fraction:
        raise SnapshotRefused(
            f"{target.label}: {removed} of {stored_jobs} jobs would be deleted, more than "
            f"safety.max_delete_fraction ({options.max_delete_fraction:g}); refusing (if this "
            "is real, run again with --allow-mass-delete)"
        )


def plan_commits(
    workspace_dir: Path, staged: StagedWorkspace, changes: ChangeSet, options: SnapshotOptions
) -> tuple[list[CommitGroup], dict[str, str]]:
    """The commits recording ``changes`` and the job → user map their messages show.

    Call before applying: it reads the previous snapshot's index. A workspace's first
    snapshot imports what exists rather than recording anyone's edit: backupd authors it
    (its message still names who last saved each job).
    """
    users = attribute(changes, editors(workspace_dir, staged.jobs))
    job_users = {
        job: user for path, user in users.items() if user and (job := job_of(path)) is not None
    }
    saved_at = {job.name: job.last_update_time or 0 for job in staged.jobs}
    rank: dict[str, int] = {}  # a user's commit comes after those of users who saved earlier
    for job, user in job_users.items():
        rank[user] = max(rank.get(user, 0), saved_at.get(job, 0))
    first = not (workspace_dir / INDEX_FILE).exists()
    groups = split_commits(
        changes, {} if first else users, per_author=options.commit_per_author, rank=rank
    )
    return groups, job_users


def apply_staged(
    repo: GitRepo,
    target: WorkspaceTarget,
    staged: StagedWorkspace,
    options: SnapshotOptions,
    identity: Identity,
) -> tuple[ChangeSet, ChangeSummary, str | None]:
    """Apply a staged tree to the workspace folder and commit; no commit when nothing changed."""
    folder = target.label
    # Whatever an interrupted run left in this folder is not history: start from HEAD.
    repo.reset_folder(folder)
    workspace_dir = repo.path / folder
    changes = plan_changes(staged.tree, workspace_dir)
    # Noise (volatile fields, key order, number spelling) keeps the stored bytes.
    changes = keep_equivalent(changes, staged.tree, workspace_dir, options.volatile)
    if not changes.has_content_changes:
        return ChangeSet(unchanged_count=changes.unchanged_count), ChangeSummary(), None
    summary = summarise(changes)
    check_deletions(target, summary, stored_job_count(repo, folder), len(staged.jobs), options)
    check_resource_deletions(
        target, summary, stored_resource_count(repo, folder), staged.resource_count, options
    )
    groups, job_users = plan_commits(workspace_dir, staged, changes, options)
    try:
        apply_changes(staged.tree, workspace_dir, changes)
        sha = None
        for group in groups:
            repo.stage([f"{folder}/{path}" for path in group.changes.paths])
            message = commit_message(folder, summarise(group.changes), users=job_users)
            author = identity if group.user is None else identity_for(group.user, options.authors)
            sha = repo.commit(message, author=author, committer=identity) or sha
    except (BackupdError, OSError):
        # A half-applied tree (disk full, git failure) must not stay behind as if it were true.
        with contextlib.suppress(BackupdError, OSError):
            repo.reset_folder(folder)
        raise
    return changes, summary, sha


def snapshot_workspace(
    client: DataArtsClient,
    repo: GitRepo,
    target: WorkspaceTarget,
    options: SnapshotOptions,
    identity: Identity,
    observer: SnapshotObserver = NO_OBSERVER,
) -> SnapshotResult:
    """Snapshot one workspace; failures are returned, not raised, so others still run."""
    started = time.monotonic()
    root = options.staging_root
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="backupd-", dir=root))
    try:
        staged = stage_workspace(client, target, options, staging, observer)
        changes, summary, sha = apply_staged(repo, target, staged, options, identity)
    except BackupdError as error:
        log(
            logger, "snapshot.failed", level=logging.ERROR, workspace=target.label, error=str(error)
        )
        return SnapshotResult(
            target,
            ok=False,
            error=str(error),
            error_type=type(error),
            duration=time.monotonic() - started,
        )
    except OSError as error:
        message = f"{error.strerror or error} ({error.filename or 'file system'})"
        log(logger, "snapshot.failed", level=logging.ERROR, workspace=target.label, error=message)
        return SnapshotResult(target, ok=False, error=message, duration=time.monotonic() - started)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = SnapshotResult(
        target,
        ok=True,
        jobs=len(staged.jobs),
        scripts=staged.script_count,
        resources=staged.resource_count,
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
