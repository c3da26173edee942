"""Where things live inside a workspace folder of the repository, and whose each path is.

The stored layout is the same whatever layout the export used::

    jobs/<job>/<job>.job                 the job
    jobs/<job>/<file>                    every other file the export carried for the job:
                                         scripts (+ their readable views), resource and CDM
                                         job definitions, anything else, byte for byte
    scripts/<script>.script              standalone scripts (the script list; + views)
    resources/<resource>.resource        resource definitions (the resource list)
    .backupd/index.json                  the index (store/index.py)

``<job>``, ``<file>``, ``<script>`` and ``<resource>`` are the DataArts names through the
name → path mapping (store/pathmap.py); the index records where a name is stored when that
is not the name itself, and where the export put each file when that is not
``jobs/<job>/<file>`` (a flat export's ``jobs/<job>.job`` and ``scripts/<script>.script``),
so that a restore rebuilds the export's own layout and names.

``read_layout`` tells whose each stored path is. It also moves what an older backupd
stored elsewhere (names used as they were, a job exported as ``jobs/<job>.job`` stored
there): ``StoredLayout.moves``, committed on their own before the next snapshot.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from backupd.store.index import JobRecord, WorkspaceIndex
from backupd.store.names import stem_of, suffix_of, with_suffix
from backupd.store.normalise import VIEW_SUFFIXES
from backupd.store.pathmap import collision_key, encoded, folder_components
from backupd.store.tree import META_DIR

INDEX_FILE = f"{META_DIR}/index.json"

JOBS_DIR = "jobs"  # jobs/<job>/<job>.job and the files exported with it

RESOURCES_DIR = "resources"  # resources/<name>.resource: definitions from the resource list

SCRIPTS_DIR = "scripts"  # scripts/<name>.script: definitions from the script list

SCRIPT_SUFFIX = ".script"
RESOURCE_SUFFIX = ".resource"
JOB_SUFFIX = ".job"

_PLAIN_SUFFIX = re.compile(r"\.[A-Za-z0-9_-]{1,16}")


def job_folder(component: str) -> str:
    return f"{JOBS_DIR}/{component}"


def job_file(component: str) -> str:
    return f"{JOBS_DIR}/{component}/{component}{JOB_SUFFIX}"


def split_suffix(file_name: str) -> tuple[str, str]:
    """(stem, suffix) of a file name; the suffix only when it is a plain one (``.script``,
    ``.json``, …): whatever else follows the last dot is part of the name."""
    suffix = suffix_of(file_name)
    if suffix and _PLAIN_SUFFIX.fullmatch(suffix):
        return file_name[: -len(suffix)], suffix
    return file_name, ""


def entry_keys(job: str, entries: Iterable[str]) -> dict[str, str]:
    """Zip entry → its name within the job's folder (what is mapped to a stored file name).

    An entry in the job's own folder of the zip keeps its path below that folder; one
    elsewhere (``scripts/x.script`` of a flat export) its file name, or its whole entry
    name when another file of the job has that file name.
    """
    prefix = f"{JOBS_DIR}/{job}/"
    keys: dict[str, str] = {}
    for entry in sorted(entries):
        keys[entry] = entry[len(prefix) :] if entry.startswith(prefix) else entry.rpartition("/")[2]
    counts = Counter(keys.values())
    for entry, key in keys.items():
        if counts[key] > 1 and not entry.startswith(prefix):
            keys[entry] = entry
    return keys


def file_names(
    job: str, component: str, keys: Iterable[str], previous: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Key (see ``entry_keys``) → stored file name, for the files of one job's folder.

    The job file is ``<component>.job``; the other names go through the name mapping with
    their suffix kept (``<script>.script`` → ``<mapped script>.script``). ``previous``: key →
    stored file name before, so that stored names do not move.
    """
    job_key = f"{job}{JOB_SUFFIX}"
    groups: defaultdict[str, dict[str, str]] = defaultdict(dict)  # suffix → stem → key
    before: defaultdict[str, dict[str, str]] = defaultdict(dict)  # suffix → stem → stored stem
    for key in set(keys) | {job_key}:
        stem, suffix = split_suffix(key)
        groups[suffix][stem] = key
        old = (previous or {}).get(key)
        if key == job_key:
            old = f"{component}{JOB_SUFFIX}"
        if old is not None and old.endswith(suffix) and len(old) > len(suffix):
            before[suffix][stem] = old[: len(old) - len(suffix)] if suffix else old
    result: dict[str, str] = {}
    for suffix, stems in groups.items():
        mapped = folder_components(stems, before[suffix])
        for stem, key in stems.items():
            result[key] = mapped[stem] + suffix
    result[job_key] = f"{component}{JOB_SUFFIX}"
    # Suffixes that differ only in case (.SQL, .sql) meet on macOS and Windows.
    taken: set[str] = {collision_key(result[job_key])}
    for key in sorted(result, key=lambda k: (k != job_key, k)):
        if key == job_key:
            continue
        if collision_key(result[key]) in taken:
            result[key] = encoded(key)
        taken.add(collision_key(result[key]))
    return result


