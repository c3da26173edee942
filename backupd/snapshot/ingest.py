"""Putting what the service sent into the staged tree: export archives and listed items.

An archive must hold exactly the jobs it was asked for. Whatever layout the export used
(``jobs/<job>/<job>.job`` with the job's files beside it, ``jobs/<job>.job``, scripts and
other files in top-level folders), each job is stored as ``jobs/<job>/<job>.job`` with every
file the export carried for it beside it, through the name mapping (store/layout.py); what
the export called each file is returned for the index. Scripts get a readable view of their
body beside them; listed scripts and resources are staged as their pages arrive.
"""

from __future__ import annotations

import errno
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backupd.errors import (
    ArchiveError,
    describe_os_error,
)
from backupd.store.archive import ArchiveLimits, read_archive
from backupd.store.layout import (
    JOB_SUFFIX,
    JOBS_DIR,
    RESOURCE_SUFFIX,
    RESOURCES_DIR,
    SCRIPT_SUFFIX,
    SCRIPTS_DIR,
    entry_keys,
    file_names,
    split_suffix,
)
from backupd.store.names import with_suffix
from backupd.store.normalise import (
    VIEW_SUFFIXES,
    canonical_json,
    normalise_parsed,
    normalise_script,
    parse_json,
    script_view,
)
from backupd.store.pathmap import component, folder_components, is_component_of
from backupd.store.staging import StagedTree, blob_id

logger = logging.getLogger(__name__)


class UnattributedFiles(ArchiveError):
    """An archive of several jobs holds a file outside every job's folder that no job of it
    names: exporting fewer jobs at once tells whose it is."""


class JobPaths(Protocol):
    """Where the jobs of a workspace are stored (the snapshot's name mapping)."""

    def component(self, job: str) -> str:
        """The job's folder under jobs/."""

    def previous_files(self, job: str) -> Mapping[str, str]:
        """Key (layout.entry_keys) → stored file name of the job's files as stored now."""


def ingest_archive(
    zip_path: Path,
    limits: ArchiveLimits,
    tree: StagedTree,
    requested: Sequence[str],
    archive_name: str,
    paths: JobPaths,
) -> dict[str, dict[str, str]]:
    """Check one export archive and stage its normalised files; returns per job its stored
    file name → zip entry, where that is not ``jobs/<job>/<stored file name>``.

    The archive must hold exactly the requested jobs. Its entries are read (and CRC-checked)
    and every one is given its job before any of them is staged.
    """
    entries = dict(read_archive(zip_path, limits))
    by_job = _entries_by_job(entries, requested, archive_name)
    try:
        return {job: _stage_job(tree, job, by_job[job], entries, paths) for job in requested}
    except OSError as error:
        # Our disk, not the archive: _local_failure() sees the OSError and does not retry.
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "disk full while unpacking" if full else "cannot stage"
        raise ArchiveError(
            f"{archive_name}: {what} into {tree.root}: {describe_os_error(error)}"
        ) from error


