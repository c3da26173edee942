"""What the last snapshot left (the baseline) and what this one must export.

A full snapshot exports every job; an incremental one only the jobs that are new, whose
``lastUpdateTime`` moved, or whose folder holds a copy of a script that changed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from backupd.dataarts.client import JobSummary
from backupd.errors import (
    describe_os_error,
)
from backupd.logs import log
from backupd.snapshot.options import SnapshotOptions
from backupd.store.gitrepo import GitRepo
from backupd.store.index import JobRecord, WorkspaceIndex
from backupd.store.layout import INDEX_FILE, StoredLayout, job_file, read_layout
from backupd.store.layout_cache import read_layout_file
from backupd.store.normalise import (
    parse_json,
)
from backupd.store.staging import StoredFiles

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Baseline:
    """What the last commit holds for a workspace folder, and what the last snapshot saw."""

    files: StoredFiles = field(default_factory=StoredFiles)  # path → git blob id
    # Job name → lastUpdateTime at the last snapshot (decides what an incremental one exports).
    job_times: Mapping[str, int | None] = field(default_factory=dict)
    # When the last full snapshot finished (epoch seconds); 0: never, or the last snapshot was
    # partial (then it may have kept stale items, and the next one reconciles fully).
    last_full: float = 0.0
    # The repository's blob contents by id (the stored files are read only when needed).
    read_blobs: Callable[[Iterable[str]], Mapping[str, bytes]] | None = None
    tree: str | None = None  # the folder's tree id in the last commit (None: not there)

    def read(self, paths: Iterable[str]) -> dict[str, bytes]:
        """The stored contents of ``paths`` that the last commit holds."""
        ids = {path: blob for path in paths if (blob := self.files.get(path)) is not None}
        if not ids or self.read_blobs is None:
            return {}
        blobs = self.read_blobs(ids.values())
        return {path: blobs[blob] for path, blob in ids.items() if blob in blobs}

    def stored_jobs(self) -> dict[str, JobSummary]:
        """The jobs the committed index describes (type, version, editor), by name."""
        index = self.read([INDEX_FILE]).get(INDEX_FILE)
        return index_rows(index) if index is not None else {}


def index_rows(index: bytes) -> dict[str, JobSummary]:
    """The job rows of an index file; nothing when it does not parse."""
    try:
        rows = parse_json(index)["jobs"]
        return {
            name: JobSummary(
                name=name,
                job_type=str(row.get("jobType") or "BATCH"),
                last_update_time=_int_or_none(row.get("lastUpdateTime")),
                last_update_user=_str_or_none(row.get("lastUpdateUser")),
            )
            for name, row in rows.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def is_full_snapshot(options: SnapshotOptions, baseline: Baseline, now: float) -> bool:
    if not options.incremental or not baseline.files:
        return True
    return now - baseline.last_full >= options.full_every


def plan_exports(
    jobs: Sequence[JobSummary],
    baseline: Baseline,
    changed_scripts: set[str],
    *,
    full: bool,
    stored: StoredLayout | None = None,
) -> list[str]:
    """Names of the jobs to export, in listing order.

    Incremental: a job is exported when it is new, its lastUpdateTime moved (or is unknown),
    or its stored folder holds a copy of a script that changed — which makes an incremental
    snapshot record the same tree a full one would. ``stored``: whose each path of
    ``baseline.files`` is (None: every job under its own name).
    """
    if full:
        return [job.name for job in jobs]
    stored = stored if stored is not None else read_layout(baseline.files, None)
    holding_changed: set[str] = set()  # jobs whose folder holds a copy of a changed script
    if changed_scripts:
        held = stored.scripts_held(baseline.files)
        for script in changed_scripts:
            holding_changed |= held.get(script, set())
    chosen = []
    for job in jobs:
        record = stored.jobs.get(job.name)
        present = (
            record is not None
            and job.name not in stored.incomplete
            and job_file(record.folder(job.name)) in baseline.files
        )
        moved = job.last_update_time is None or (
            baseline.job_times.get(job.name) != job.last_update_time
        )
        if not present or moved or job.name in holding_changed:
            chosen.append(job.name)
    return chosen


def index_bytes(jobs: Sequence[JobSummary]) -> bytes:
    """The index of ``jobs`` when every name is stored as it is (see store/index.py)."""
    return WorkspaceIndex(
        jobs={
            job.name: JobRecord(job.job_type, job.last_update_time, job.last_update_user)
            for job in jobs
        }
    ).to_bytes()


def read_stored_layout(
    repo: GitRepo, files: StoredFiles, *, folder: str | None = None, tree: str | None = None
) -> StoredLayout:
    """Whose each path of the committed folder ``files`` is, per its index and paths; from
    the layout kept for ``folder``'s ``tree`` by the snapshot that committed it, when there
    is one (store/layout_cache.py)."""
    index = None
    index_blob = files.get(INDEX_FILE)
    if index_blob is not None:
        try:
            index = WorkspaceIndex.parse(repo.read_blobs([index_blob])[index_blob])
        except ValueError:
            index = None
    if folder is not None and tree is not None:
        kept = read_layout_file(_layout_file(repo, folder, tree), index)
        if kept is not None:
            return kept
    return read_layout(files, index)


def editors(jobs: Sequence[JobSummary], saved_times: Mapping[str, int | None]) -> dict[str, str]:
    """Who saved each job since the last snapshot (only jobs whose lastUpdateTime moved).

    ``saved_times``: the baseline's job → lastUpdateTime, which the committed index holds.
    """
    return {
        job.name: job.last_update_user
        for job in jobs
        if job.last_update_user and saved_times.get(job.name) != job.last_update_time
    }


PROGRESS_DIR = "backupd-progress"  # under .git: local, never committed, never pushed


def _progress_file(repo: GitRepo, folder: str) -> Path:
    return repo.path / ".git" / PROGRESS_DIR / f"{folder}.json"


LAYOUT_INFIX = ".layout-"  # <folder>.layout-<tree id>.json beside the progress record


def _layout_file(repo: GitRepo, folder: str, tree: str) -> Path:
    return repo.path / ".git" / PROGRESS_DIR / f"{folder}{LAYOUT_INFIX}{tree}.json"


def keep_layout(repo: GitRepo, folder: str, tree: str, staged: Path) -> None:
    """Keep the layout file ``staged`` (``write_layout_file`` of what was just committed) as the
    layout of ``folder``'s ``tree``; the ones kept for its earlier trees go. Best effort:
    without it, the next snapshot works the layout out."""
    target = _layout_file(repo, folder, tree)
    prefix = f"{Path(folder).name}{LAYOUT_INFIX}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for old in target.parent.iterdir():
            if old.name.lstrip(".").startswith(prefix) and old != target:
                old.unlink(missing_ok=True)
        # Copied, not moved: the staging folder is often another file system (/tmp).
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(staged, temporary)
        temporary.replace(target)
    except OSError as error:
        log(logger, "layout.unkept", level=logging.DEBUG, error=describe_os_error(error))


def read_baseline(repo: GitRepo, folder: str) -> Baseline:
    """The folder's files in the last commit, and which job versions it holds.

    The job versions come from this machine's record of the last snapshot when it describes
    exactly the committed folder; otherwise (a fresh clone, a moved branch) from the committed
    index, with the next snapshot a full one.
    """
    tree = repo.tree_id("HEAD", folder)
    if tree is None:  # no commit yet, or none holds the folder
        return Baseline()
    files = StoredFiles(repo.iter_files("HEAD", folder))
    try:
        progress = parse_json(_progress_file(repo, folder).read_bytes())
    except (OSError, ValueError):
        progress = None
    if isinstance(progress, dict) and progress.get("tree") == tree:
        # A partial snapshot's record is no base for an incremental one: it may describe
        # items it kept without seeing them (unconfirmed deletions, left-out rows).
        last_full = 0.0 if progress.get("partial") else float(progress.get("lastFull") or 0)
        return Baseline(files, progress.get("jobs") or {}, last_full, repo.read_blobs, tree)
    baseline = Baseline(files, {}, 0.0, repo.read_blobs, tree)
    rows = baseline.stored_jobs()
    job_times = {name: row.last_update_time for name, row in rows.items()}
    return replace(baseline, job_times=job_times)


def record_progress(
    repo: GitRepo,
    folder: str,
    jobs: Sequence[JobSummary] | Mapping[str, int | None],
    *,
    full: bool,
    last_full: float,
    partial: bool = False,
) -> str | None:
    """Remember what this snapshot saw, for the next incremental one (best effort); returns
    the folder's tree id now (None: not known).

    ``jobs``: the listed jobs, or job → the lastUpdateTime the folder now holds (None for a
    job whose export failed: the next snapshot tries it again). ``partial``: the snapshot
    could not record everything (its problems); the next one of the folder is then a full
    reconcile, whatever ``full_every`` says.
    """
    times = (
        dict(jobs)
        if isinstance(jobs, Mapping)
        else {job.name: job.last_update_time for job in jobs}
    )
    progress = {
        "tree": repo.tree_id("HEAD", folder),
        "lastFull": time.time() if full and not partial else last_full,
        "partial": partial,
        "jobs": times,
    }
    target = _progress_file(repo, folder)
    tree = progress["tree"]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        # Compact, from the C encoder: read by machines only, and 10,000 jobs long.
        temporary.write_bytes(json.dumps(progress, separators=(",", ":")).encode())
        temporary.replace(target)
    except OSError as error:  # only costs a fuller next snapshot
        log(logger, "progress.unwritten", level=logging.WARNING, error=describe_os_error(error))
    return tree if isinstance(tree, str) else None
