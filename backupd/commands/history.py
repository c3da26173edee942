"""Reading the history back: the changes of a job or workspace, and a job as it was.

Thin layers over git (``git log -- path``, ``git rev-list -1 --before=DATE``, ``git show
REV:path``): the repository is the only history there is. Jobs are named as DataArts names
them; where a job is stored comes from the workspace index of the commit asked about (and,
for its whole history, from every path the name mapping can have given it). A job renamed
in DataArts keeps its history: the commit that recorded the rename lists it
(``renamed: OLD → NEW``), and the history of the new name goes on with that of the old.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING

from backupd.commands.scope import choose
from backupd.config import Config, load_config
from backupd.errors import (
    EXIT_OK,
    UsageError,
    UserError,
)
from backupd.restore.plan import job_paths
from backupd.store.gitrepo import CommitInfo, GitRepo
from backupd.store.index import WorkspaceIndex
from backupd.store.layout import INDEX_FILE
from backupd.store.pathmap import candidates
from backupd.store.renames import pair_renames
from backupd.store.summary import MOVED, RENAMED, shown
from backupd.store.volatile import FieldPath
from backupd.wiring import volatile_rules

if TYPE_CHECKING:
    pass

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]|$)")

MAX_RENAMES_FOLLOWED = 20  # earlier names a job's history goes back through, at most


@dataclass(frozen=True)
class Scope:
    """Which workspace folders (``source/folder``) and which job a command is about."""

    folders: tuple[str, ...]
    job: str | None = None


def stored_job_folder(repo: GitRepo, commit: str, folder: str, job: str) -> str | None:
    """Where ``job`` of workspace ``folder`` is stored at ``commit`` (its folder under
    jobs/, or None when it holds no such job): as the commit's index says, else as the name
    mapping or an older backupd would have stored it."""
    content = repo.read_file(commit, f"{folder}/{INDEX_FILE}")
    if content is not None:
        try:
            stored = WorkspaceIndex.parse(content).job_folder(job)
        except ValueError:
            stored = None
        if stored is not None and repo.read_file(commit, job_file(folder, stored)) is not None:
            return stored
    for candidate in candidates(job):
        if repo.read_file(commit, job_file(folder, candidate)) is not None:
            return candidate
    return None


def job_file(folder: str, component: str) -> str:
    return f"{folder}/jobs/{component}/{component}.job"


@dataclass(frozen=True)
class Change:
    """One commit in the history of a scope."""

    info: CommitInfo
    folder: str | None  # the workspace, for a job's history
    what: str  # the commit subject, or added/changed/removed/renamed … for a job
    job: str | None = None  # the job's name then, where it is not the name asked about


@dataclass(frozen=True)
class JobView:
    folder: str
    commit: CommitInfo
    files: tuple[tuple[str, bytes], ...]  # (path, content); the .job file first
    exported: dict[str, str] = field(default_factory=dict)  # path → zip entry, if named else
    name: str | None = None  # the job's name at that commit (renamed since), if not asked


def resolve_scope(
    config: Config,
    *,
    source: str | None = None,
    workspace: str | None = None,
    job: str | None = None,
) -> Scope:
    """The workspaces matching the options (all of them by default), discovered ones too."""
    folders = tuple(w.label for w in choose(config, source, workspace))
    if job is not None and (not job or "/" in job):  # DataArts allows no "/" in a name
        raise UsageError(f"{job!r} is not a job name")
    return Scope(folders, job)


def changes(
    repo: GitRepo,
    scope: Scope,
    *,
    max_count: int | None = None,
    volatile: Sequence[FieldPath] = (),
) -> list[Change]:
    """Commits touching the scope, newest first.

    A job's history goes on through its renames: a commit that renamed it says so ("renamed
    from OLD", "renamed to NEW"), and the history of the name it had before follows (up to
    ``MAX_RENAMES_FOLLOWED`` names back). ``volatile``: the volatile fields of a ``.job``,
    for telling renames apart in a commit whose message does not list them all.
    """
    branch = _branch(repo)
    if scope.job is None:
        infos = repo.log(branch, scope.folders, max_count=max_count)
        return [Change(info, None, info.subject) for info in infos]
    found: list[Change] = []
    for folder in scope.folders:
        found += _job_history(repo, branch, folder, scope.job, max_count, volatile)
    found.sort(key=lambda change: change.info.time, reverse=True)
    return found[:max_count] if max_count else found


def _job_history(
    repo: GitRepo,
    branch: str,
    folder: str,
    job: str,
    max_count: int | None,
    volatile: Sequence[FieldPath],
) -> list[Change]:
    """The changes of ``job`` in ``folder``, and of the names it had before, newest first."""
    found: list[Change] = []
    seen: set[tuple[str, str]] = set()  # (commit, name): a name given back is not repeated
    pending = [(branch, job)]  # (the revision its history ends at, a name the job had)
    followed = 0
    while pending:
        revision, name = pending.pop(0)
        for change in _name_history(repo, revision, folder, name, max_count):
            if (change.info.sha, name) in seen:
                continue
            seen.add((change.info.sha, name))
            if change.what in ("added", "removed"):
                renames = renames_in(repo, change.info.sha, folder, volatile)
                if change.what == "added" and (old := _old_name(renames, name)) is not None:
                    change = dataclasses.replace(change, what=f"renamed from {shown(old)}")
                    parent = repo.resolve_commit(f"{change.info.sha}^")
                    if parent is not None and followed < MAX_RENAMES_FOLLOWED:
                        followed += 1
                        pending.append((parent, old))
                elif change.what == "removed" and (new := _new_name(renames, name)) is not None:
                    change = dataclasses.replace(change, what=f"renamed to {shown(new)}")
            found.append(change if name == job else dataclasses.replace(change, job=name))
    return found


def _name_history(
    repo: GitRepo, revision: str, folder: str, job: str, max_count: int | None
) -> list[Change]:
    """The commits up to ``revision`` that touched a job named ``job``, newest first."""
    places = job_paths(folder, job)  # every path the job can have had
    files = [job_file(folder, c) for c in candidates(job)] + places[-1:]
    added = {i.sha for i in repo.log(revision, files, diff_filter="A")}
    removed = {i.sha for i in repo.log(revision, files, diff_filter="D")}
    found: list[Change] = []
    for info in repo.log(revision, places, max_count=max_count):
        if (info.sha in added and info.sha in removed) or info.subject.endswith(MOVED):
            what = "moved (content unchanged)"
        else:
            what = "added" if info.sha in added else "removed" if info.sha in removed else ""
        found.append(Change(info, folder, what or "changed"))
    return found


def _old_name(renames: Sequence[tuple[str, str]], new: str) -> str | None:
    return next((old for old, renamed in renames if renamed == new), None)


def _new_name(renames: Sequence[tuple[str, str]], old: str) -> str | None:
    return next((new for renamed, new in renames if renamed == old), None)


def renames_in(
    repo: GitRepo, commit: str, folder: str, volatile: Sequence[FieldPath] = ()
) -> list[tuple[str, str]]:
    """The job renames (old, new) that ``commit`` recorded in workspace ``folder``.

    Its message lists them (``renamed: OLD → NEW``, names as ``shown()`` gives them), among
    the jobs its index lost and gained. When the list was cut short, the job files decide
    as the snapshot did (store/renames.py).
    """
    lines = [line for line in repo.message(commit).splitlines() if line.startswith(RENAMED)]
    if not lines:
        return []
    parent = repo.resolve_commit(f"{commit}^")
    before = _indexed_jobs(repo, parent, folder) if parent is not None else None
    after = _indexed_jobs(repo, commit, folder)
    if before is None or after is None or parent is None:
        return []
    removed = {shown(n): n for n in before.jobs if n not in after.jobs}
    added = {shown(n): n for n in after.jobs if n not in before.jobs}
    if not removed or not added:
        return []
    if lines[-1].startswith(f"{RENAMED}… and "):  # cut short: not every rename is listed
        return pair_renames(
            _job_files(repo, parent, folder, before, removed.values()),
            _job_files(repo, commit, folder, after, added.values()),
            volatile,
        )
    pairs: list[tuple[str, str]] = []
    for line in lines:
        body = line[len(RENAMED) :]
        # OLD → NEW, then " (by USER)" when known: try each way to split it.
        for at in _find_all(body, " → "):
            old, rest = body[:at], body[at + len(" → ") :]
            ends = [len(rest), *_find_all(rest, " (by ")]
            new = next((added[rest[:end]] for end in ends if rest[:end] in added), None)
            if old in removed and new is not None:
                pairs.append((removed[old], new))
                break
    return pairs


def _find_all(text: str, part: str) -> list[int]:
    found, at = [], text.find(part)
    while at >= 0:
        found.append(at)
        at = text.find(part, at + 1)
    return found


def _indexed_jobs(repo: GitRepo, commit: str, folder: str) -> WorkspaceIndex | None:
    content = repo.read_file(commit, f"{folder}/{INDEX_FILE}")
    try:
        return WorkspaceIndex.parse(content) if content is not None else None
    except ValueError:
        return None


def _job_files(
    repo: GitRepo, commit: str, folder: str, index: WorkspaceIndex, jobs: Iterable[str]
) -> dict[str, bytes]:
    """Job name → its .job file at ``commit``, for those of ``jobs`` it holds."""
    contents: dict[str, bytes] = {}
    for job in jobs:
        component = index.job_folder(job) or job
        content = repo.read_file(commit, job_file(folder, component))
        if content is not None:
            contents[job] = content
    return contents


def parse_moment(text: str) -> datetime | None:
    """An ISO date or date-time as UTC, or None when ``text`` is no date (then a revision).

    A date alone means the end of that UTC day (its last snapshot); a time without an
    offset is UTC.
    """
    if not _ISO_DATE.match(text):
        return None  # e.g. a sha of digits only, which fromisoformat might take for a date
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        return None
    if len(text) == len("2026-11-29"):
        moment = datetime.combine(moment.date(), time.max)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def resolve_revision(repo: GitRepo, at: str | None) -> str:
    """The commit named by ``at``: a date (the last snapshot then), a revision, or HEAD."""
    branch = _branch(repo)
    if at is None:
        return _required(repo.resolve_commit(branch), f"branch {repo.branch!r} has no snapshot")
    moment = parse_moment(at)
    if moment is None:
        return _required(repo.resolve_commit(at), f"{at!r} is neither a date nor a known revision")
    when = format_time(moment)
    return _required(repo.commit_at(branch, moment), f"no snapshot at or before {when}")


def show_job(
    repo: GitRepo,
    scope: Scope,
    *,
    at: str | None = None,
    with_scripts: bool = False,
    volatile: Sequence[FieldPath] = (),
) -> JobView:
    """The job's files as of ``at``; the scope must hold it in exactly one workspace.

    A job renamed since ``at`` is found under the name it had then (``JobView.name``).
    """
    if scope.job is None:
        raise UsageError("name a job to show")
    commit = resolve_revision(repo, at)
    info = repo.commit_info(commit)
    names = dict.fromkeys(scope.folders, scope.job)
    stored = {
        folder: stored_job_folder(repo, commit, folder, scope.job) for folder in scope.folders
    }
    holding = [folder for folder in scope.folders if stored[folder] is not None]
    if not holding:
        for folder in scope.folders:
            earlier = _name_at(repo, folder, scope.job, commit, volatile)
            if earlier is not None:
                names[folder] = earlier
                stored[folder] = stored_job_folder(repo, commit, folder, earlier)
        holding = [folder for folder in scope.folders if stored[folder] is not None]
    if not holding:
        where = " or ".join(scope.folders)
        raise UserError(
            f"job {scope.job!r} did not exist in {where} at {info.sha[:10]} "
            f"({format_time(info.time)})"
        )
    if len(holding) > 1:
        raise UsageError(
            f"job {scope.job!r} exists in {', '.join(holding)}; choose one with --workspace"
        )
    folder = holding[0]
    name = names[folder]
    component = stored[folder] or name
    main = job_file(folder, component)
    paths = [main]
    if with_scripts:
        job_folder = f"{folder}/jobs/{component}"
        paths += [
            f"{job_folder}/{p}"
            for p in repo.list_files(commit, job_folder)
            if f"{job_folder}/{p}" != main
        ]
    files = tuple((path, repo.read_file(commit, path) or b"") for path in paths)
    exported = _exported_names(repo, commit, folder, name, paths)
    return JobView(folder, info, files, exported, name)


def _name_at(
    repo: GitRepo, folder: str, job: str, commit: str, volatile: Sequence[FieldPath]
) -> str | None:
    """The name ``job`` had at ``commit`` when it was renamed since (None: it was not, or
    did not exist then): back from the first rename to its name after ``commit``."""
    branch, name = _branch(repo), job
    for _ in range(MAX_RENAMES_FOLLOWED):
        files = [job_file(folder, c) for c in candidates(name)]
        later = [
            info
            for info in repo.log(branch, files, diff_filter="A")
            if info.sha != commit and repo.is_ancestor(commit, info.sha)
        ]
        if not later:
            return None
        old = _old_name(renames_in(repo, later[-1].sha, folder, volatile), name)
        if old is None:
            return None
        if stored_job_folder(repo, commit, folder, old) is not None:
            return old
        name = old
    return None


def _exported_names(
    repo: GitRepo, commit: str, folder: str, job: str, paths: Sequence[str]
) -> dict[str, str]:
    """Stored path → the zip entry the export gave it, where the file name differs."""
    content = repo.read_file(commit, f"{folder}/{INDEX_FILE}")
    try:
        record = WorkspaceIndex.parse(content).jobs.get(job) if content is not None else None
    except ValueError:
        record = None
    if record is None:
        return {}
    names: dict[str, str] = {}
    for path in paths:
        stored = path.rpartition("/")[2]
        entry = record.zip_entry(job, stored)
        if entry.rpartition("/")[2] != stored:
            names[path] = entry
    return names


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_changes(found: Sequence[Change], scope: Scope) -> list[str]:
    lines = []
    for change in found:
        info = change.info
        what = change.what
        if change.folder is not None:
            what = f"{change.folder}: {shown(change.job or scope.job or '')} {change.what}"
        tags = f"  [{', '.join(info.tags)}]" if info.tags else ""
        lines.append(f"{format_time(info.time)}  {info.sha[:10]}  {info.author}  {what}{tags}")
    return lines


def _branch(repo: GitRepo) -> str:
    return f"refs/heads/{repo.branch}"


def _required(commit: str | None, problem: str) -> str:
    if commit is None:
        raise UserError(problem)
    return commit


def cmd_log(args: argparse.Namespace) -> int:
    from backupd.commands.history import changes, format_changes, resolve_scope
    from backupd.store.gitrepo import GitRepo

    config = load_config(args.config)
    if args.max_count is not None and args.max_count < 1:
        raise UsageError("--max-count must be at least 1")
    scope = resolve_scope(config, source=args.source, workspace=args.workspace, job=args.job)
    volatile = volatile_rules(config).by_suffix.get(".job", ())
    with GitRepo.open_existing(config.repository.path, branch=config.repository.branch) as repo:
        found = changes(repo, scope, max_count=args.max_count, volatile=volatile)
    if not found and scope.job is not None:
        raise UserError(f"no recorded change of job {scope.job!r} in {', '.join(scope.folders)}")
    for line in format_changes(found, scope):
        print(line)  # noqa: T201
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from backupd.commands.history import format_time, resolve_scope, show_job
    from backupd.store.gitrepo import GitRepo

    config = load_config(args.config)
    scope = resolve_scope(config, source=args.source, workspace=args.workspace, job=args.job)
    volatile = volatile_rules(config).by_suffix.get(".job", ())
    with GitRepo.open_existing(config.repository.path, branch=config.repository.branch) as repo:
        view = show_job(repo, scope, at=args.at, with_scripts=args.scripts, volatile=volatile)
    if args.at is not None:
        when = format_time(view.commit.time)
        then = f", then named {shown(view.name)}" if view.name not in (None, args.job) else ""
        print(  # noqa: T201
            f"backupd: job {shown(args.job)} of {view.folder} as of {view.commit.sha[:10]} "
            f"({when}{then})",
            file=sys.stderr,
        )
    output = sys.stdout.buffer
    for index, (path, content) in enumerate(view.files):
        if args.scripts:
            separator = "" if index == 0 else "\n"
            exported = view.exported.get(path)
            named = f" ({shown(exported.rpartition('/')[2])})" if exported else ""
            output.write(f"{separator}==> {path}{named} <==\n".encode())
        output.write(content)
    output.flush()
    return EXIT_OK