def views_of(files: Iterable[str]) -> set[str]:
    """The readable views among the files of one folder (beside a .script of their stem)."""
    present = set(files)
    return {
        file
        for file in present
        if suffix_of(file) in VIEW_SUFFIXES and with_suffix(file, SCRIPT_SUFFIX) in present
    }


def stored_keys(job: str, record: JobRecord, files: Iterable[str]) -> dict[str, str]:
    """Key (``entry_keys``) → stored file name, for the stored files of a job's folder (its
    views left out): what ``file_names`` takes as ``previous``."""
    present = set(files)
    entries = {file: record.zip_entry(job, file) for file in present - views_of(present)}
    keys = entry_keys(job, entries.values())
    return {keys[entry]: file for file, entry in entries.items()}


def item_name(stored_file: str, entry: str, suffix: str) -> str | None:
    """The DataArts name of a script or resource file (``suffix``) of a job's folder: its
    exact file name in the zip without the suffix; None for other files."""
    if not stored_file.endswith(suffix):
        return None
    exact = entry.rpartition("/")[2]
    return exact[: -len(suffix)] if exact.endswith(suffix) else stem_of(stored_file)


@dataclass
class StoredLayout:
    """Whose each path of a stored workspace folder is (``read_layout``).

    Every path is given as it is once ``moves`` are made: a stored path → its path under
    the mapping now, for what an older backupd stored elsewhere.
    """

    jobs: dict[str, JobRecord] = field(default_factory=dict)  # name → its record
    scripts: dict[str, str] = field(default_factory=dict)  # name → component (all of them)
    resources: dict[str, str] = field(default_factory=dict)
    moves: dict[str, str] = field(default_factory=dict)
    version: int = 0  # of the index read (0: none)
    # Jobs whose stored copy lacks what their export carries (an older backupd stored a
    # job exported at jobs/<job>.job without the scripts beside it): export them again.
    incomplete: set[str] = field(default_factory=set)

    def index(self) -> WorkspaceIndex:
        """The index this layout describes (job metadata as read)."""
        return WorkspaceIndex(
            jobs=self.jobs,
            scripts={n: c for n, c in self.scripts.items() if n != c},
            resources={n: c for n, c in self.resources.items() if n != c},
        )

    def job_names(self) -> dict[str, str]:
        """Folder component → job name, for the jobs stored under another name."""
        return {r.path: n for n, r in self.jobs.items() if r.path is not None and r.path != n}

    def file_owners(self) -> dict[str, str]:
        """Stored path → script or resource name, where it is not the file's stem."""
        names: dict[str, str] = {}
        for job, record in self.jobs.items():
            for stored, entry in record.files.items():
                for suffix in (SCRIPT_SUFFIX, RESOURCE_SUFFIX):
                    name = item_name(stored, entry, suffix)
                    if name is not None and name != stem_of(stored):
                        names[f"{job_folder(record.folder(job))}/{stored}"] = name
        for folder, suffix, mapping in (
            (SCRIPTS_DIR, SCRIPT_SUFFIX, self.scripts),
            (RESOURCES_DIR, RESOURCE_SUFFIX, self.resources),
        ):
            for name, component in mapping.items():
                if name != component:
                    names[f"{folder}/{component}{suffix}"] = name
        return names

    def scripts_held(self, paths: Iterable[str]) -> dict[str, set[str]]:
        """Script name → the jobs whose folder holds a copy of it; ``paths`` are the
        stored paths (after the moves)."""
        owners = {record.folder(name): name for name, record in self.jobs.items()}
        held: defaultdict[str, set[str]] = defaultdict(set)
        for path in paths:
            parts = path.split("/", 2)
            if len(parts) < 3 or parts[0] != JOBS_DIR or not parts[2].endswith(SCRIPT_SUFFIX):
                continue
            job = owners.get(parts[1])
            if job is None:
                continue
            entry = self.jobs[job].zip_entry(job, parts[2])
            script = item_name(parts[2], entry, SCRIPT_SUFFIX)
            if script is not None:
                held[script].add(job)
        return held


