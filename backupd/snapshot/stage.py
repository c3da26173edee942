"""Staging: the workspace's next state, built outside the repository.

List (jobs, scripts, resources), plan, export and unpack into a staging folder as a
difference from the last commit. Nothing here writes to the repository's working tree.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupd.dataarts.client import JobSummary
from backupd.dataarts.source import JobSource
from backupd.logs import log
from backupd.model import NO_OBSERVER, SnapshotObserver, WorkspaceTarget
from backupd.snapshot.deletions import (
    ListCheck,
    Prover,
    read_now,
    reconcile,
    resource_names,
    script_names,
    settle_rejected,
)
from backupd.snapshot.export import BatchExporter
from backupd.snapshot.export_queue import Lane
from backupd.snapshot.ingest import ScriptStager, stage_resources
from backupd.snapshot.optional import RESOURCES, OptionalParts
from backupd.snapshot.options import SnapshotOptions
from backupd.snapshot.plan import (
    Baseline,
    editors,
    is_full_snapshot,
    plan_exports,
)
from backupd.store.blobs import BlobWriter
from backupd.store.index import JobRecord
from backupd.store.layout import (
    INDEX_FILE,
    RESOURCES_DIR,
    StoredLayout,
    job_folder,
    read_layout,
    stored_keys,
)
from backupd.store.layout_cache import write_layout_file
from backupd.store.pathmap import folder_components
from backupd.store.staging import PendingChanges, StagedTree, StoredFiles
from backupd.store.summary import AS_STORED, PathNames, shown

logger = logging.getLogger(__name__)

LAYOUT_FILE = "layout.json"  # in the staging folder, beside the staged tree


@dataclass(frozen=True)
class StagedWorkspace:
    """The workspace's next state, staged as its difference from the last commit.

    ``tree`` holds only the files that are new or changed; ``changes`` says what to add,
    rewrite and remove (relative to the last commit once ``moves`` are made).
    """

    tree: Path
    changes: PendingChanges
    jobs: tuple[JobSummary, ...]
    script_count: int
    resource_count: int = 0
    exported: int = 0  # jobs exported (all of them in a full snapshot)
    full: bool = True
    blobs_stored: bool = False  # the files' contents are in the repository already
    # Job → who saved it, for the jobs whose lastUpdateTime moved since the last snapshot.
    editors: Mapping[str, str] = field(default_factory=dict)
    # The lists that lost items since the last commit (the deletion guards look at each).
    checks: tuple[ListCheck, ...] = ()
    # What could not be recorded (deletions not confirmed, items not exported, optional
    # parts absent): those items stay as committed, and the snapshot is partial.
    problems: tuple[str, ...] = ()
    # Paths an older backupd gave that the name mapping moves (old → new, content
    # unchanged), and the index that goes with them: committed on their own, first.
    moves: tuple[tuple[str, str], ...] = ()
    moved_index: bytes | None = None
    names: PathNames = AS_STORED  # the DataArts names of paths, for commit messages
    # Job → the lastUpdateTime the staged folder holds (None: export it again next time).
    times: Mapping[str, int | None] = field(default_factory=dict)
    # The staged folder's layout (layout_cache.write_layout_file), kept once committed.
    layout_file: Path | None = None


@dataclass
class _JobNaming:
    """Where each listed job is stored: its folder, and its files' stored names."""

    stored: StoredLayout
    tree: StagedTree
    components: dict[str, str]

    def component(self, job: str) -> str:
        return self.components[job]

    def previous_files(self, job: str) -> dict[str, str]:
        record = self.stored.jobs.get(job)
        if record is None:
            return {}
        folder = job_folder(record.folder(job))
        files = [path[len(folder) + 1 :] for path in self.tree.stored_paths(folder)]
        return stored_keys(job, record, files)


def _moved(files: StoredFiles, moves: Mapping[str, str]) -> StoredFiles:
    if not moves:
        return files
    return StoredFiles(
        (moves.get(path, path), files.id_at(position)) for position, path in enumerate(files)
    )