def _entries_by_job(
    entries: Mapping[str, bytes], requested: Sequence[str], archive_name: str
) -> dict[str, list[str]]:
    """Each requested job's entries, its job file first."""
    job_files: dict[str, str] = {}
    folders: defaultdict[str, list[str]] = defaultdict(list)  # jobs/<job>/… entries
    elsewhere: list[str] = []
    duplicates: list[str] = []
    for entry in entries:
        parts = entry.split("/")
        job: str | None = None
        if parts[0] == JOBS_DIR and len(parts) >= 3:
            folders[parts[1]].append(entry)
            if len(parts) == 3 and parts[2] == f"{parts[1]}{JOB_SUFFIX}":
                job = parts[1]
        elif parts[0] == JOBS_DIR and len(parts) == 2 and parts[1].endswith(JOB_SUFFIX):
            job = parts[1][: -len(JOB_SUFFIX)] or None
            if job is None:
                elsewhere.append(entry)
        else:
            elsewhere.append(entry)
        if job is not None:
            if job in job_files:
                duplicates.append(job)
            job_files[job] = entry
    missing = sorted(set(requested) - set(job_files))
    unexpected = sorted((set(job_files) | set(folders)) - set(requested))
    if missing or unexpected or duplicates:
        problems = []
        if missing:
            problems.append(f"lacks {len(missing)} requested job(s): {_names(missing)}")
        if unexpected:
            problems.append(f"holds jobs not asked for: {_names(unexpected)}")
        if duplicates:
            problems.append(f"holds two job files for {_names(duplicates)}")
        raise ArchiveError(f"{archive_name}: export {'; '.join(problems)}")
    by_job = {
        job: [job_files[job], *sorted(e for e in folders[job] if e != job_files[job])]
        for job in requested
    }
    unclaimed: list[str] = []
    # Parsed only to attribute files outside the job folders (none in the per-job layout).
    definitions = {job: _parsed(entries[job_files[job]]) for job in requested if elsewhere}
    for entry in sorted(elsewhere):
        stem, suffix = split_suffix(entry.rpartition("/")[2])
        users = [job for job in requested if _uses(definitions[job], stem, suffix)]
        if not users and len(requested) == 1:
            users = list(requested)  # a one-job export: all of it is the job's
        if not users:
            unclaimed.append(entry)
        for job in users:
            by_job[job].append(entry)
    if unclaimed:
        raise UnattributedFiles(
            f"{archive_name}: no job of the export names {_names(unclaimed)}; "
            "exporting fewer jobs at once"
        )
    return by_job


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) if not n.isprintable() else n for n in names[:5])
    return shown + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def _parsed(content: bytes) -> Any:
    try:
        return parse_json(content)
    except ValueError:
        return None


def _uses(definition: Any, stem: str, suffix: str) -> bool:
    """Whether a job definition names the item ``stem`` of a file outside its folder: a
    script through a node's ``scriptName``, anything else through any string it holds."""
    if suffix == SCRIPT_SUFFIX:
        nodes = definition.get("nodes") if isinstance(definition, dict) else None
        return any(
            isinstance(prop, dict)
            and prop.get("name") == "scriptName"
            and prop.get("value") == stem
            for node in (nodes if isinstance(nodes, list) else [])
            if isinstance(node, dict)
            for prop in (node.get("properties") or [])
        )
    return _mentions(definition, stem)


def _mentions(value: Any, text: str) -> bool:
    if isinstance(value, str):
        return value == text
    if isinstance(value, dict):
        return any(_mentions(item, text) for item in value.values())
    if isinstance(value, list):
        return any(_mentions(item, text) for item in value)
    return False


def _stage_job(
    tree: StagedTree,
    job: str,
    job_entries: list[str],
    entries: Mapping[str, bytes],
    paths: JobPaths,
) -> dict[str, str]:
    folder = paths.component(job)
    keys = entry_keys(job, job_entries)
    stored_names = file_names(job, folder, keys.values(), paths.previous_files(job))
    exported_as: dict[str, str] = {}
    for entry in job_entries:
        stored = stored_names[keys[entry]]
        path = f"{JOBS_DIR}/{folder}/{stored}"
        if stored.endswith(SCRIPT_SUFFIX):
            # Exported again with every job that uses it: normalised once (a cache).
            stage_script_view(tree, path, *normalise_script(entries[entry]))
        else:
            tree.put(path, normalise_parsed(entry, entries[entry])[0])
        if entry != f"{JOBS_DIR}/{job}/{stored}":
            exported_as[stored] = entry
    return exported_as


def stage_script_file(tree: StagedTree, path: str, content: bytes, parsed: Any = None) -> None:
    """Stage a .script and, beside it, the readable view of its body (derived, never restored).

    ``parsed``: the JSON ``content`` was written from, when the caller has it.
    """
    try:
        view = script_view(parse_json(content) if parsed is None else parsed)
    except ValueError:
        view = None
    stage_script_view(tree, path, content, view)


