"""One snapshot of one workspace: list → export batches → unpack/normalise → apply → commit.

A snapshot is all-or-nothing. Everything up to the complete, normalised tree happens in a
staging folder outside the repository; the working tree is touched only once that tree
exists, and only the changed files are written. A failure anywhere before that leaves the
repository exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backupd.dataarts.client import DataArtsClient, JobSummary
from backupd.errors import (
    ApiError,
    ArchiveError,
    BackupdError,
    RepoError,
    SnapshotCancelled,
    SnapshotRefused,
)
from backupd.export_queue import ExportQueue, Lane
from backupd.logs import log
from backupd.observer import NO_OBSERVER, SnapshotObserver
from backupd.store.archive import ArchiveLimits, read_archive
from backupd.store.authors import (
    CommitGroup,
    attribute,
    identity_for,
    saved_by,
    split_commits,
)
from backupd.store.blobs import BlobWriter
from backupd.store.gitrepo import GitRepo, Identity
from backupd.store.names import stem_of, with_suffix
from backupd.store.normalise import (
    VIEW_SUFFIXES,
    canonical_json,
    normalise_file,
    parse_json,
    script_view,
)
from backupd.store.staging import PendingChanges, StagedTree, StoredFiles, blob_id
from backupd.store.summary import ChangeSummary, commit_message, summarise
from backupd.store.tree import META_DIR, ChangeSet, apply_changes
from backupd.store.volatile import VolatileRules, keep_equivalent

logger = logging.getLogger(__name__)

INDEX_FILE = f"{META_DIR}/index.json"
RESOURCES_DIR = "resources"  # resources/<name>.resource: definitions from the resource list
SCRIPTS_DIR = "scripts"  # scripts/<name>.script: definitions from the script list

# Staging folders are named after the process that owns them, so that a later run can tell
# the leftovers of a killed process from the folders of one still working.
STAGING_PREFIX = "backupd-staging-"
_STAGING_NAME = re.compile(rf"^{re.escape(STAGING_PREFIX)}(\d+)-")

# What batch-export answers when a listed job no longer exists (dlf-api.md §3.1, §3.2).
VANISHED_JOB_CODES = frozenset({"DLF.0100", "DLF.3051"})


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
    archive_attempts: int = 2
    # Export only new jobs, jobs whose lastUpdateTime moved and jobs using a changed script;
    # every full_every seconds (and whenever unsure) export everything.
    incremental: bool = True
    full_every: float = 86400.0
    export_window: int = 2  # batches downloading at once per workspace


@dataclass(frozen=True)
class Baseline:
    """What the last commit holds for a workspace folder, and what the last snapshot saw."""

    files: StoredFiles = field(default_factory=StoredFiles)  # path → git blob id
    # Job name → lastUpdateTime at the last snapshot (decides what an incremental one exports).
    job_times: Mapping[str, int | None] = field(default_factory=dict)
    last_full: float = 0.0  # when the last full snapshot finished (epoch seconds; 0 = never)


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
    stored_jobs: int = 0  # in the last commit (the deletion guards compare against them)
    stored_resources: int = 0


@dataclass(frozen=True)
class JobCounts:
    """Jobs a snapshot added, changed and removed."""

    added: int = 0
    changed: int = 0
    removed: int = 0

    @classmethod
    def of(cls, summary: ChangeSummary) -> JobCounts:
        return cls(len(summary.jobs_added), len(summary.jobs_changed), len(summary.jobs_removed))


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
    # Counts, not the changed paths: a run's results outlive its workspaces, and a first
    # snapshot of a large workspace changes tens of thousands of paths.
    changed_jobs: JobCounts = field(default_factory=JobCounts)
    commit: str | None = None
    error: str | None = None
    error_type: type[BackupdError] | None = None  # tells credential and clock problems apart
    duration: float = 0.0
    resources: int = 0
    gone: bool = False
    retries: int = 0  # API calls retried during this snapshot


def batches(names: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(names), size):
        yield names[start : start + size]


# --- staging (network and disk, no repository access) -----------------------------------------


def stage_workspace(
    client: DataArtsClient,
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

    Nothing here touches the repository: the baseline was read from it beforehand.
    """
    baseline = baseline or Baseline()
    on_write = blobs.write if blobs is not None else None
    tree = StagedTree(staging / "tree", baseline.files, on_write=on_write)
    jobs, script_count, changed_scripts, resource_count = stage_listings(client, target, tree)
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
    exporter = _BatchExporter(client, target, options, staging, tree, observer, lane)
    rejected = exporter.export_all(names)
    if rejected:
        jobs = confirm_vanished(client, target, jobs, rejected)
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
        stored_jobs=stored_job_count(baseline.files),
        stored_resources=stored_resource_count(baseline.files),
    )


