"""What a ChangeSet means in DataArts terms (jobs, scripts, resources), and the commit message.

Paths carry DataArts names through the name mapping (store/pathmap.py): a ``PathNames``
gives the exact name of the paths that do not carry it as it is, so commit messages name
jobs, scripts and resources as DataArts does.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from backupd.store.names import stem_of, suffix_of
from backupd.store.tree import ChangeSet, PackedPaths

MAX_LISTED = 200  # names listed per section of a commit body; the rest are counted

MOVED = "moved to portable paths (content unchanged)"  # the end of such a commit's subject


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
    # (old name, new name) of each renamed job, by old name; neither is added or removed.
    jobs_renamed: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class PathNames:
    """The DataArts names of stored paths that do not hold them as they are."""

    jobs: Mapping[str, str] = field(default_factory=dict)  # folder under jobs/ → job name
    files: Mapping[str, str] = field(default_factory=dict)  # path → script or resource name

    def job_of(self, path: str) -> str | None:
        parts = path.split("/")
        if len(parts) >= 2 and parts[0] == "jobs":
            if len(parts) == 2:  # jobs/<job>.job, as an older backupd stored some
                return parts[1].removesuffix(".job") if parts[1].endswith(".job") else None
            return self.jobs.get(parts[1], parts[1])
        return None

    def script_of(self, path: str) -> str | None:
        if suffix_of(path) != ".script":
            return None
        return self.files.get(path) or stem_of(path)

    def resource_of(self, path: str) -> str | None:
        if suffix_of(path) != ".resource":
            return None
        return self.files.get(path) or stem_of(path)


AS_STORED = PathNames()


def job_of(path: str, names: PathNames = AS_STORED) -> str | None:
    return names.job_of(path)


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


def summarise(
    changes: ChangeSet,
    names: PathNames = AS_STORED,
    renames: Iterable[tuple[str, str]] = (),
) -> ChangeSummary:
    """Jobs, scripts and resources touched by ``changes`` (paths relative to a workspace).

    ``renames``: (old, new) job names that are one job renamed (store/renames.py); a pair
    whose old job ``changes`` removes and whose new one it adds is renamed, neither added
    nor removed.
    """
    job_of, script_of, resource_of = names.job_of, names.script_of, names.resource_of
    jobs_added = _sorted_names(job_of(p) for p in changes.added if is_job_file(p))
    jobs_removed = _sorted_names(job_of(p) for p in changes.removed if is_job_file(p))
    jobs_changed = _sorted_unless((job_of(p) for p in changes.paths), jobs_added, jobs_removed)
    jobs_renamed = sorted(
        (old, new) for old, new in renames if _holds(jobs_removed, old) and _holds(jobs_added, new)
    )
    if jobs_renamed:
        olds = {old for old, _ in jobs_renamed}
        news = {new for _, new in jobs_renamed}
        jobs_added = [name for name in jobs_added if name not in news]
        jobs_removed = [name for name in jobs_removed if name not in olds]

    def standalone(paths: Sequence[str]) -> list[str]:
        return _sorted_names(script_of(p) for p in paths if p.startswith("scripts/"))

    def resources(paths: Sequence[str]) -> list[str]:
        return _sorted_names(resource_of(p) for p in paths if p.startswith("resources/"))

    scripts_added = standalone(changes.added)
    scripts_removed = standalone(changes.removed)
    # A script a job depends on is repeated in each job folder: any modified copy names it.
    # Copies that appear or vanish with their job are that job's change, not the script's.
    scripts_changed = _sorted_unless(
        (script_of(p) for p in changes.modified), scripts_added, scripts_removed
    )
    # Resources the same way: resources/ holds them all; copies exported with a job count
    # as changed when modified.
    resources_added = resources(changes.added)
    resources_removed = resources(changes.removed)
    resources_changed = _sorted_unless(
        (resource_of(p) for p in changes.modified), resources_added, resources_removed
    )
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
        jobs_renamed=tuple(jobs_renamed),
    )


def shown(name: str) -> str:
    """A name as a commit message shows it: as it is, or repr() when it holds a control or
    other unprintable character (a tab, a newline) that would garble the message."""
    return name if name.isprintable() else repr(name)


RENAMED = "renamed: "  # starts each line of a commit body that names a renamed job


def renamed_line(old: str, new: str) -> str:
    """The line of a commit body that records job ``old`` renamed to ``new``."""
    return f"{RENAMED}{shown(old)} → {shown(new)}"


def commit_subject(label: str, summary: ChangeSummary) -> str:
    subject = (
        f"{label}: {len(summary.jobs_added)} added, {len(summary.jobs_changed)} changed, "
        f"{len(summary.jobs_removed)} removed"
    )
    if summary.jobs_renamed:
        subject += f", {len(summary.jobs_renamed)} renamed"
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
    """Subject plus a body listing every job and script by name (``users``: job → editor).

    Renamed jobs follow the removed ones, a line each: ``renamed: OLD → NEW``.
    """
    users = users or {}
    sections = (
        ("Added jobs", "+", summary.jobs_added, True),
        ("Changed jobs", "~", summary.jobs_changed, True),
        ("Removed jobs", "-", summary.jobs_removed, False),
        ("", "", (), False),  # the renamed jobs
        ("Added scripts", "+", summary.scripts_added, False),
        ("Changed scripts", "~", summary.scripts_changed, False),
        ("Removed scripts", "-", summary.scripts_removed, False),
        ("Added resources", "+", summary.resources_added, False),
        ("Changed resources", "~", summary.resources_changed, False),
        ("Removed resources", "-", summary.resources_removed, False),
    )
    lines = [commit_subject(label, summary)]
    for title, mark, names, with_user in sections:
        if not title:
            lines += _renamed_lines(summary.jobs_renamed, users)
        if not names:
            continue
        lines += ["", f"{title}:"]
        for name in names[:MAX_LISTED]:
            user = users.get(name) if with_user else None
            lines.append(f"  {mark} {shown(name)}" + (f" (by {shown(user)})" if user else ""))
        if len(names) > MAX_LISTED:
            lines.append(f"  … and {len(names) - MAX_LISTED} more")
    return "\n".join(lines) + "\n"


def _renamed_lines(renamed: Sequence[tuple[str, str]], users: Mapping[str, str]) -> list[str]:
    """The paragraph of renamed jobs, ``renamed: OLD → NEW (by USER)`` a line."""
    if not renamed:
        return []
    lines = [""]
    for old, new in renamed[:MAX_LISTED]:
        user = users.get(new)
        lines.append(renamed_line(old, new) + (f" (by {shown(user)})" if user else ""))
    if len(renamed) > MAX_LISTED:
        lines.append(f"{RENAMED}… and {len(renamed) - MAX_LISTED} more")
    return lines
