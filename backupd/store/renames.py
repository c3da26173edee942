"""Which job that vanished and which job that appeared in one change are one job renamed.

DataArts keeps a job's ``id`` when the job is renamed (a job deleted and created again gets
a new one), so two jobs that carry an id are one job exactly when their ids are equal. An
export without ids falls back to the definition: the removed and the added ``.job`` hold
the same definition once the name (and the volatile fields, which a save bumps) are left
out. Only a pairing that is unique both ways counts: two removed copies of one template and
one added copy of it are not a rename of either.

Only the job files of the change are read, and only when it both removes and adds jobs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from backupd.store.normalise import canonical_json, parse_json
from backupd.store.summary import PathNames, is_job_file
from backupd.store.tree import ChangeSet
from backupd.store.volatile import FieldPath, parse_field_path, without_fields

NAME_FIELDS = (parse_field_path("name"),)  # what a rename changes in the .job itself
_ID = parse_field_path("id")


def _job_id(data: Any) -> str | None:
    """The job's id as a comparable string; None when the export carries none."""
    value = data.get("id") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        return None
    return str(value)


def _unique_pairs(
    removed: Mapping[str, str | None], added: Mapping[str, str | None]
) -> list[tuple[str, str]]:
    """(old, new) for every key that exactly one removed and one added job have."""
    olds: defaultdict[str, list[str]] = defaultdict(list)
    news: defaultdict[str, list[str]] = defaultdict(list)
    for name, key in removed.items():
        if key is not None:
            olds[key].append(name)
    for name, key in added.items():
        if key is not None:
            news[key].append(name)
    return [
        (old[0], news[key][0])
        for key, old in olds.items()
        if len(old) == 1 and len(news.get(key, ())) == 1
    ]


def pair_renames(
    removed: Mapping[str, bytes],
    added: Mapping[str, bytes],
    volatile: Sequence[FieldPath] = (),
) -> list[tuple[str, str]]:
    """(old name, new name) of the removed jobs that are added ones renamed, sorted.

    ``removed`` and ``added``: job name → the content of its ``.job`` file; ``volatile``:
    the fields of a ``.job`` that change without an edit (left out of the comparison).
    """
    if not removed or not added:
        return []
    old_data = {name: _parsed(content) for name, content in removed.items()}
    new_data = {name: _parsed(content) for name, content in added.items()}
    old_ids = {name: _job_id(data) for name, data in old_data.items()}
    new_ids = {name: _job_id(data) for name, data in new_data.items()}
    pairs = _unique_pairs(old_ids, new_ids)
    paired_old, paired_new = {old for old, _ in pairs}, {new for _, new in pairs}
    old_rest = [name for name in old_data if name not in paired_old]
    new_rest = [name for name in new_data if name not in paired_new]
    # Where one side carries no id, the definition decides (ids that differ say "not one").
    if any(old_ids[n] is None for n in old_rest) or any(new_ids[n] is None for n in new_rest):
        ignored = (*NAME_FIELDS, _ID, *volatile)
        by_content = _unique_pairs(
            {name: _fingerprint(old_data[name], ignored) for name in old_rest},
            {name: _fingerprint(new_data[name], ignored) for name in new_rest},
        )
        pairs += [(o, n) for o, n in by_content if old_ids[o] is None or new_ids[n] is None]
    return sorted(pairs)


def _parsed(content: bytes) -> Any:
    try:
        return parse_json(content)
    except ValueError:
        return None  # unparsable: stored as it is, never paired


def _fingerprint(data: Any, ignored: Sequence[FieldPath]) -> str | None:
    if not isinstance(data, dict):
        return None
    return canonical_json(without_fields(data, ignored)).decode("utf-8")


def renamed_jobs(
    changes: ChangeSet,
    staged: Path,
    current: Path,
    names: PathNames,
    volatile: Sequence[FieldPath] = (),
) -> list[tuple[str, str]]:
    """The (old, new) job renames within ``changes`` of a workspace folder: removed job files
    are read from ``current`` (the folder as committed), added ones from ``staged``."""
    removed = _job_files(changes.removed, names)
    if not removed:
        return []
    added = _job_files(changes.added, names)
    if not added:
        return []
    return pair_renames(
        _contents(removed, current.joinpath),
        _contents(added, staged.joinpath),
        volatile,
    )


def _job_files(paths: Sequence[str], names: PathNames) -> dict[str, str]:
    """Job name → its job file, for the job files among ``paths``."""
    found: dict[str, str] = {}
    for path in paths:
        if is_job_file(path) and (job := names.job_of(path)) is not None:
            found[job] = path
    return found


def _contents(files: Mapping[str, str], at: Callable[[str], Path]) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for job, path in files.items():
        try:
            contents[job] = at(path).read_bytes()
        except OSError:
            continue  # not readable: not paired (the apply reports what is wrong)
    return contents
