"""What a ChangeSet means in DataArts terms (jobs, scripts, resources), and the commit message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backupd.store.names import stem_of, suffix_of
from backupd.store.tree import ChangeSet

MAX_LISTED = 200  # names listed per section of a commit body; the rest are counted


@dataclass(frozen=True)
class ChangeSummary:
    jobs_added: tuple[str, ...] = ()
    jobs_changed: tuple[str, ...] = ()
    jobs_removed: tuple[str, ...] = ()
    scripts_added: tuple[str, ...] = ()
    scripts_changed: tuple[str, ...] = ()
    scripts_removed: tuple[str, ...] = ()
    resources_added: tuple[str, ...] = ()
    resources_changed: tuple[str, ...] = ()
    resources_removed: tuple[str, ...] = ()


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


def _script_of(path: str) -> str | None:
    return stem_of(path) if suffix_of(path) == ".script" else None


def _resource_of(path: str) -> str | None:
    return stem_of(path) if suffix_of(path) == ".resource" else None


def _resources_in(paths: Sequence[str]) -> set[str]:
    return {
        name for p in paths if p.startswith("resources/") and (name := _resource_of(p)) is not None
    }


def summarise(changes: ChangeSet) -> ChangeSummary:
    """Jobs, scripts and resources touched by ``changes`` (paths relative to a workspace)."""
    # Sets built without None rather than copied without it: a first snapshot of a large
    # workspace names thousands of jobs.
    jobs_added = {j for p in changes.added if is_job_file(p) and (j := job_of(p)) is not None}
    jobs_removed = {j for p in changes.removed if is_job_file(p) and (j := job_of(p)) is not None}
    # Not "touched - added - removed": a first snapshot would hold every name twice more.
    jobs_changed = {
        j
        for p in changes.paths
        if (j := job_of(p)) is not None and j not in jobs_added and j not in jobs_removed
    }

    def standalone(paths: Sequence[str]) -> set[str]:
        return {
            name for p in paths if p.startswith("scripts/") and (name := _script_of(p)) is not None
        }

    scripts_added = standalone(changes.added)
    scripts_removed = standalone(changes.removed)
    # A script a job depends on is repeated in each job folder: any modified copy names it.
    # Copies that appear or vanish with their job are that job's change, not the script's.
    scripts_changed = (
        {name for p in changes.modified if (name := _script_of(p)) is not None}
        - scripts_added
        - scripts_removed
    )
    # Resources the same way: resources/ holds them all; copies exported with a job count
    # as changed when modified.
    resources_added = _resources_in(changes.added)
    resources_removed = _resources_in(changes.removed)
    resources_changed = (
        {name for p in changes.modified if (name := _resource_of(p)) is not None}
        - resources_added
        - resources_removed
    )
    return ChangeSummary(
        jobs_added=tuple(sorted(jobs_added)),
        jobs_changed=tuple(sorted(jobs_changed)),
        jobs_removed=tuple(sorted(jobs_removed)),
        scripts_added=tuple(sorted(scripts_added)),
        scripts_changed=tuple(sorted(scripts_changed)),
        scripts_removed=tuple(sorted(scripts_removed)),
        resources_added=tuple(sorted(resources_added)),
        resources_changed=tuple(sorted(resources_changed)),
        resources_removed=tuple(sorted(resources_removed)),
    )


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