def stage_listings(
    client: DataArtsClient, target: WorkspaceTarget, tree: StagedTree
) -> tuple[list[JobSummary], int, set[str], int]:
    """List the workspace, staging its scripts and resources: returns the jobs, how many
    scripts, the scripts that changed or vanished, and how many resources.

    Scripts are staged as their pages arrive; resources right after the listing. Their
    listings are the authority on them, and a script that changed tells which jobs
    (holding a copy of it) must be exported again. The script names and the stager's sets
    of them end here, before the workspace exports.
    """
    scripts = ScriptStager(tree)
    jobs, script_names, resources = list_workspace(client, target.workspace_id, scripts.stage)
    changed_scripts = scripts.finish(script_names)
    for resource in resources:
        stage_resource(tree, resource)
    return jobs, len(script_names), changed_scripts, len(resources)


def list_workspace(
    client: DataArtsClient, workspace_id: str, keep_script: Callable[[dict[str, Any]], str]
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


def is_full_snapshot(options: SnapshotOptions, baseline: Baseline, now: float) -> bool:
    if not options.incremental or not baseline.files:
        return True
    return now - baseline.last_full >= options.full_every


def plan_exports(
    jobs: Sequence[JobSummary], baseline: Baseline, changed_scripts: set[str], *, full: bool
) -> list[str]:
    """Names of the jobs to export, in listing order.

    Incremental: a job is exported when it is new, its lastUpdateTime moved (or is unknown),
    or its stored folder holds a copy of a script that changed — which makes an incremental
    snapshot record the same tree a full one would.
    """
    if full:
        return [job.name for job in jobs]
    holding_changed: set[str] = set()  # jobs whose folder holds a copy of a changed script
    if changed_scripts:
        for path in baseline.files:
            parts = path.split("/")
            if (
                len(parts) == 3
                and parts[0] == "jobs"
                and parts[2].removesuffix(".script") in changed_scripts
                and parts[2].endswith(".script")
            ):
                holding_changed.add(parts[1])
    chosen = []
    for job in jobs:
        stored = f"jobs/{job.name}/{job.name}.job" in baseline.files
        moved = job.last_update_time is None or (
            baseline.job_times.get(job.name) != job.last_update_time
        )
        if not stored or moved or job.name in holding_changed:
            chosen.append(job.name)
    return chosen


@dataclass(frozen=True)
class _BatchExporter:
    """Exports named jobs into the staged tree, one verified archive at a time."""

    client: DataArtsClient
    target: WorkspaceTarget
    options: SnapshotOptions
    staging: Path
    tree: StagedTree
    observer: SnapshotObserver = NO_OBSERVER
    lane: Lane | None = None  # the source's shared export queue; else a queue of its own
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def export_all(self, names: Sequence[str]) -> list[str]:
        """Export ``names`` in batches; return those the service rejected as not existing.

        Up to ``export_window`` batches wait in (or download from) the export queue while
        the archives that arrived are checked and staged in order, so unpacking overlaps
        with waiting on the network. The client still enforces rate and concurrency limits.
        """
        if self.lane is not None:
            return self._export_all(names, self.lane)
        with ExportQueue(self.options.export_window) as own:
            return self._export_all(names, own.lane(0))

    def _export_all(self, names: Sequence[str], lane: Lane) -> list[str]:
        chunks = list(batches(names, self.options.batch_size))
        window = max(1, self.options.export_window)
        pending: deque[tuple[int, Sequence[str], Future[tuple[Path, int]]]] = deque()
        upcoming = iter(enumerate(chunks, start=1))

        def submit_next() -> None:
            item = next(upcoming, None)
            if item is not None:
                chunk = item[1]
                pending.append((item[0], chunk, lane.submit(lambda: self.download(chunk))))

        rejected: list[str] = []
        try:
            for _ in range(window):
                submit_next()
            while pending:
                number, chunk, download = pending.popleft()
                submit_next()
                label = f"batch {number}/{len(chunks)}"
                rejected += self.export_isolating(chunk, label, download)
                size = download.result()[1] if download.exception() is None else 0
                self.observer.exported(self.target, number, len(chunks), len(chunk), size)
        finally:
            for _, _, download in pending:
                download.cancel()
            wait([download for _, _, download in pending])
            for _, _, download in pending:  # started before a failure: drop their archives
                # (A cancelled future is done too, and exception() would raise for it.)
                if not download.cancelled() and not download.exception():
                    download.result()[0].unlink(missing_ok=True)
        return rejected

    def download(self, names: Sequence[str]) -> tuple[Path, int]:
        """One batch-export call into a new zip file in staging: (path, size)."""
        zip_path = self.staging / f"batch-{next(self._numbers)}.zip"
        try:
            size = self.client.export_jobs(
                self.target.workspace_id,
                names,
                zip_path,
                export_depend=self.options.export_depend,
                max_bytes=self.options.max_archive_bytes,
            )
        except BaseException:
            zip_path.unlink(missing_ok=True)
            raise
        return zip_path, size

    def export_isolating(
        self,
        names: Sequence[str],
        label: str,
        download: Future[tuple[Path, int]] | None = None,
    ) -> list[str]:
        """Export ``names``; return those the service rejected as not existing.

        A job deleted between listing and export makes the whole batch fail (400); halving
        the batch isolates it in about 2·log2(batch) calls instead of one call per job.
        """
        try:
            self.export(names, label, download)
        except ApiError as error:
            if not _rejects_names(error):
                raise
            if len(names) == 1:
                log(
                    logger,
                    "snapshot.export_rejected",
                    level=logging.WARNING,
                    workspace=self.target.label,
                    job=names[0],
                    error=str(error),
                )
                return [names[0]]
            middle = len(names) // 2
            return self.export_isolating(names[:middle], f"{label} part 1") + self.export_isolating(
                names[middle:], f"{label} part 2"
            )
        return []

    def export(
        self,
        names: Sequence[str],
        label: str,
        download: Future[tuple[Path, int]] | None = None,
    ) -> None:
        """Check and stage one archive (downloaded now, or by ``download``); a bad archive is
        fetched again (bounded)."""
        for attempt in range(1, self.options.archive_attempts + 1):
            zip_path: Path | None = None
            try:
                if attempt == 1 and download is not None:
                    zip_path, size = download.result()
                else:
                    zip_path, size = self.download(names)
                ingest_archive(
                    zip_path, self.options.archive_limits, self.tree, names, zip_path.name
                )
            except ArchiveError as error:
                if attempt >= self.options.archive_attempts or _local_failure(error):
                    raise ArchiveError(f"{label}: {error}") from error
                log(
                    logger,
                    "snapshot.archive_retry",
                    level=logging.WARNING,
                    workspace=self.target.label,
                    batch=label,
                    attempt=attempt,
                    error=str(error),
                )
                continue
            finally:
                if zip_path is not None:
                    zip_path.unlink(missing_ok=True)
            log(
                logger,
                "snapshot.batch",
                level=logging.DEBUG,
                workspace=self.target.label,
                batch=label,
                jobs=len(names),
                bytes=size,
            )
            return


def _rejects_names(error: ApiError) -> bool:
    """A 400 that a missing job causes (not throttling, server or credential trouble)."""
    return type(error) is ApiError and error.status == 400 and error.code in VANISHED_JOB_CODES


def _local_failure(error: ArchiveError) -> bool:
    """Our disk failed (full, unwritable), not the archive: downloading again cannot help."""
    return isinstance(error.__cause__, OSError)


def confirm_vanished(
    client: DataArtsClient,
    target: WorkspaceTarget,
    jobs: Sequence[JobSummary],
    rejected: Sequence[str],
) -> list[JobSummary]:
    """The listed jobs minus ``rejected``, once a fresh listing shows those are really gone.

    An export refusal alone is not proof of a deletion (a name the export endpoint dislikes
    looks the same), and history must never record a deletion that did not happen.
    """
    fresh = {job.name for job in client.list_jobs(target.workspace_id)}
    still_listed = sorted(set(rejected) & fresh)
    if still_listed:
        raise ApiError(
            f"export rejected {len(still_listed)} job(s) that a fresh listing still shows: "
            f"{', '.join(still_listed[:5])}; not recording them as deleted",
            operation="batch export",
        )
    if not fresh and len(jobs) > len(rejected):
        raise ApiError(
            "a fresh listing to confirm vanished jobs came back empty; "
            "refusing to treat that as proof",
            operation="list jobs",
        )
    gone = set(rejected)
    log(
        logger,
        "snapshot.vanished",
        level=logging.WARNING,
        workspace=target.label,
        jobs=",".join(sorted(gone)),
    )
    return [job for job in jobs if job.name not in gone]


def ingest_archive(
    zip_path: Path,
    limits: ArchiveLimits,
    tree: StagedTree,
    requested: Sequence[str],
    archive_name: str,
) -> None:
    """Check one export archive and stage its normalised files.

    The archive must hold exactly the requested jobs, and write only into their folders.
    Its entries are read (and CRC-checked) before any of them is staged.
    """
    files = {path: normalise_file(path, data) for path, data in read_archive(zip_path, limits)}
    exported: set[str] = set()
    owners: set[str] = set()  # job folders the archive writes into
    for relative in files:
        parts = relative.split("/")
        if parts[0] == "jobs" and relative.endswith(".job"):
            exported.add(parts[1] if len(parts) == 3 else stem_of(parts[1]))
        if parts[0] == "jobs" and len(parts) >= 3:
            owners.add(parts[1])
    missing = sorted(set(requested) - exported)
    unexpected = sorted((exported | owners) - set(requested))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"lacks {len(missing)} requested job(s): {', '.join(missing[:5])}")
        if unexpected:
            problems.append(f"holds jobs not asked for: {', '.join(unexpected[:5])}")
        raise ArchiveError(f"{archive_name}: export {'; '.join(problems)}")
    try:
        for relative, content in files.items():
            if relative.endswith(".script"):
                stage_script_file(tree, relative, content)
            else:
                tree.put(relative, content)
    except OSError as error:
        # Our disk, not the archive: _local_failure() sees the OSError and does not retry.
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "disk full while unpacking" if full else "cannot stage"
        raise ArchiveError(
            f"{archive_name}: {what} into {tree.root}: {_describe(error)}"
        ) from error


