"""Rebuild an importable ``jobs.zip`` of a workspace at any point of its history.

Only the git repository is read (objects, never the working tree; no lock, no API), so a
restore works from a fresh clone while DataArts Studio is down. The zip has the batch-export
layout, ``jobs/<job>/<job>.job`` plus the ``.script`` files exported with each job, and,
optionally, the workspace's other scripts as ``scripts/<script>.script`` (the layout of a
single-job export). Derived views (``.sql``/``.sh``/``.py`` rendered from a ``.script``) and
``.backupd/`` metadata are never part of it. JSON files are re-serialised compactly, as the
service writes them: same values, smaller zip (DataArts imports at most 10 MB).

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
from pathlib import Path, PurePosixPath
from typing import Any

from backupd.errors import RestoreError
from backupd.store.gitrepo import CommitInfo, GitRepo
from backupd.store.normalise import VIEW_SUFFIXES, is_json_file, parse_json, script_view
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


def index_jobs(paths: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Job name → its files (relative to the workspace folder), the ``.job`` file first.

    A job is ``jobs/<job>/<job>.job`` with the other files of that folder (the batch-export
    layout), or a lone ``jobs/<job>.job`` (the single-export layout).
    """
    folders: dict[str, list[str]] = {}
    flat: dict[str, str] = {}
    for path in paths:
        parts = PurePosixPath(path).parts
        if len(parts) == 3 and parts[0] == "jobs":
            folders.setdefault(parts[1], []).append(path)
        elif len(parts) == 2 and parts[0] == "jobs" and parts[1].endswith(".job"):
            flat[parts[1][: -len(".job")]] = path
    jobs: dict[str, tuple[str, ...]] = {}
    for name, files in folders.items():
        job_file = f"jobs/{name}/{name}.job"
        if job_file in files:
            jobs[name] = (job_file, *sorted(f for f in files if f != job_file))
    for name, path in flat.items():
        jobs.setdefault(name, (path,))
    return dict(sorted(jobs.items()))


def standalone_scripts(paths: Iterable[str]) -> dict[str, str]:
    """Script name → path of every ``scripts/<script>.script`` of the workspace."""
    scripts: dict[str, str] = {}
    for path in paths:
        parts = PurePosixPath(path).parts
        if len(parts) == 2 and parts[0] == "scripts" and parts[1].endswith(".script"):
            scripts[parts[1][: -len(".script")]] = path
    return dict(sorted(scripts.items()))


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
    pure = PurePosixPath(path)
    if pure.suffix not in VIEW_SUFFIXES:
        return False
    script = files.get(str(pure.with_suffix(".script")))
    if script is None:
        return False
    try:
        view = script_view(parse_json(script))
    except ValueError:
        return False
    # A real exported file that merely shares the name differs from what we would render.
    return view is not None and view == (pure.suffix, files[path])


def export_form(path: str, content: bytes) -> bytes:
    """The bytes to put in the zip: JSON compact (as the service writes it), the rest as is."""
    if not is_json_file(path):
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
) -> dict[str, bytes]:
    """Zip entries (path → bytes, in zip order) restoring ``jobs`` and standalone ``scripts``.

    ``files`` is the workspace tree (relative paths). Scripts already exported with a chosen
    job are not repeated under ``scripts/``.
    """
    index = index_jobs(files)
    entries: dict[str, bytes] = {}
    carried: set[str] = set()
    for job in jobs:
        for path in index[job]:
            if META_DIR in PurePosixPath(path).parts or is_derived_view(path, files):
                continue
            entries[path] = export_form(path, files[path])
            if path.endswith(".script"):
                carried.add(PurePosixPath(path).stem)
    for script in scripts:
        if script in carried:
            continue
        path = f"scripts/{script}.script"
        entries[path] = export_form(path, files[path])
    return entries


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


