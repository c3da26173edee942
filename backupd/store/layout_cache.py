"""The stored layout of a committed workspace folder, kept beside the repository.

Working out whose each stored path is (``read_layout``: the name -> path mapping run over
every job's files) costs ~0.12 ms a job, a quarter of a 20 x 2,000 snapshot's CPU when
nothing changed. The layout a snapshot staged is what it committed, so it is kept, under
``.git``, by the id of the folder's tree it describes, and the next snapshot of that very
tree reads it instead: where each job is stored (its folder and its files' zip entries) and
the components of scripts and resources; the rest of each job's record (type, version,
editor) comes from the committed index, as it does when worked out. Anything else (another
tree, another backupd whose mapping code differs, a damaged file) is worked out again.
Local and disposable, like the progress record: never committed, never pushed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from backupd.store import index, layout, names, normalise, pathmap
from backupd.store.index import JobRecord, WorkspaceIndex
from backupd.store.layout import StoredLayout


@functools.cache
def mapping_code() -> str:
    """An id of the code that decides the layout: a layout kept by a backupd whose mapping
    differs in any way is not used (its paths would have moved)."""
    digest = hashlib.sha256()
    for module in (layout, pathmap, names, index, normalise):
        try:
            digest.update(Path(module.__file__ or "").read_bytes())
        except OSError:
            return ""  # not readable: never trust a kept layout
    return digest.hexdigest()


def write_layout_file(stored: StoredLayout, path: Path) -> None:
    """Write ``stored`` (as a snapshot staged it: no moves) to ``path``: a header line, then
    one line a job (written and read a line at a time, so that a layout of 10,000 jobs is
    never held twice in memory). Raises OSError."""
    header = {
        "code": mapping_code(),
        "scripts": stored.scripts,
        "resources": stored.resources,
        "jobs": len(stored.jobs),
    }
    with path.open("w", encoding="utf-8") as out:
        out.write(_line(header))
        for name, record in stored.jobs.items():
            out.write(_line([name, record.path, dict(record.files)]))


def read_layout_file(path: Path, committed: WorkspaceIndex | None) -> StoredLayout | None:
    """The layout kept at ``path``, each job's record completed from the ``committed``
    index (None: unreadable or missing); None when there is none, or it is not one this
    backupd made, or not whole."""
    code = mapping_code()
    committed = committed or WorkspaceIndex(version=0)
    try:
        with path.open("rb") as lines:
            header = _object(json.loads(next(lines, b"null")))
            if not code or header.get("code") != code:
                return None
            jobs: dict[str, JobRecord] = {}
            for line in lines:
                name, record = _job(json.loads(line), committed)
                jobs[name] = record
        if len(jobs) != header["jobs"]:
            return None
        return StoredLayout(
            jobs=jobs,
            scripts=_names(header["scripts"]),
            resources=_names(header["resources"]),
            version=committed.version,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


# Made once: json.dumps with options other than its defaults makes an encoder each call,
# which was most of the time a layout of 10,000 lines took to write.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _line(value: object) -> str:
    return _COMPACT.encode(value) + "\n"


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


def _names(value: Any) -> dict[str, str]:
    mapping = _object(value)
    if not all(isinstance(v, str) for v in mapping.values()):
        raise TypeError("not a name mapping")
    return mapping


def _job(row: Any, committed: WorkspaceIndex) -> tuple[str, JobRecord]:
    if not isinstance(row, list) or len(row) != 3:
        raise TypeError("not a job's place")
    name, path, files = row
    if not isinstance(name, str) or (path is not None and not isinstance(path, str)):
        raise TypeError("not a job's name and folder")
    known = committed.jobs.get(name, JobRecord())
    record = JobRecord(
        known.job_type, known.last_update_time, known.last_update_user, path, _names(files)
    )
    return name, record