def stage_script_file(tree: StagedTree, path: str, content: bytes) -> None:
    """Stage a .script and, beside it, the readable view of its body (derived, never restored)."""
    tree.put(path, content)
    try:
        view = script_view(parse_json(content))
    except ValueError:
        return
    if view is None:
        return
    extension, text = view
    view_path = with_suffix(path, extension)
    if not tree.has(view_path):  # a real exported file of that name wins
        tree.put(view_path, text)


class ScriptStager:
    """Stages listed scripts under scripts/ as their pages arrive, so a large workspace's
    thousands of script bodies are not held until its listing ends."""

    def __init__(self, tree: StagedTree) -> None:
        self._tree = tree
        self._staged: set[str] = set()
        self._changed: set[str] = set()  # differ from the last commit

    def stage(self, script: dict[str, Any]) -> str:
        """Stage one listed script; returns its name."""
        name = str(script["name"])
        if not _safe_name(name):
            raise ArchiveError(f"script list: unusable script name {name!r}")
        path = f"{SCRIPTS_DIR}/{name}.script"
        content = canonical_json(script)
        if self._tree.stored_blob(path) != blob_id(content):
            self._changed.add(name)
        stage_script_file(self._tree, path, content)
        self._staged.add(name)
        return name

    def finish(self, listed: Sequence[str]) -> set[str]:
        """The listing ended with ``listed``: returns the scripts that changed or vanished.

        A listing that ran twice (its total moved) may have staged scripts deleted since:
        they are taken out again.
        """
        names = set(listed)
        for name in self._staged - names:
            path = f"{SCRIPTS_DIR}/{name}.script"
            for staged in (path, *(with_suffix(path, suffix) for suffix in VIEW_SUFFIXES)):
                self._tree.discard(staged)
        changed = self._changed & names
        for path in self._tree.stored_paths(SCRIPTS_DIR):
            if path.endswith(".script") and (name := stem_of(path)) not in names:
                changed.add(name)
        return changed