def stage_script_view(
    tree: StagedTree, path: str, content: bytes, view: tuple[str, bytes] | None
) -> None:
    """Stage a .script and its view (``script_view`` of it; None: it has none)."""
    tree.put(path, content)
    if view is None:
        return
    extension, text = view
    view_path = with_suffix(path, extension)
    if not tree.has(view_path):  # a real exported file of that name wins
        tree.put(view_path, text)


@dataclass
class ScriptStager:
    """Stages listed scripts under scripts/ as their pages arrive, so a large workspace's
    thousands of script bodies are not held until its listing ends.

    ``previous``: name → component of the scripts stored now. A script is staged at its
    component for a name alone (or the one it has); once the listing ended and every name
    of the folder is known, the few whose names clash are moved (``finish``).
    """

    tree: StagedTree
    previous: Mapping[str, str] | None = None  # None: the stored scripts' file names
    components: dict[str, str] = field(default_factory=dict)  # name → component, as staged
    _changed: set[str] = field(default_factory=set)  # differ from the last commit

    def __post_init__(self) -> None:
        if self.previous is None:
            stems = (
                path[len(SCRIPTS_DIR) + 1 : -len(SCRIPT_SUFFIX)]
                for path in self.tree.stored_paths(SCRIPTS_DIR)
                if path.endswith(SCRIPT_SUFFIX) and "/" not in path[len(SCRIPTS_DIR) + 1 :]
            )
            self.previous = {stem: stem for stem in stems if stem}

    @property
    def _before(self) -> Mapping[str, str]:
        return self.previous or {}

    def stage(self, script: dict[str, Any]) -> str:
        """Stage one listed script; returns its name."""
        name = str(script["name"])
        given = self.components.get(name)
        if given is None:
            old = self._before.get(name)
            given = old if old is not None and is_component_of(old, name) else component(name)
        path = f"{SCRIPTS_DIR}/{given}{SCRIPT_SUFFIX}"
        content = canonical_json(script)
        if self.tree.stored_blob(path) != blob_id(content):
            self._changed.add(name)
        stage_script_file(self.tree, path, content, script)
        self.components[name] = given
        return name

    def finish(self, listed: Sequence[str]) -> set[str]:
        """The listing ended with ``listed``: returns the scripts that changed or vanished.

        A listing that ran twice (its total moved) may have staged scripts deleted since:
        they are taken out again. Names that clash with others of the folder get their
        final component here.
        """
        names = set(listed)
        for name in set(self.components) - names:
            self._discard(self.components.pop(name))
        final = folder_components(names, self._before)
        for name, given in list(self.components.items()):
            if final[name] != given:
                self._move(given, final[name])
                self.components[name] = final[name]
                stored = self.tree.stored_blob(f"{SCRIPTS_DIR}/{final[name]}{SCRIPT_SUFFIX}")
                if stored is None or name in self._changed:
                    self._changed.add(name)
        changed = self._changed & names
        changed |= set(self._before) - names
        return changed

    def _paths(self, given: str) -> list[str]:
        path = f"{SCRIPTS_DIR}/{given}{SCRIPT_SUFFIX}"
        return [path, *(with_suffix(path, suffix) for suffix in sorted(VIEW_SUFFIXES))]

    def _discard(self, given: str) -> None:
        for staged in self._paths(given):
            self.tree.discard(staged)

    def _move(self, given: str, final: str) -> None:
        for old, new in zip(self._paths(given), self._paths(final), strict=True):
            content = self.tree.staged_bytes(old)
            if content is not None:
                self.tree.discard(old)
                self.tree.put(new, content)


def stage_resources(
    tree: StagedTree, resources: Iterable[dict[str, Any]], previous: Mapping[str, str]
) -> dict[str, str]:
    """Stage resource definitions as listed (the OBS objects they point to stay in OBS);
    returns name → component."""
    listed = {str(resource["name"]): resource for resource in resources}
    components = folder_components(listed, previous)
    for name, resource in listed.items():
        path = f"{RESOURCES_DIR}/{components[name]}{RESOURCE_SUFFIX}"
        tree.put(path, canonical_json(resource))
    return components