def job_weight(jobs: int, stored_files: int) -> int:
    """What a workspace holds in memory while in flight, in jobs: its jobs, or a quarter of
    its stored files where those are more (a job's folder holds about four)."""
    return max(jobs, stored_files // 4)


def stage_workspace(
    client: JobSource,
    target: WorkspaceTarget,
    options: SnapshotOptions,
    staging: Path,
    baseline: Baseline | None = None,
    *,
    now: float | None = None,
    observer: SnapshotObserver = NO_OBSERVER,
    lane: Lane | None = None,
    blobs: BlobWriter | None = None,
    stored: StoredLayout | None = None,
    optional: OptionalParts | None = None,
) -> StagedWorkspace:
    """Stage the workspace's next state under ``staging/tree`` as a difference from ``baseline``.

    Nothing here touches the repository: the baseline (and ``stored``, whose each of its
    paths is) was read from it beforehand. What vanished from a list is recorded as deleted
    only once the service confirmed it (deletions.py); the rest is kept as committed and
    named in ``problems``.
    """
    baseline = baseline or Baseline()
    stored = stored if stored is not None else read_layout(baseline.files, None)
    baseline = dataclasses.replace(baseline, files=_moved(baseline.files, stored.moves))
    on_write = blobs.write if blobs is not None else None
    tree = StagedTree(staging / "tree", baseline.files, on_write=on_write)
    listed = stage_listings(client, target, tree, stored, options, optional)
    jobs = listed.jobs
    prover = Prover(target, options.max_proofs)
    settled = reconcile(
        client,
        prover,
        tree,
        baseline,
        stored,
        jobs,
        listed.scripts,
        listed.resources if listed.resources_listed else None,
        listed.read_again,
    )
    observer.sized(target, job_weight(len(jobs), len(baseline.files)))
    full = is_full_snapshot(options, baseline, time.time() if now is None else now)
    names = plan_exports(jobs, baseline, listed.changed_scripts, full=full, stored=stored)
    naming = _JobNaming(
        stored,
        tree,
        folder_components(
            [*(job.name for job in jobs), *(job.name for job in settled.kept_jobs)],
            {n: r.folder(n) for n, r in stored.jobs.items()},
        ),
    )
    exporting = set(names)
    for job in jobs:
        if job.name not in exporting:
            tree.keep(job_folder(naming.component(job.name)))
    del exporting  # not held while the workspace exports
    log(
        logger,
        "snapshot.listed",
        workspace=target.label,
        jobs=len(jobs),
        scripts=listed.script_count,
        resources=listed.resource_count,
        export=len(names),
        mode="full" if full else "incremental",
    )

    observer.listed(target, len(names), -(-len(names) // options.batch_size))
    exporter = BatchExporter(client, target, options, staging, tree, observer, lane, paths=naming)
    rejected = exporter.export_all(names)
    for failed in exporter.failed:  # its previous version stays
        tree.keep(job_folder(naming.component(failed)))
    problems = [*listed.problems, *settled.problems]
    if rejected:
        jobs, refused = settle_rejected(client, prover, tree, stored, jobs, rejected)
        problems += refused
    if prover.calls or prover.relists:
        log(
            logger,
            "snapshot.proofs",
            workspace=target.label,
            calls=prover.calls,
            relists=prover.relists,
            problems=len(problems),
        )
    jobs = sorted([*jobs, *settled.kept_jobs], key=lambda job: job.name)
    exported = set(names) - set(rejected) - set(exporter.failed)
    records: dict[str, JobRecord] = {}
    for job in jobs:
        old = stored.jobs.get(job.name)
        if job.name in exporter.failed:
            if old is not None:  # no time: the next snapshot exports it again
                records[job.name] = dataclasses.replace(old, last_update_time=None)
            continue
        folder = naming.component(job.name)
        files = exporter.exported_as.get(job.name, {}) if job.name in exported else None
        if files is None:
            files = dict(old.files) if old is not None else {}
        records[job.name] = JobRecord(
            job.job_type,
            job.last_update_time,
            job.last_update_user,
            None if folder == job.name else folder,
            files,
        )
    now_stored = StoredLayout(
        jobs=records,
        scripts={**listed.scripts, **{n: stored.scripts[n] for n in settled.kept_scripts}},
        resources={
            **listed.resources,
            **{n: stored.resources[n] for n in settled.kept_resources},
        },
    )
    tree.put(INDEX_FILE, now_stored.index().to_bytes())
    layout_path = staging / LAYOUT_FILE
    try:  # optional: without it the next snapshot works the layout out again
        write_layout_file(now_stored, layout_path)
        layout_file: Path | None = layout_path
    except OSError:
        layout_file = None
    problems += [
        f"job {shown(job)}: could not be exported: {why}; "
        + ("its previous version is kept" if job in stored.jobs else "not stored yet")
        for job, why in sorted(exporter.failed.items())
    ]
    return StagedWorkspace(
        tree=tree.root,
        changes=tree.pending(),
        jobs=tuple(jobs),
        script_count=listed.script_count,
        resource_count=listed.resource_count,
        exported=len(exported),
        full=full,
        editors=editors(jobs, baseline.job_times),
        checks=settled.checks,
        problems=tuple(problems),
        moves=tuple(stored.moves.items()),
        moved_index=stored.index().to_bytes() if stored.moves else None,
        names=_path_names(stored, now_stored),
        times={name: record.last_update_time for name, record in records.items()},
        layout_file=layout_file,
    )


def _path_names(*layouts: StoredLayout) -> PathNames:
    """The DataArts names of the paths of the layouts before and after (removed paths are
    named by the one before)."""
    jobs: dict[str, str] = {}
    files: dict[str, str] = {}
    for layout in layouts:
        jobs.update(layout.job_names())
        files.update(layout.file_owners())
    return PathNames(jobs, files)


@dataclass(frozen=True)
class Listings:
    """A workspace's listings, its scripts and resources staged."""

    jobs: list[JobSummary]
    script_count: int
    changed_scripts: set[str]  # changed or vanished since the last commit
    scripts: dict[str, str]  # name → component
    resource_count: int
    resources: dict[str, str]  # name → component (the stored ones when not listed)
    resources_listed: bool
    problems: tuple[str, ...] = ()
    # By kind, the reading again of a list that came back empty (deletions.read_now).
    read_again: Mapping[str, Callable[[], Collection[str]]] = field(default_factory=dict)


def stage_listings(
    client: JobSource,
    target: WorkspaceTarget,
    tree: StagedTree,
    stored: StoredLayout | None = None,
    options: SnapshotOptions | None = None,
    optional: OptionalParts | None = None,
) -> Listings:
    """List the workspace, staging its scripts and resources.

    Scripts are staged as their pages arrive; resources right after the listing. Their
    listings are the authority on them, and a script that changed tells which jobs
    (holding a copy of it) must be exported again. The script names and the stager's sets
    of them end here, before the workspace exports. Resources are optional: when their
    list is turned off or unavailable, the stored ones stay as they are.
    """
    stored = stored or StoredLayout()
    workspace = target.workspace_id
    scripts = ScriptStager(tree, stored.scripts)
    resources = (optional or OptionalParts()).lister(
        RESOURCES,
        client.list_resources,
        enabled=options.resources if options is not None else True,
    )
    # An empty list the last commit holds nothing of is read once more (deletions.py):
    # now, beside the job listing, rather than after it.
    read_again: dict[str, Callable[[], Collection[str]]] = {}

    def list_scripts(workspace_id: str) -> list[str]:
        names = client.list_scripts(workspace_id, keep=scripts.stage)
        if not names and not stored.scripts:
            again = functools.partial(script_names, client, workspace_id)
            read_again["scripts"] = read_now(again)
        return names

    def list_resources(workspace_id: str) -> list[dict[str, Any]]:
        rows = resources(workspace_id)
        if resources.listed and not rows and not stored.resources:
            again = functools.partial(resource_names, client, workspace_id)
            read_again["resources"] = read_now(again)
        return rows

    jobs, listed_scripts, rows = list_workspace(client, workspace, list_scripts, list_resources)
    changed_scripts = scripts.finish(listed_scripts)
    if resources.listed:
        resource_components = stage_resources(tree, rows, stored.resources)
    else:
        tree.keep(RESOURCES_DIR)
        resource_components = dict(stored.resources)
    problem = resources.problem(target.source)
    return Listings(
        jobs=jobs,
        script_count=len(listed_scripts),
        changed_scripts=changed_scripts,
        scripts={n: scripts.components[n] for n in listed_scripts},
        resource_count=len(rows),
        resources=resource_components,
        resources_listed=resources.listed,
        problems=(problem,) if problem is not None else (),
        read_again=read_again,
    )


def list_workspace(
    client: JobSource,
    workspace_id: str,
    list_scripts: Callable[[str], list[str]],
    list_resources: Callable[[str], list[dict[str, Any]]],
) -> tuple[list[JobSummary], list[str], list[dict[str, Any]]]:
    """Jobs, script names (``list_scripts`` stages each script as its page arrives) and
    resources, listed side by side: each is a chain of pages that waits on the network, and
    the workspace's exports wait for all three.

    Scripts and resources wait until some call proved the credentials (or the job listing
    ended): wrong credentials or a skewed clock are then reported once, for the job list.
    """
    jobs_ended = threading.Event()

    def when_allowed(listing: Callable[[str], list[Any]]) -> list[Any]:
        while not client.credentials_proven.wait(0.02):
            if jobs_ended.is_set():
                break
        if jobs_failed:
            return []  # not asked: the snapshot fails with the job list's error
        return listing(workspace_id)

    jobs_failed: list[bool] = []
    with ThreadPoolExecutor(2, thread_name_prefix="listing") as pool:
        # In copies of this context: their calls keep the workspace's rank (CALL_RANK).
        scripts = pool.submit(contextvars.copy_context().run, when_allowed, list_scripts)
        resources = pool.submit(contextvars.copy_context().run, when_allowed, list_resources)
        try:
            jobs = client.list_jobs(workspace_id)
        except BaseException:
            jobs_failed.append(True)
            raise
        finally:
            jobs_ended.set()
        return jobs, scripts.result(), resources.result()