def stage_resource(tree: StagedTree, resource: dict[str, Any]) -> None:
    """Stage a resource definition as listed (the OBS object it points to stays in OBS)."""
    name = str(resource["name"])
    if not _safe_name(name):
        raise ArchiveError(f"resource list: unusable resource name {name!r}")
    tree.put(f"{RESOURCES_DIR}/{name}.resource", canonical_json(resource))


def _safe_name(name: str) -> bool:
    return (
        bool(name)
        and name not in {".", ".."}
        and not any(c in name for c in "/\\\0")
        and len(name.encode("utf-8")) <= 240
    )


def index_bytes(jobs: Sequence[JobSummary]) -> bytes:
    """The index file: canonical JSON of ``{"jobs": {name: metadata}}``, written row by row.

    json.dumps with an indent encodes in Python, piece by piece: for 10,000 jobs that holds
    several times the file's size at once, in every workspace staged side by side.
    """
    by_name = {job.name: job for job in jobs}
    if not by_name:
        return canonical_json({"jobs": {}})

    def row(name: str, job: JobSummary) -> str:
        return (
            f"    {_json(name)}: {{\n"
            f'      "jobType": {_json(job.job_type)},\n'
            f'      "lastUpdateTime": {_json(job.last_update_time)},\n'
            f'      "lastUpdateUser": {_json(job.last_update_user)}\n'
            "    }"
        )

    # Into one buffer: a list of rows, their join and its encoding would each be the file.
    # A BytesIO hands over its buffer (a bytearray's bytes() would copy it).
    out = io.BytesIO()
    out.write(b'{\n  "jobs": {\n')
    for number, name in enumerate(sorted(by_name)):
        if number:
            out.write(b",\n")
        out.write(row(name, by_name[name]).encode())
    out.write(b"\n  }\n}\n")
    return out.getvalue()


