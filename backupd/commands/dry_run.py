"""`backupd snapshot --dry-run`: list every workspace and compare with the repository.

Lists jobs, scripts and resources (the same calls a snapshot starts with), exports nothing,
writes nothing and takes no lock, so it also runs next to a working daemon. It compares
names with the last commit (HEAD) — what is new, what would be recorded as deleted, whether
the mass-deletion guard would refuse — and, from the previous snapshot's index, which jobs
were saved in DataArts since. Whether a job's *content* changed (a script edited apart from
its job, say) is only known by exporting it, which is what a snapshot does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupd.config import Config, SourceConfig
from backupd.dataarts.client import JOB_TYPES
from backupd.dataarts.source import JobSource
from backupd.errors import BackupdError, RepoError, SnapshotRefused
from backupd.model import WorkspaceTarget
from backupd.snapshot.apply import guard_deletions
from backupd.snapshot.discovery import preview
from backupd.snapshot.optional import RESOURCES, OptionalParts
from backupd.snapshot.run import listed_targets
from backupd.store.gitrepo import GitRepo
from backupd.store.index import WorkspaceIndex
from backupd.store.layout import INDEX_FILE, read_layout
from backupd.store.summary import shown as as_shown
from backupd.wiring import make_client, snapshot_options


@dataclass(frozen=True)
class Stored:
    """What HEAD holds for one workspace folder."""

    jobs: frozenset[str] = frozenset()
    scripts: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    saved_at: dict[str, object] | None = None  # job → lastUpdateTime of the last snapshot
    job_types: dict[str, str] = field(default_factory=dict)  # job → BATCH / REAL_TIME


@dataclass(frozen=True)
class WorkspacePlan:
    label: str
    listed_jobs: int = 0
    stored_jobs: int = 0
    new_jobs: tuple[str, ...] = ()
    gone_jobs: tuple[str, ...] = ()
    saved_jobs: tuple[str, ...] = ()  # lastUpdateTime moved since the last snapshot
    new_scripts: tuple[str, ...] = ()
    gone_scripts: tuple[str, ...] = ()
    new_resources: tuple[str, ...] = ()
    gone_resources: tuple[str, ...] = ()
    refused: str | None = None  # the mass-deletion guard's reason
    error: str | None = None
    warning: str | None = None  # an optional part that could not be listed


def stored(repo: GitRepo | None, folder: str) -> Stored:
    """What HEAD holds for ``folder``, by DataArts name (its index says where each is)."""
    if repo is None:
        return Stored()
    prefix = f"{folder}/"
    files = sorted(p[len(prefix) :] for p in repo.tracked_files(folder) if p.startswith(prefix))
    content = repo.read_file("HEAD", f"{folder}/{INDEX_FILE}")
    index: WorkspaceIndex | None = None
    if content is not None:
        try:
            index = WorkspaceIndex.parse(content)
        except ValueError:
            index = None
    layout = read_layout(files, index)
    saved_at: dict[str, object] | None = None
    job_types: dict[str, str] = {}
    if index is not None:
        saved_at = {name: record.last_update_time for name, record in index.jobs.items()}
        job_types = {name: str(record.job_type) for name, record in index.jobs.items()}
    return Stored(
        jobs=frozenset(layout.jobs),
        scripts=frozenset(layout.scripts),
        resources=frozenset(layout.resources),
        saved_at=saved_at,
        job_types=job_types,
    )


def plan_workspace(
    client: JobSource,
    target: WorkspaceTarget,
    before: Stored,
    config: Config,
    source: SourceConfig,
) -> WorkspacePlan:
    resources_lister = OptionalParts().lister(
        RESOURCES, client.list_resources, enabled=source.resources
    )
    try:
        jobs = client.list_jobs(target.workspace_id)
        listed: list[dict[str, Any]] = client.list_scripts(target.workspace_id)
        scripts = {str(script["name"]) for script in listed}
        resources = {str(r["name"]) for r in resources_lister(target.workspace_id)}
    except BackupdError as error:
        return WorkspacePlan(target.label, error=str(error))
    if not resources_lister.listed:  # not asked, or not available: nothing to compare
        resources = set(before.resources)
    names = {job.name for job in jobs}
    gone = tuple(sorted(before.jobs - names))
    saved: tuple[str, ...] = ()
    if before.saved_at is not None:
        saved = tuple(
            sorted(
                job.name
                for job in jobs
                if job.name in before.jobs and before.saved_at.get(job.name) != job.last_update_time
            )
        )
    refused = None
    options = snapshot_options(config, source, allow_mass_delete=False)
    # Each list on its own, as a snapshot guards them (once the service confirmed the
    # deletions: a dry run asks nothing, so gone here means not listed).
    lists = [
        (
            f"{job_type} jobs",
            {n for n in before.jobs if before.job_types.get(n, JOB_TYPES[0]) == job_type},
            {job.name for job in jobs if job.job_type == job_type},
        )
        for job_type in JOB_TYPES
    ]
    lists += [("scripts", set(before.scripts), scripts)]
    lists += [("resources", set(before.resources), resources)]
    try:
        for kind, had, now in lists:
            removed = len(had - now - names)
            guard_deletions(target, kind, removed, len(had), len(now), options)
    except SnapshotRefused as error:
        refused = str(error)
    return WorkspacePlan(
        target.label,
        listed_jobs=len(jobs),
        stored_jobs=len(before.jobs),
        new_jobs=tuple(sorted(names - before.jobs)),
        gone_jobs=gone,
        saved_jobs=saved,
        new_scripts=tuple(sorted(scripts - before.scripts)),
        gone_scripts=tuple(sorted(before.scripts - scripts)),
        new_resources=tuple(sorted(resources - before.resources)),
        gone_resources=tuple(sorted(before.resources - resources)),
        refused=refused,
        warning=resources_lister.problem(source.name),
    )


def _open(path: Path, branch: str) -> GitRepo | None:
    try:
        return GitRepo.open_existing(path, branch=branch)
    except RepoError:
        return None  # no snapshot yet: everything listed is new


def dry_run(config: Config, only: Iterable[str] = ()) -> list[WorkspacePlan]:
    """A plan per chosen workspace (``only`` as for `backupd snapshot -w`)."""
    wanted = set(only)
    plans: list[WorkspacePlan] = []
    repo = _open(config.repository.path, config.repository.branch)
    try:
        for source in config.sources:
            with make_client(source) as client:
                if source.discovers:
                    try:
                        found = preview(client, config.repository.path, source).targets()
                    except BackupdError as error:
                        plans.append(WorkspacePlan(f"{source.name}/*", error=str(error)))
                        continue
                else:
                    found = listed_targets(source)
                for target in found:
                    if wanted and not {target.label, target.folder, target.source} & wanted:
                        continue
                    before = stored(repo, target.label)
                    plans.append(plan_workspace(client, target, before, config, source))
    finally:
        if repo is not None:
            repo.close()
    return plans


def _listing(title: str, names: tuple[str, ...], limit: int = 10) -> str:
    shown = ", ".join(as_shown(name) for name in names[:limit]) + (
        f", … ({len(names) - limit} more)" if len(names) > limit else ""
    )
    return f"  {title} ({len(names)}): {shown}"


def format_plans(plans: list[WorkspacePlan]) -> list[str]:
    lines: list[str] = []
    for plan in plans:
        if plan.error is not None:
            lines.append(f"{plan.label}: FAILED to list: {plan.error}")
            continue
        lines.append(
            f"{plan.label}: {plan.listed_jobs} jobs listed, {plan.stored_jobs} in the repository"
        )
        for title, names in (
            ("new jobs", plan.new_jobs),
            ("jobs gone (recorded as deleted once the service confirms it)", plan.gone_jobs),
            ("jobs saved in DataArts since the last snapshot", plan.saved_jobs),
            ("new scripts", plan.new_scripts),
            ("scripts gone", plan.gone_scripts),
            ("new resources", plan.new_resources),
            ("resources gone", plan.gone_resources),
        ):
            if names:
                lines.append(_listing(title, names))
        if plan.refused:
            lines.append(f"  would be REFUSED: {plan.refused}")
        if plan.warning:
            lines.append(f"  {plan.warning}")
        if not any((plan.new_jobs, plan.gone_jobs, plan.new_scripts, plan.gone_scripts)) and not (
            plan.new_resources or plan.gone_resources or plan.saved_jobs
        ):
            lines.append("  no job, script or resource added or removed")
    lines.append(
        "dry run: nothing was exported, written or committed. Whether the content of existing "
        "jobs and scripts changed is only known by exporting them (run without --dry-run)."
    )
    return lines
