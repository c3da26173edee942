"""Staging: the workspace's next state, built outside the repository.

List (jobs, scripts, resources), plan, export and unpack into a staging folder as a
difference from the last commit. Nothing here writes to the repository's working tree.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupd.dataarts.client import JobSummary
from backupd.dataarts.source import JobSource
from backupd.logs import log
from backupd.model import NO_OBSERVER, SnapshotObserver, WorkspaceTarget
from backupd.snapshot.deletions import ListCheck, Prover, reconcile, settle_rejected
from backupd.snapshot.export import BatchExporter
from backupd.snapshot.export_queue import Lane
from backupd.snapshot.ingest import ScriptStager, stage_resource
from backupd.snapshot.options import SnapshotOptions
from backupd.snapshot.plan import (
    Baseline,
    editors,
    index_bytes,
    is_full_snapshot,
    plan_exports,
)
from backupd.store.blobs import BlobWriter
from backupd.store.layout import INDEX_FILE
from backupd.store.staging import PendingChanges, StagedTree

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedWorkspace:
    """The workspace's next state, staged as its difference from the last commit.

    ``tree`` holds only the files that are new or changed; ``changes`` says what to add,
    rewrite and remove.
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
    # What this snapshot could not record (deletions not confirmed, jobs not exported): the
    # items stay as committed, and the snapshot is partial.
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listed:
    """What a workspace's listings showed; scripts and resources are staged already."""

    jobs: list[JobSummary]
    scripts: list[str]
    changed_scripts: set[str]  # changed or vanished since the last commit
    resources: list[str]


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
) -> StagedWorkspace:
    """Stage the workspace's next state under ``staging/tree`` as a difference from ``baseline``.

    Nothing here touches the repository: the baseline was read from it beforehand. What
    vanished from a list is recorded as deleted only once the service confirmed it
    (deletions.py); the rest is kept as committed and named in ``problems``.
    """
    baseline = baseline or Baseline()
    on_write = blobs.write if blobs is not None else None
    tree = StagedTree(staging / "tree", baseline.files, on_write=on_write)
    listed = stage_listings(client, target, tree)
    jobs, changed_scripts = listed.jobs, listed.changed_scripts
    prover = Prover(target, options.max_proofs)
    settled = reconcile(client, prover, tree, baseline, jobs, listed.scripts, listed.resources)
    script_count, resource_count = len(listed.scripts), len(listed.resources)
    del listed  # thousands of names in a large workspace: not held while exporting
    observer.sized(target, max(len(jobs), len(baseline.files) // 4))
    full = is_full_snapshot(options, baseline, time.time() if now is None else now)
    names = plan_exports(jobs, baseline, changed_scripts, full=full)
    del changed_scripts  # thousands of names in a first snapshot: not held while exporting
    exporting = set(names)
    for job in jobs:
        if job.name not in exporting:
            tree.keep(f"jobs/{job.name}")
    del exporting  # not held while the workspace exports
    log(
        logger,
        "snapshot.listed",
        workspace=target.label,
        jobs=len(jobs),
        scripts=script_count,
        resources=resource_count,
        export=len(names),
        mode="full" if full else "incremental",
    )

    observer.listed(target, len(names), -(-len(names) // options.batch_size))
    exporter = BatchExporter(client, target, options, staging, tree, observer, lane)
    rejected = exporter.export_all(names)
    problems = list(settled.problems)
    if rejected:
        jobs, refused = settle_rejected(client, prover, tree, baseline, jobs, rejected)
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
    tree.put(INDEX_FILE, index_bytes(jobs))
    return StagedWorkspace(
        tree=tree.root,
        changes=tree.pending(),
        jobs=tuple(jobs),
        script_count=script_count,
        resource_count=resource_count,
        exported=len(names) - len(rejected),
        full=full,
        editors=editors(jobs, baseline.job_times),
        checks=settled.checks,
        problems=tuple(problems),
    )


def stage_listings(client: JobSource, target: WorkspaceTarget, tree: StagedTree) -> Listed:
    """List the workspace, staging its scripts and resources.

    Scripts are staged as their pages arrive; resources right after the listing. Their
    listings are the authority on them, and a script that changed tells which jobs
    (holding a copy of it) must be exported again.
    """
    scripts = ScriptStager(tree)
    jobs, script_names, resources = list_workspace(client, target.workspace_id, scripts.stage)
    changed_scripts = scripts.finish(script_names)
    for resource in resources:
        stage_resource(tree, resource)
    return Listed(jobs, script_names, changed_scripts, [str(r["name"]) for r in resources])


def list_workspace(
    client: JobSource, workspace_id: str, keep_script: Callable[[dict[str, Any]], str]
) -> tuple[list[JobSummary], list[str], list[dict[str, Any]]]:
    """Jobs, script names (``keep_script`` takes each script as its page arrives) and
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
        scripts = pool.submit(
            when_allowed, functools.partial(client.list_scripts, keep=keep_script)
        )
        resources = pool.submit(when_allowed, client.list_resources)
        try:
            jobs = client.list_jobs(workspace_id)
        except BaseException:
            jobs_failed.append(True)
            raise
        finally:
            jobs_ended.set()
        return jobs, scripts.result(), resources.result()