def _json(value: str | int | None) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- applying (repository, under the lock) ----------------------------------------------------


def editors(jobs: Sequence[JobSummary], saved_times: Mapping[str, int | None]) -> dict[str, str]:
    """Who saved each job since the last snapshot (only jobs whose lastUpdateTime moved).

    ``saved_times``: the baseline's job → lastUpdateTime, which the committed index holds.
    """
    return {
        job.name: job.last_update_user
        for job in jobs
        if job.last_update_user and saved_times.get(job.name) != job.last_update_time
    }


def stored_job_count(files: StoredFiles) -> int:
    """Job folders holding a job file (sorted paths keep each folder's files together)."""
    count, last = 0, None
    for position in files.under("jobs"):
        path = files.path_at(position)
        if path.endswith(".job") and (name := path.split("/", 2)[1]) != last:
            count, last = count + 1, name
    return count


def stored_resource_count(files: StoredFiles) -> int:
    return sum(1 for i in files.under(RESOURCES_DIR) if files.path_at(i).endswith(".resource"))


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
) -> tuple[ChangeSet, ChangeSummary, str | None]:
    """Apply a staged tree to the workspace folder and commit; no commit when nothing changed."""
    folder = target.label
    # Whatever an interrupted run left in this folder is not history: start from HEAD.
    if repo.folder_dirty(folder):
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
            raise RepoError(f"cannot write {workspace_dir}: {_describe(error)}") from error
        raise
    return changes, summary, sha


