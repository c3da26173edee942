"""Who made the changes of a workspace snapshot, and how its commits are split by author.

The job list names the DataArts user who last saved each job (``lastUpdateUser``). A job's
folder changes belong to that user when the job file itself was added or changed since the
last snapshot; everything else has no known user: script copies that changed without their
job (scripts are edited apart from jobs), standalone scripts and deletions (DataArts does not
say who deleted a job). Those are backupd's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from backupd.store.gitrepo import Identity
from backupd.store.summary import AS_STORED, ChangeSummary, PathNames, is_job_file
from backupd.store.tree import META_DIR, ChangeSet

DEFAULT_EMAIL_DOMAIN = "dataarts.invalid"  # RFC 2606: never a real mailbox

_EMAIL_UNSAFE = re.compile(r"[\s<>@,;:\"\\()\[\]\x00-\x1f]+")
_NAME_UNSAFE = re.compile(r"[<>\x00-\x1f]+")


@dataclass(frozen=True)
class CommitGroup:
    """The paths of one commit and the DataArts user it is authored by (None: backupd)."""

    user: str | None
    changes: ChangeSet


def default_identity(user: str) -> Identity:
    """``<user> <user@dataarts.invalid>``, made safe for a git identity."""
    name = " ".join(_NAME_UNSAFE.sub(" ", user).split()) or "unknown"
    local = _EMAIL_UNSAFE.sub(".", user).strip(".") or "unknown"
    return Identity(name, f"{local}@{DEFAULT_EMAIL_DOMAIN}")


def identity_for(user: str, authors: Mapping[str, Identity]) -> Identity:
    return authors.get(user) or default_identity(user)


def saved_by(
    summary: ChangeSummary,
    changes: ChangeSet,
    editors: Mapping[str, str],
    names: PathNames = AS_STORED,
) -> dict[str, str]:
    """Job → the user who saved it, for the jobs whose job file was added or changed.

    ``summary`` is that of ``changes``: its added jobs are those whose job file was added,
    so the added paths (~5 a job, tens of thousands in a first snapshot) are not gone over
    again. ``editors``: job → user, for jobs whose lastUpdateTime moved since the last
    snapshot.
    """
    saved = {job: editors[job] for job in summary.jobs_added if job in editors}
    saved.update((new, editors[new]) for _, new in summary.jobs_renamed if new in editors)
    for path in changes.modified:
        job = names.job_of(path) if is_job_file(path) else None
        if job is not None and job in editors:
            saved[job] = editors[job]
    return saved


def attribute(
    changes: ChangeSet,
    saved: Mapping[str, str],
    names: PathNames = AS_STORED,
    renamed: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """The DataArts user behind each changed path (None when unknown); ``saved`` is what
    ``saved_by`` answers for these changes. ``renamed``: old → new name of renamed jobs,
    whose old files go with the new ones (the user who renamed it), so that one commit
    holds both sides of the rename and git sees it."""
    removed = set(changes.removed)  # not the tuple: a lookup per changed path
    renamed = renamed or {}
    users: dict[str, str | None] = {}
    for path in changes.paths:
        job = names.job_of(path)
        if job is not None and path in removed:
            job = renamed.get(job)
        users[path] = saved.get(job) if job is not None else None
    return users


def split_commits(
    changes: ChangeSet,
    users: Mapping[str, str | None],
    *,
    per_author: bool,
    rank: Mapping[str, int] | None = None,
) -> list[CommitGroup]:
    """The commits that record ``changes``; backupd's bookkeeping goes with the last one.

    ``per_author``: one commit per user (ordered by ``rank``, e.g. when they last saved, then
    by name) and a last one for changes without a known user. Otherwise one commit, authored
    by the user when a single user made every change.
    """
    if not per_author:
        # No list of the paths: a first snapshot's are packed (see PackedPaths).
        known = {users.get(p) for p in changes.paths if not _is_meta(p)}
        single = known.pop() if len(known) == 1 else None
        return [CommitGroup(single, changes)]
    content = [p for p in changes.paths if not _is_meta(p)]
    meta = [p for p in changes.paths if _is_meta(p)]
    order = rank or {}
    named = sorted(
        {u for p in content if (u := users.get(p)) is not None},
        key=lambda u: (order.get(u, 0), u),
    )
    buckets: list[tuple[str | None, list[str]]] = [
        (user, [p for p in content if users.get(p) == user]) for user in named
    ]
    buckets.append((None, [p for p in content if users.get(p) is None]))
    buckets = [(user, paths) for user, paths in buckets if paths]
    if not buckets:
        return [CommitGroup(None, changes)]
    buckets[-1][1].extend(meta)
    return [CommitGroup(user, _subset(changes, set(paths))) for user, paths in buckets]


def _subset(changes: ChangeSet, paths: set[str]) -> ChangeSet:
    return ChangeSet(
        added=tuple(p for p in changes.added if p in paths),
        modified=tuple(p for p in changes.modified if p in paths),
        removed=tuple(p for p in changes.removed if p in paths),
    )


def _is_meta(path: str) -> bool:
    return path.split("/", 1)[0] == META_DIR
