"""Rebuild an importable ``jobs.zip`` of a workspace at any point of its history.

Only the git repository is read (objects, never the working tree; no lock, no API), so a
restore works from a fresh clone while DataArts Studio is down. The zip has the layout and
the exact entry names the export had (``jobs/<job>/<job>.job`` with the files exported with
each job, or ``jobs/<job>.job`` and top-level ``scripts/``, … — the workspace index records
which, and the DataArts names behind mapped paths), and, optionally, the workspace's other
scripts as ``scripts/<script>.script``. Derived views (``.sql``/``.sh``/``.py`` rendered from
a ``.script``) and ``.backupd/`` metadata are never part of it. Definitions are
re-serialised compactly, as the service writes them: same values, smaller zip (DataArts
imports at most 10 MB); other exported files (CDM job definitions) go back byte for byte.

The functions that decide what goes into the zip are pure (``index_jobs``, ``dependents``,
``restore_entries``, ``zip_bytes``, ``split_entries``); ``plan_restore`` feeds them from git.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backupd.errors import RestoreError
from backupd.store.gitrepo import CommitInfo, GitRepo
from backupd.store.index import WorkspaceIndex
from backupd.store.layout import (
    INDEX_FILE,
    JOB_SUFFIX,
    JOBS_DIR,
    SCRIPT_SUFFIX,
    SCRIPTS_DIR,
    read_layout,
)
from backupd.store.names import suffix_of, with_suffix
from backupd.store.normalise import VIEW_SUFFIXES, is_definition_file, parse_json, script_view
from backupd.store.pathmap import candidates, is_component_of, looks_encoded
from backupd.store.tags import TAG_PREFIX
from backupd.store.tree import META_DIR

DEFAULT_MAX_IMPORT_BYTES = 10 * 1024**2  # DataArts: a job file to import is at most 10 MB

_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:$|[T ])|^\d{8}T\d{2}")


# --- restore points ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RestorePoint:
    """The commit whose tree is restored, and how the user named it."""

    commit: str
    time: datetime  # UTC committer date of ``commit``
    subject: str
    requested: str  # "latest", or the --at value as given

    def describe(self) -> str:
        shown = "" if self.requested == "latest" else f"--at {self.requested} → "
        return f"{shown}commit {self.commit[:10]} of {format_time(self.time)}"


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_moment(text: str) -> datetime | None:
    """A date/time in ISO 8601 ("2026-11-20", "2026-11-20 03:00", "…T03:00:00+08:00"), as UTC.

    Naive values are UTC. Returns None when ``text`` does not look like a date at all (then
    it is a commit or tag); raises RestoreError when it looks like one but is not valid.
    """
    text = text.strip()
    if not _DATE_LIKE.match(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RestoreError(
            f"--at {text!r} is not a valid date/time (use ISO 8601, e.g. '2026-11-20 03:00' or "
            "'2026-11-20T03:00:00+08:00'; without an offset it is UTC)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve_point(repo: GitRepo, folder: str, at: str | None) -> RestorePoint:
    """The commit holding the state of ``folder`` asked for by ``at`` (None: the latest).

    A date means the state at that moment: the commit the snapshot branch pointed at then
    (its newest first-parent commit not after the date), restricted to the folder.
    """
    ref = repo.branch_ref()
    requested = at if at is not None else "latest"
    if at is None:
        commit = repo.resolve_commit(ref)
        if commit is None:
            raise RestoreError(f"repository {repo.path} has no commits yet")
    elif (moment := parse_moment(at)) is not None:
        commit = repo.commit_at(ref, moment)
        if commit is None or not repo.folder_exists(commit, folder):
            raise RestoreError(
                f"no snapshot of {folder} at or before {format_time(moment)}"
                f"{_first_snapshot_hint(repo, ref, folder)}"
            )
    else:
        commit = repo.resolve_commit(at)
        if commit is None:
            raise RestoreError(
                f"--at {at!r} is neither a commit, a tag nor an ISO 8601 date "
                "(see 'backupd restore --list')"
            )
    if not repo.folder_exists(commit, folder):
        raise RestoreError(
            f"commit {commit[:10]} holds no snapshot of {folder}"
            f"{_first_snapshot_hint(repo, ref, folder)}"
        )
    info = repo.commit_info(commit)
    return RestorePoint(commit=info.sha, time=info.time, subject=info.subject, requested=requested)


def _first_snapshot_hint(repo: GitRepo, ref: str, folder: str) -> str:
    history = repo.history(ref, folder)
    if not history:
        return f" (the repository has no snapshot of {folder} at all)"
    first = history[-1]
    return f" (the first is commit {first.sha[:10]} of {format_time(first.time)})"


@dataclass(frozen=True)
class ListedPoint:
    """One commit that changed a workspace, with the snapshot tags that restore to it."""

    commit: CommitInfo
    changes: str  # the commit subject without its "<source>/<workspace>: " prefix
    tags: tuple[str, ...]


def list_points(repo: GitRepo, folder: str) -> list[ListedPoint]:
    """Every restore point of ``folder``, newest first."""
    ref = repo.branch_ref()
    if repo.resolve_commit(ref) is None:
        return []
    touching = repo.history(ref, folder)
    touching_shas = {c.sha for c in touching}
    chain = [c.sha for c in repo.history(ref)]
    on_chain = set(chain)
    # For every commit of the branch: the newest commit at or before it that changed the folder.
    state_of: dict[str, str] = {}
    current: str | None = None
    for sha in reversed(chain):
        if sha in touching_shas:
            current = sha
        if current is not None:
            state_of[sha] = current
    tags: dict[str, list[str]] = {}
    for tag in repo.tags(TAG_PREFIX):
        if tag.commit in on_chain:
            state = state_of.get(tag.commit)
        else:  # a tag off the branch's first-parent line (rare): ask git
            state = repo.last_commit_touching(tag.commit, folder)
        if state is not None and repo.folder_exists(state, folder):
            tags.setdefault(state, []).append(tag.name)
    prefix = f"{folder}: "
    return [
        ListedPoint(
            commit=c,
            changes=c.subject.removeprefix(prefix),
            tags=tuple(sorted(tags.get(c.sha, ()))),
        )
        for c in touching
    ]


# --- what a workspace tree holds (pure) -------------------------------------------------------


@dataclass(frozen=True)
class StoredWorkspace:
    """A workspace folder at one commit, by DataArts name: per job its stored files (the
    ``.job`` first), each with the zip entry the export gave it; per standalone script its
    ``.script``. Paths are as stored at that commit."""

    jobs: Mapping[str, tuple[tuple[str, str], ...]]
    scripts: Mapping[str, str]


def read_workspace(paths: Iterable[str], index: WorkspaceIndex | None) -> StoredWorkspace:
    """What the paths of a workspace folder hold, per its index (None: names as stored).

    Reads whatever layout the commit has: the index says where each name is stored and what
    the export called each file; an older commit's names stored as they are, a job stored
    at ``jobs/<job>.job``, are found too (through the moves ``read_layout`` works out).
    """
    stored = sorted(paths)
    layout = read_layout(stored, index)
    back = {new: old for old, new in layout.moves.items()}
    folders: dict[str, list[str]] = {}
    for path in sorted(layout.moves.get(p, p) for p in stored):
        parts = path.split("/", 2)
        if len(parts) == 3 and parts[0] == JOBS_DIR:
            folders.setdefault(parts[1], []).append(parts[2])
    jobs: dict[str, tuple[tuple[str, str], ...]] = {}
    for name in sorted(layout.jobs):
        record = layout.jobs[name]
        folder = record.folder(name)
        job_file = f"{folder}{JOB_SUFFIX}"
        files = folders.get(folder, [])
        if job_file not in files:
            continue  # a folder without its job file is not a job
        ordered = [job_file, *(f for f in files if f != job_file)]
        jobs[name] = tuple(
            (
                back.get(f"{JOBS_DIR}/{folder}/{f}", f"{JOBS_DIR}/{folder}/{f}"),
                record.zip_entry(name, f),
            )
            for f in ordered
        )
    scripts = {
        name: back.get(path, path)
        for name in sorted(layout.scripts)
        for path in [f"{SCRIPTS_DIR}/{layout.scripts[name]}{SCRIPT_SUFFIX}"]
    }
    return StoredWorkspace(jobs, scripts)


def _index_of(files: Mapping[str, Any]) -> WorkspaceIndex | None:
    content = files.get(INDEX_FILE)
    if not isinstance(content, bytes):
        return None
    try:
        return WorkspaceIndex.parse(content)
    except ValueError:
        return None


def index_jobs(
    paths: Iterable[str], index: WorkspaceIndex | None = None
) -> dict[str, tuple[str, ...]]:
    """Job name → its stored files (relative to the workspace folder), the ``.job`` first."""
    workspace = read_workspace(paths, index)
    return {name: tuple(path for path, _ in files) for name, files in workspace.jobs.items()}


def depends_on(definition: Any) -> set[str]:
    """Jobs of the same workspace that ``definition`` (a parsed .job) waits for.

    Those named in ``schedule.cron.dependJobs.jobs`` and ``.sameWorkSpaceJobs`` (strings, or
    objects with a ``jobName``/``name``). ``otherWorkSpaceJobs`` live elsewhere: not followed.
    """
    if not isinstance(definition, dict):
        return set()
    schedule = definition.get("schedule")
    cron = schedule.get("cron") if isinstance(schedule, dict) else None
    depend = cron.get("dependJobs") if isinstance(cron, dict) else None
    if not isinstance(depend, dict):
        return set()
    names: set[str] = set()
    for key in ("jobs", "sameWorkSpaceJobs"):
        entries = depend.get(key)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if isinstance(entry, dict):
                entry = entry.get("jobName") or entry.get("name")
            if isinstance(entry, str) and entry:
                names.add(entry)
    return names


def dependents(definitions: Mapping[str, Any], chosen: Iterable[str]) -> set[str]:
    """Jobs that depend on any of ``chosen``, directly or through other jobs (not ``chosen``)."""
    waiting_for: dict[str, set[str]] = {}
    for name, definition in definitions.items():
        for upstream in depends_on(definition):
            waiting_for.setdefault(upstream, set()).add(name)
    chosen = set(chosen)
    found: set[str] = set()
    frontier = list(chosen)
    while frontier:
        for downstream in waiting_for.get(frontier.pop(), ()):
            if downstream not in found and downstream not in chosen:
                found.add(downstream)
                frontier.append(downstream)
    return found


def is_derived_view(path: str, files: Mapping[str, bytes]) -> bool:
    """True for a readable view that backupd rendered from the ``.script`` next to it."""
    suffix = suffix_of(path)
    if suffix not in VIEW_SUFFIXES:
        return False
    script = files.get(with_suffix(path, SCRIPT_SUFFIX))
    if script is None:
        return False
    try:
        view = script_view(parse_json(script))
    except ValueError:
        return False
    # A real exported file that merely shares the name differs from what we would render.
    return view is not None and view == (suffix, files[path])


def export_form(path: str, content: bytes) -> bytes:
    """The bytes to put in the zip: a definition compact (as the service writes it), any
    other file as it was exported."""
    if not is_definition_file(path):
        return content
    try:
        value = parse_json(content)
    except ValueError:
        return content
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def restore_entries(
    files: Mapping[str, bytes],
    jobs: Sequence[str],
    scripts: Sequence[str] = (),
    workspace: StoredWorkspace | None = None,
) -> dict[str, bytes]:
    """Zip entries (entry → bytes, in zip order) restoring ``jobs`` and standalone ``scripts``.

    ``files`` is the workspace tree (relative paths; its ``.backupd/index.json`` tells the
    exact names, unless ``workspace`` is given). Each file gets the entry name the export
    gave it; a file several jobs carry (a flat export's shared script) is one entry. Scripts
    already exported with a chosen job are not repeated under ``scripts/``.
    """
    return _entries(files, jobs, scripts, workspace)[0]


def _entries(
    files: Mapping[str, bytes],
    jobs: Sequence[str],
    scripts: Sequence[str],
    workspace: StoredWorkspace | None,
) -> tuple[dict[str, bytes], list[tuple[str, tuple[str, ...]]]]:
    """The entries, and per job (then per lone script) the entries it needs."""
    workspace = workspace or read_workspace(files, _index_of(files))
    entries: dict[str, bytes] = {}
    groups: list[tuple[str, tuple[str, ...]]] = []
    carried: set[str] = set()
    for job in jobs:
        needed: list[str] = []
        for path, entry in workspace.jobs[job]:
            if META_DIR in path.split("/") or is_derived_view(path, files):
                continue
            if entry not in entries:
                entries[entry] = export_form(entry, files[path])
            needed.append(entry)
            if entry.endswith(SCRIPT_SUFFIX):
                carried.add(entry.rpartition("/")[2][: -len(SCRIPT_SUFFIX)])
        groups.append((job, tuple(needed)))
    for script in scripts:
        entry = f"{SCRIPTS_DIR}/{script}{SCRIPT_SUFFIX}"
        if script in carried or entry in entries:
            continue
        entries[entry] = export_form(entry, files[workspace.scripts[script]])
        groups.append(("", (entry,)))
    return entries, groups


def zip_bytes(entries: Mapping[str, bytes], stamp: datetime) -> bytes:
    """A deflated zip of ``entries``; names UTF-8 (flagged), every entry dated ``stamp``."""
    moment = stamp.astimezone(UTC)
    date_time = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def split_entries(
    entries: Mapping[str, bytes],
    max_bytes: int,
    groups: Sequence[tuple[str, Sequence[str]]] | None = None,
) -> list[dict[str, bytes]]:
    """Split entries into parts of at most ``max_bytes`` (uncompressed) without splitting a job.

    ``groups``: (job, the entries it needs) in order (a job's scripts travel with it; a
    shared one goes into every part that needs it); by default a job is a ``jobs/<job>/``
    folder. A single job larger than the limit is an error.
    """
    return [part for _, part in split_groups(entries, max_bytes, groups)]


def split_groups(
    entries: Mapping[str, bytes],
    max_bytes: int,
    groups: Sequence[tuple[str, Sequence[str]]] | None = None,
) -> list[tuple[list[str], dict[str, bytes]]]:
    """``split_entries`` with the jobs of each part."""
    if groups is None:
        by_folder: dict[str, list[str]] = {}
        for path in entries:
            parts = path.split("/")
            key = f"job:{parts[1]}" if parts[0] == "jobs" and len(parts) == 3 else f"file:{path}"
            by_folder.setdefault(key, []).append(path)
        groups = [
            (key.split(":", 1)[1] if key.startswith("job:") else "", paths)
            for key, paths in by_folder.items()
        ]
    result: list[tuple[list[str], dict[str, bytes]]] = []
    jobs: list[str] = []
    current: dict[str, bytes] = {}
    for job, paths in groups:
        group = {path: entries[path] for path in paths}
        group_size = sum(len(data) for data in group.values())
        if group_size > max_bytes:
            name = job or next(iter(group), "")
            raise RestoreError(
                f"{name} alone is {group_size} bytes, more than the {max_bytes} bytes DataArts "
                "imports at once"
            )
        added = {path: data for path, data in group.items() if path not in current}
        size = sum(len(data) for data in current.values())
        if current and size + sum(len(d) for d in added.values()) > max_bytes:
            result.append((jobs, current))
            jobs, current, added = [], {}, group
        current.update(added)
        if job:
            jobs.append(job)
    if current:
        result.append((jobs, current))
    return result


# --- the plan: git → entries -------------------------------------------------------------------


@dataclass(frozen=True)
class RestorePlan:
    """Everything a restore will put into the zip, and why."""

    folder: str  # <source>/<workspace>
    point: RestorePoint
    jobs: tuple[str, ...]  # every job restored, sorted
    dependents: tuple[str, ...]  # the part of ``jobs`` added by --with-dependents
    job_scripts: tuple[str, ...]  # scripts exported with the jobs
    scripts: tuple[str, ...]  # other scripts, as scripts/<s>.script
    entries: Mapping[str, bytes]
    # (job, the entries it needs) in order; a lone script's job is "" (split_entries).
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.entries.values())

    def zip(self) -> bytes:
        return zip_bytes(self.entries, self.point.time)

    def parts(self, max_bytes: int) -> list[tuple[list[str], dict[str, bytes]]]:
        """The zips an import in parts sends: (their jobs, their entries)."""
        return split_groups(self.entries, max_bytes, self.groups or None)


def read_stored_workspace(repo: GitRepo, oids: Mapping[str, str]) -> StoredWorkspace:
    """The workspace folder whose files are ``oids``, by DataArts name.

    Without an index (lost, unreadable), a job folder with an encoded name is named by the
    ``name`` its job file holds.
    """
    index = None
    if INDEX_FILE in oids:
        try:
            index = WorkspaceIndex.parse(repo.read_blobs([oids[INDEX_FILE]])[oids[INDEX_FILE]])
        except ValueError:
            index = None
    workspace = read_workspace(oids, index)
    unnamed = {
        name: files[0][0]
        for name, files in workspace.jobs.items()
        if (index is None or name not in index.jobs) and looks_encoded(name)
    }
    if not unnamed:
        return workspace
    contents = _read(repo, oids, unnamed.values())
    jobs = dict(workspace.jobs)
    for folder, path in unnamed.items():
        definition = _parse_or_none(contents[path])
        name = definition.get("name") if isinstance(definition, dict) else None
        if isinstance(name, str) and is_component_of(folder, name) and name not in jobs:
            files = jobs.pop(folder)
            jobs[name] = tuple(
                (stored, f"{JOBS_DIR}/{name}/" + entry.split("/", 2)[2].replace(folder, name, 1))
                if entry.startswith(f"{JOBS_DIR}/{folder}/")
                else (stored, entry)
                for stored, entry in files
            )
    return StoredWorkspace(dict(sorted(jobs.items())), workspace.scripts)


def plan_restore(
    repo: GitRepo,
    folder: str,
    *,
    at: str | None = None,
    jobs: Sequence[str] = (),
    with_dependents: bool = False,
    all_scripts: bool | None = None,
) -> RestorePlan:
    """What restoring ``jobs`` (default: all) of ``folder`` at ``at`` means, read from git.

    ``all_scripts`` adds every other script of the workspace under ``scripts/``; by default
    it does so when the whole workspace is restored (no ``jobs``).
    """
    point = resolve_point(repo, folder, at)
    oids = repo.list_files(point.commit, folder)
    workspace = read_stored_workspace(repo, oids)
    wanted = list(dict.fromkeys(jobs)) or list(workspace.jobs)
    missing = [name for name in wanted if name not in workspace.jobs]
    if missing:
        raise RestoreError(_missing_job_message(repo, folder, point, missing, workspace))
    chosen = set(wanted)
    added: set[str] = set()
    if with_dependents:
        job_files = {name: files[0][0] for name, files in workspace.jobs.items()}
        contents = _read(repo, oids, job_files.values())
        definitions = {name: _parse_or_none(contents[path]) for name, path in job_files.items()}
        added = dependents(definitions, chosen)
    selected = sorted(chosen | added)
    include_all = all_scripts if all_scripts is not None else not jobs
    scripts = list(workspace.scripts) if include_all else []
    needed = [path for job in selected for path, _ in workspace.jobs[job]]
    needed += [workspace.scripts[name] for name in scripts]
    files = _read(repo, oids, needed)
    entries, groups = _entries(files, selected, scripts, workspace)
    job_entries = {entry for job, needed_entries in groups if job for entry in needed_entries}
    carried = sorted(
        {
            entry.rpartition("/")[2][: -len(SCRIPT_SUFFIX)]
            for entry in job_entries
            if entry.endswith(SCRIPT_SUFFIX)
        }
    )
    return RestorePlan(
        folder=folder,
        point=point,
        jobs=tuple(selected),
        dependents=tuple(sorted(added)),
        job_scripts=tuple(carried),
        scripts=tuple(
            entries_of[0][len(SCRIPTS_DIR) + 1 : -len(SCRIPT_SUFFIX)]
            for job, entries_of in groups
            if not job
        ),
        entries=entries,
        groups=tuple(groups),
    )


def _read(repo: GitRepo, oids: Mapping[str, str], paths: Iterable[str]) -> dict[str, bytes]:
    paths = list(paths)
    blobs = repo.read_blobs(oids[p] for p in paths)
    return {p: blobs[oids[p]] for p in paths}


def _parse_or_none(content: bytes) -> Any:
    try:
        return parse_json(content)
    except ValueError:
        return None


def job_paths(folder: str, name: str) -> list[str]:
    """Every path a job can have been stored under in ``folder`` (its folder under the name
    mapping's forms, and ``jobs/<job>.job`` as an older backupd stored some)."""
    return [f"{folder}/{JOBS_DIR}/{c}" for c in candidates(name)] + [
        f"{folder}/{JOBS_DIR}/{name}{JOB_SUFFIX}"
    ]


def _missing_job_message(
    repo: GitRepo,
    folder: str,
    point: RestorePoint,
    missing: Sequence[str],
    workspace: StoredWorkspace,
) -> str:
    name = missing[0]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    text = f"no job {name!r}{more} in {folder} at {point.describe()}"
    paths = job_paths(folder, name)
    touched = repo.log(repo.branch_ref(), paths, max_count=1, first_parent=True)
    if touched:
        info = touched[0]
        last = info.sha
        if any(repo.folder_exists(last, path) for path in paths):
            text += (
                f"; it exists in a later snapshot (commit {last[:10]} of {format_time(info.time)})"
            )
        else:
            text += (
                f"; it was deleted by commit {last[:10]} of {format_time(info.time)} "
                f"(restore it with --at {last[:10]}~1)"
            )
    else:
        close = difflib.get_close_matches(name, list(workspace.jobs), n=3)
        text += "; no snapshot ever held it"
        if close:
            text += f" (did you mean {', '.join(repr(c) for c in close)}?)"
    return text


# --- output -----------------------------------------------------------------------------------


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    Either the complete file appears, or nothing does (no partial zip on any error).
    """
    directory = path.parent
    if not directory.is_dir():
        raise RestoreError(f"cannot write {path}: folder {directory} does not exist")
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise RestoreError(f"cannot write {path}: {error.strerror or error}") from None
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.chmod(0o644)
        temporary.replace(path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise RestoreError(f"cannot write {path}: {error.strerror or error}") from None
        raise