def snapshot_workspace(
    client: DataArtsClient,
    repo: GitRepo,
    target: WorkspaceTarget,
    options: SnapshotOptions,
    identity: Identity,
    *,
    commit_lock: AbstractContextManager[object] | None = None,
    before_apply: Callable[[], None] | None = None,
    observer: SnapshotObserver = NO_OBSERVER,
) -> SnapshotResult:
    """Snapshot one workspace; failures are returned, not raised, so others still run.

    Staging needs no lock; ``commit_lock`` (a daemon's) is held only to apply and commit, and
    ``before_apply`` runs under it last of all (a daemon that is stopping raises there).
    """
    prepared = prepare_workspace(client, repo, target, options, observer=observer)
    if isinstance(prepared, SnapshotResult):
        return prepared
    return finish_workspace(
        client,
        repo,
        prepared,
        options,
        identity,
        commit_lock=commit_lock,
        before_apply=before_apply,
    )


@dataclass(frozen=True)
class PreparedWorkspace:
    """A workspace staged and waiting for its commit (its staging folder still exists)."""

    target: WorkspaceTarget
    staging: Path
    last_full: float  # of the baseline (its files are not needed once staged)
    staged: StagedWorkspace
    started: float
    retries_before: int


def prepare_workspace(
    client: DataArtsClient,
    repo: GitRepo,
    target: WorkspaceTarget,
    options: SnapshotOptions,
    *,
    observer: SnapshotObserver = NO_OBSERVER,
    lane: Lane | None = None,
) -> PreparedWorkspace | SnapshotResult:
    """The network half of a snapshot: list, export and stage (reads the repository only).

    Returns the failure as a result when it fails; the staging folder is then gone.
    """
    started = time.monotonic()
    retries_before = client.retries
    try:
        staging = make_staging(options.staging_root)
    except OSError as error:
        message = f"cannot create a staging folder: {_describe(error)}"
        return _failure(target, error, message, started, client.retries - retries_before)
    blobs = BlobWriter(repo.path)
    try:
        baseline = read_baseline(repo, target.label)
        staged = stage_workspace(
            client, target, options, staging, baseline, observer=observer, lane=lane, blobs=blobs
        )
        staged = replace(staged, blobs_stored=blobs.finish())
    except (BackupdError, OSError) as error:
        blobs.abandon()
        shutil.rmtree(staging, ignore_errors=True)
        message = _describe(error) if isinstance(error, OSError) else str(error)
        return _failure(target, error, message, started, client.retries - retries_before)
    return PreparedWorkspace(target, staging, baseline.last_full, staged, started, retries_before)


def finish_workspace(
    client: DataArtsClient,
    repo: GitRepo,
    prepared: PreparedWorkspace,
    options: SnapshotOptions,
    identity: Identity,
    *,
    commit_lock: AbstractContextManager[object] | None = None,
    before_apply: Callable[[], None] | None = None,
) -> SnapshotResult:
    """The repository half: apply the staged change and commit it; removes the staging."""
    target, staged = prepared.target, prepared.staged
    try:
        with commit_lock or contextlib.nullcontext():
            if before_apply is not None:
                before_apply()
            _, summary, sha = apply_staged(repo, target, staged, options, identity)
            record_progress(repo, target.label, staged, prepared.last_full)
    except (BackupdError, OSError) as error:
        message = _describe(error) if isinstance(error, OSError) else str(error)
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
        changed_jobs=JobCounts.of(summary),
        commit=sha,
        duration=time.monotonic() - prepared.started,
        retries=client.retries - prepared.retries_before,
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
        commit=sha or "none",
        retries=result.retries,
        seconds=round(result.duration, 2),
    )
    return result