def read_layout(paths: Iterable[str], index: WorkspaceIndex | None) -> StoredLayout:
    """Whose each stored path (sorted, relative to the workspace folder) is, per ``index``
    (None: unreadable or missing) and the paths themselves."""
    index = index or WorkspaceIndex(version=0)
    folder_jobs = {record.folder(name): name for name, record in index.jobs.items()}
    reverse = {
        SCRIPTS_DIR: {component: name for name, component in index.scripts.items()},
        RESOURCES_DIR: {component: name for name, component in index.resources.items()},
    }
    folders: defaultdict[str, list[str]] = defaultdict(list)
    flat_jobs: dict[str, str] = {}  # name → jobs/<name>.job, as an older backupd stored it
    listed: dict[str, dict[str, str]] = {SCRIPTS_DIR: {}, RESOURCES_DIR: {}}
    other: dict[str, list[str]] = {SCRIPTS_DIR: [], RESOURCES_DIR: []}
    suffixes = {SCRIPTS_DIR: SCRIPT_SUFFIX, RESOURCES_DIR: RESOURCE_SUFFIX}
    for path in paths:
        top, _, rest = path.partition("/")
        if top == JOBS_DIR and "/" in rest:
            folder, _, file = rest.partition("/")
            folders[folder].append(file)
        elif top == JOBS_DIR and rest.endswith(JOB_SUFFIX) and len(rest) > len(JOB_SUFFIX):
            flat_jobs[rest[: -len(JOB_SUFFIX)]] = path
        elif top in listed and "/" not in rest:
            if rest.endswith(suffixes[top]) and len(rest) > len(suffixes[top]):
                component = rest[: -len(suffixes[top])]
                listed[top][reverse[top].get(component, component)] = component
            else:
                other[top].append(rest)
    layout = StoredLayout(version=index.version)
    stored: dict[str, tuple[str | None, list[str]]] = {}  # name → (folder, its files)
    for folder, files in folders.items():
        owner = folder_jobs.get(folder)
        if owner is None and f"{folder}{JOB_SUFFIX}" in files:
            owner = folder  # not in the index: stored under its name
        if owner is not None:
            stored[owner] = (folder, files)
    for name in flat_jobs:
        if name not in stored:
            stored[name] = (None, [])
            layout.incomplete.add(name)
    components = folder_components(
        stored, {name: folder for name, (folder, _) in stored.items() if folder is not None}
    )
    for name, (where, held) in stored.items():
        old = index.jobs.get(name, JobRecord())
        layout.jobs[name] = _moved_job(name, old, where, held, components[name], layout.moves)
        if where is None:
            layout.moves[flat_jobs[name]] = job_file(components[name])
    for top, mapping in listed.items():
        now = folder_components(mapping, mapping)
        if top == SCRIPTS_DIR:
            layout.scripts = now
        else:
            layout.resources = now
        suffix = suffixes[top]
        moved = {mapping[name]: now[name] for name in mapping if now[name] != mapping[name]}
        for component, new in moved.items():
            layout.moves[f"{top}/{component}{suffix}"] = f"{top}/{new}{suffix}"
        for rest in other[top]:  # the views beside a moved script
            base = with_suffix(rest, "")
            if suffix_of(rest) in VIEW_SUFFIXES and base in moved:
                layout.moves[f"{top}/{rest}"] = f"{top}/{moved[base]}{suffix_of(rest)}"
    return layout


def _moved_job(
    name: str,
    old: JobRecord,
    folder: str | None,
    files: list[str],
    component: str,
    moves: dict[str, str],
) -> JobRecord:
    """The job's record once stored in folder ``component``; adds the moves of its files."""
    if folder is None:  # jobs/<name>.job: where the export put it
        flat = {f"{component}{JOB_SUFFIX}": f"{JOBS_DIR}/{name}{JOB_SUFFIX}"}
        return JobRecord(
            old.job_type,
            old.last_update_time,
            old.last_update_user,
            _path(name, component),
            flat,
        )
    views = views_of(files)
    previous = stored_keys(name, old, files)
    mapped = file_names(name, component, previous, previous)
    entries = {file: old.zip_entry(name, file) for file in previous.values()}
    key_of = {file: key for key, file in previous.items()}
    files_map: dict[str, str] = {}
    for file, entry in entries.items():
        new = mapped[key_of[file]]
        if (folder, file) != (component, new):
            moves[f"{JOBS_DIR}/{folder}/{file}"] = f"{JOBS_DIR}/{component}/{new}"
        if entry != f"{JOBS_DIR}/{name}/{new}":
            files_map[new] = entry
    for view in views:
        script = with_suffix(view, SCRIPT_SUFFIX)
        new_view = with_suffix(mapped[key_of[script]], suffix_of(view))
        if (folder, view) != (component, new_view):
            moves[f"{JOBS_DIR}/{folder}/{view}"] = f"{JOBS_DIR}/{component}/{new_view}"
    return JobRecord(
        old.job_type, old.last_update_time, old.last_update_user, _path(name, component), files_map
    )


def _path(name: str, component: str) -> str | None:
    return None if component == name else component
