"""What a ChangeSet means in DataArts terms (jobs, scripts, resources), and the commit message."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from backupd.store.names import stem_of, suffix_of
from backupd.store.tree import ChangeSet, PackedPaths

MAX_LISTED = 200  # names listed per section of a commit body; the rest are counted


@dataclass(frozen=True)
class ChangeSummary:
    """Names in sorted order, each once (packed: a first snapshot of a large workspace names
    thousands of jobs and scripts, and its commit message lists only the first of them)."""

    jobs_added: Sequence[str] = ()
    jobs_changed: Sequence[str] = ()
    jobs_removed: Sequence[str] = ()
    scripts_added: Sequence[str] = ()
    scripts_changed: Sequence[str] = ()
    scripts_removed: Sequence[str] = ()
    resources_added: Sequence[str] = ()
    resources_changed: Sequence[str] = ()
    resources_removed: Sequence[str] = ()


def job_of(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) >= 2 and parts[0] == "jobs":
        return stem_of(parts[1]) if len(parts) == 2 else parts[1]
    return None


def is_job_file(path: str) -> bool:
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "jobs":  # jobs/<job>/<job>.job
        return parts[2] == f"{parts[1]}.job"
    return len(parts) == 2 and parts[0] == "jobs" and parts[1].endswith(".job")


def _sorted_names(names: Iterable[str | None]) -> list[str]:
    """Each name once, sorted; a sorted list rather than a set, which for the thousands of
    names of a first snapshot holds a table several times their number."""
    return [name for name, _ in itertools.groupby(sorted(n for n in names if n is not None))]


def _holds(names: list[str], name: str) -> bool:
    """Whether sorted ``names`` holds ``name``."""
    at = bisect.bisect_left(names, name)
    return at < len(names) and names[at] == name


def _sorted_unless(names: Iterable[str | None], *others: list[str]) -> list[str]:
    """Each name once, sorted, but none of those in the sorted lists ``others``."""
    return _sorted_names(
        n for n in names if n is not None and not any(_holds(other, n) for other in others)
    )


def summarise(changes: ChangeSet) -> ChangeSummary:
    """Jobs, scripts and resources touched by ``changes`` (paths relative to a workspace).

    Each kind of path is gone over once (a first snapshot adds five paths a job, packed:
    every pass decodes them all again).
    """
    added = _Kinds(changes.added)
    modified = _Kinds(changes.modified)
    removed = _Kinds(changes.removed)
    jobs_added = _sorted_names(added.job_files)
    jobs_removed = _sorted_names(removed.job_files)
    jobs_changed = _sorted_unless(
        itertools.chain(added.jobs, modified.jobs, removed.jobs), jobs_added, jobs_removed
    )
    scripts_added = _sorted_names(added.standalone_scripts)
    scripts_removed = _sorted_names(removed.standalone_scripts)
    # A script a job depends on is repeated in each job folder: any modified copy names it.
    # Copies that appear or vanish with their job are that job's change, not the script's.
    scripts_changed = _sorted_unless(modified.scripts, scripts_added, scripts_removed)
    # Resources the same way: resources/ holds them all; copies exported with a job count
    # as changed when modified.
    resources_added = _sorted_names(added.listed_resources)
    resources_removed = _sorted_names(removed.listed_resources)
    resources_changed = _sorted_unless(modified.resources, resources_added, resources_removed)
    return ChangeSummary(
        jobs_added=PackedPaths(jobs_added),
        jobs_changed=PackedPaths(jobs_changed),
        jobs_removed=PackedPaths(jobs_removed),
        scripts_added=PackedPaths(scripts_added),
        scripts_changed=PackedPaths(scripts_changed),
        scripts_removed=PackedPaths(scripts_removed),
        resources_added=PackedPaths(resources_added),
        resources_changed=PackedPaths(resources_changed),
        resources_removed=PackedPaths(resources_removed),
    )


class _Kinds:
    """What the paths of one kind of change name, in one pass over them: each name as often
    as a path names it (paths come sorted, so repeats are mostly neighbours)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.job_files: list[str] = []  # jobs whose .job file it is
        self.jobs: list[str] = []  # the job of every path under jobs/
        self.standalone_scripts: list[str] = []  # scripts/<name>.script
        self.scripts: list[str] = []  # any <name>.script
        self.listed_resources: list[str] = []  # resources/<name>.resource
        self.resources: list[str] = []  # any <name>.resource
        last_job = None
        for path in paths:
            if path.startswith("jobs/"):
                job = job_of(path)
                if job is not None and job != last_job:
                    self.jobs.append(job)
                    last_job = job
                if is_job_file(path) and job is not None:
                    self.job_files.append(job)
            suffix = suffix_of(path)
            if suffix == ".script":
                name = stem_of(path)
                self.scripts.append(name)
                if path.startswith("scripts/"):
                    self.standalone_scripts.append(name)
            elif suffix == ".resource":
                name = stem_of(path)
                self.resources.append(name)
                if path.startswith("resources/"):
                    self.listed_resources.append(name)


def commit_subject(label: str, summary: ChangeSummary) -> str:
    subject = (
        f"{label}: {len(summary.jobs_added)} added, {len(summary.jobs_changed)} changed, "
        f"{len(summary.jobs_removed)} removed"
    )
    for kind, added, changed, removed in (
        ("scripts", summary.scripts_added, summary.scripts_changed, summary.scripts_removed),
        (
            "resources",
            summary.resources_added,
            summary.resources_changed,
            summary.resources_removed,
        ),
    ):
        parts = [
            f"{len(names)} {word}"
            for names, word in ((added, "added"), (changed, "changed"), (removed, "removed"))
            if names
        ]
        if parts:
            subject += f"; {kind}: " + ", ".join(parts)
    return subject


def commit_message(
    label: str, summary: ChangeSummary, *, users: dict[str, str] | None = None
) -> str:
    """Subject plus a body listing every job and script by name (``users``: job → editor)."""
    users = users or {}
    sections = (
        ("Added jobs", "+", summary.jobs_added, True),
        ("Changed jobs", "~", summary.jobs_changed, True),
        ("Removed jobs", "-", summary.jobs_removed, False),
        ("Added scripts", "+", summary.scripts_added, False),
        ("Changed scripts", "~", summary.scripts_changed, False),
        ("Removed scripts", "-", summary.scripts_removed, False),
        ("Added resources", "+", summary.resources_added, False),
        ("Changed resources", "~", summary.resources_changed, False),
        ("Removed resources", "-", summary.resources_removed, False),
    )
    lines = [commit_subject(label, summary)]
    for title, mark, names, with_user in sections:
        if not names:
            continue
        lines += ["", f"{title}:"]
        for name in names[:MAX_LISTED]:
            user = users.get(name) if with_user else None
            lines.append(f"  {mark} {name}" + (f" (by {user})" if user else ""))
        if len(names) > MAX_LISTED:
            lines.append(f"  … and {len(names) - MAX_LISTED} more")
    return "\n".join(lines) + "\n"