def split_entries(entries: Mapping[str, bytes], max_bytes: int) -> list[dict[str, bytes]]:
    """Split entries into parts of at most ``max_bytes`` (uncompressed) without splitting a job.

    A job travels with its scripts; a single job larger than the limit is an error.
    """
    groups: dict[str, dict[str, bytes]] = {}
    for path, data in entries.items():
        parts = PurePosixPath(path).parts
        key = f"job:{parts[1]}" if parts[0] == "jobs" and len(parts) == 3 else f"file:{path}"
        groups.setdefault(key, {})[path] = data
    result: list[dict[str, bytes]] = []
    current: dict[str, bytes] = {}
    size = 0
    for key, group in groups.items():
        group_size = sum(len(data) for data in group.values())
        if group_size > max_bytes:
            name = key.split(":", 1)[1]
            raise RestoreError(
                f"{name} alone is {group_size} bytes, more than the {max_bytes} bytes DataArts "
                "imports at once"
            )
        if current and size + group_size > max_bytes:
            result.append(current)
            current, size = {}, 0
        current.update(group)
        size += group_size
    if current:
        result.append(current)
    return result


# --- the plan: git → entries -------------------------------------------------------------------


@dataclass(frozen=True)
class RestorePlan:
    """Everything a restore will put into the zip, and why."""

    folder: str  # <source>/<workspace>
    point: RestorePoint
    jobs: tuple[str, ...]  # every job restored, sorted
    dependents: tuple[str, ...]  # the part of ``jobs`` added by --with-dependents
    job_scripts: tuple[str, ...]  # scripts exported with the jobs (jobs/<job>/<s>.script)
    scripts: tuple[str, ...]  # other scripts, as scripts/<s>.script
    entries: Mapping[str, bytes]

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.entries.values())

    def zip(self) -> bytes:
        return zip_bytes(self.entries, self.point.time)


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
    index = index_jobs(oids)
    wanted = list(dict.fromkeys(jobs)) or list(index)
    missing = [name for name in wanted if name not in index]
    if missing:
        raise RestoreError(_missing_job_message(repo, folder, point, missing, index))
    chosen = set(wanted)
    added: set[str] = set()
    if with_dependents:
        job_files = {name: paths[0] for name, paths in index.items()}
        contents = _read(repo, oids, job_files.values())
        definitions = {name: _parse_or_none(contents[path]) for name, path in job_files.items()}
        added = dependents(definitions, chosen)
    selected = sorted(chosen | added)
    include_all = all_scripts if all_scripts is not None else not jobs
    scripts = list(standalone_scripts(oids)) if include_all else []
    needed = [p for job in selected for p in index[job]]
    needed += [f"scripts/{name}.script" for name in scripts]
    files = _read(repo, oids, needed)
    entries = restore_entries(files, selected, scripts)
    carried = sorted(
        {PurePosixPath(p).stem for p in entries if p.startswith("jobs/") and p.endswith(".script")}
    )
    return RestorePlan(
        folder=folder,
        point=point,
        jobs=tuple(selected),
        dependents=tuple(sorted(added)),
        job_scripts=tuple(carried),
        scripts=tuple(p[len("scripts/") : -len(".script")] for p in entries if _is_standalone(p)),
        entries=entries,
    )


def _is_standalone(path: str) -> bool:
    return path.startswith("scripts/") and path.endswith(".script")


def _read(repo: GitRepo, oids: Mapping[str, str], paths: Iterable[str]) -> dict[str, bytes]:
    paths = list(paths)
    blobs = repo.read_blobs(oids[p] for p in paths)
    return {p: blobs[oids[p]] for p in paths}


def _parse_or_none(content: bytes) -> Any:
    try:
        return parse_json(content)
    except ValueError:
        return None


def _missing_job_message(
    repo: GitRepo,
    folder: str,
    point: RestorePoint,
    missing: Sequence[str],
    index: Mapping[str, Any],
) -> str:
    name = missing[0]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    text = f"no job {name!r}{more} in {folder} at {point.describe()}"
    last = repo.last_commit_touching(repo.branch_ref(), f"{folder}/jobs/{name}")
    if last is not None:
        info = repo.commit_info(last)
        if repo.folder_exists(last, f"{folder}/jobs/{name}"):
            text += (
                f"; it exists in a later snapshot (commit {last[:10]} of {format_time(info.time)})"
            )
        else:
            text += (
                f"; it was deleted by commit {last[:10]} of {format_time(info.time)} "
                f"(restore it with --at {last[:10]}~1)"
            )
    else:
        close = difflib.get_close_matches(name, list(index), n=3)
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