def _failure(
    target: WorkspaceTarget, error: BaseException, message: str, started: float, retries: int
) -> SnapshotResult:
    cancelled = isinstance(error, SnapshotCancelled)
    if cancelled:
        message = f"abandoned before touching the repository: {message}"
    log(
        logger,
        "snapshot.abandoned" if cancelled else "snapshot.failed",
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
    )


# --- what the last snapshot left: the baseline of the next one --------------------------------

PROGRESS_DIR = "backupd-progress"  # under .git: local, never committed, never pushed


def _progress_file(repo: GitRepo, folder: str) -> Path:
    return repo.path / ".git" / PROGRESS_DIR / f"{folder}.json"


def read_baseline(repo: GitRepo, folder: str) -> Baseline:
    """The folder's files in the last commit, and which job versions it holds.

    The job versions come from this machine's record of the last snapshot when it describes
    exactly the committed folder; otherwise (a fresh clone, a moved branch) from the committed
    index, with the next snapshot a full one.
    """
    if not repo.has_commits():
        return Baseline()
    files = StoredFiles(repo.iter_files("HEAD", folder))
    tree = repo.tree_id("HEAD", folder)
    try:
        progress = parse_json(_progress_file(repo, folder).read_bytes())
    except (OSError, ValueError):
        progress = None
    if isinstance(progress, dict) and progress.get("tree") == tree and tree is not None:
        return Baseline(files, progress.get("jobs") or {}, float(progress.get("lastFull") or 0))
    job_times: dict[str, int | None] = {}
    index_blob = files.get(INDEX_FILE)
    if index_blob is not None:
        try:
            index = parse_json(repo.read_blobs([index_blob])[index_blob])
            job_times = {name: entry.get("lastUpdateTime") for name, entry in index["jobs"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            job_times = {}
    return Baseline(files, job_times, 0.0)


def record_progress(repo: GitRepo, folder: str, staged: StagedWorkspace, last_full: float) -> None:
    """Remember what this snapshot saw, for the next incremental one (best effort)."""
    progress = {
        "tree": repo.tree_id("HEAD", folder),
        "lastFull": time.time() if staged.full else last_full,
        "jobs": {job.name: job.last_update_time for job in staged.jobs},
    }
    target = _progress_file(repo, folder)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        # Compact, from the C encoder: read by machines only, and 10,000 jobs long.
        temporary.write_bytes(json.dumps(progress, separators=(",", ":")).encode())
        temporary.replace(target)
    except OSError as error:  # only costs a fuller next snapshot
        log(logger, "progress.unwritten", level=logging.WARNING, error=_describe(error))


def _describe(error: OSError) -> str:
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror or error}{where}"


# --- staging folders --------------------------------------------------------------------------


def _staging_root(root: Path | None) -> Path:
    return root if root is not None else Path(tempfile.gettempdir())


def make_staging(root: Path | None) -> Path:
    """A new, private staging folder carrying this process's id in its name."""
    base = _staging_root(root)
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=base))


def remove_stale_staging(root: Path | None) -> list[Path]:
    """Delete staging folders left by processes that no longer run (a kill -9, a power cut).

    Folders of live processes are kept, this process's own included: a daemon may be
    snapshotting another workspace right now, and several backupd may share one root.
    """
    base = _staging_root(root)
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING_NAME.match(entry.name)
        if match is None or _process_alive(int(match[1])) or not entry.is_dir():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if removed:
        log(logger, "staging.cleaned", root=str(base), folders=len(removed))
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: not ours to judge
    return True
