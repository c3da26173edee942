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


def layout_bytes(stored: StoredLayout) -> bytes:
    """``stored`` (as a snapshot staged it: no moves) as the bytes to keep."""
    data = {
        "code": mapping_code(),
        "jobs": {name: [r.path, dict(r.files)] for name, r in stored.jobs.items()},
        "scripts": stored.scripts,
        "resources": stored.resources,
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def parse_layout(data: bytes, committed: WorkspaceIndex | None) -> StoredLayout | None:
    """The kept layout, each job's record completed from the ``committed`` index (None:
    unreadable or missing); None when it is not one this backupd made (or not whole)."""
    code = mapping_code()
    committed = committed or WorkspaceIndex(version=0)
    try:
        parsed = json.loads(data)
        if not code or not isinstance(parsed, dict) or parsed.get("code") != code:
            return None
        jobs = {
            name: _record(row, committed.jobs.get(name, JobRecord()))
            for name, row in _object(parsed["jobs"]).items()
        }
        return StoredLayout(
            jobs=jobs,
            scripts=_names(parsed["scripts"]),
            resources=_names(parsed["resources"]),
            version=committed.version,
        )
    except (ValueError, KeyError, TypeError):
        return None


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


def _names(value: Any) -> dict[str, str]:
    mapping = _object(value)
    if not all(isinstance(v, str) for v in mapping.values()):
        raise TypeError("not a name mapping")
    return mapping


def _record(row: Any, committed: JobRecord) -> JobRecord:
    if not isinstance(row, list) or len(row) != 2:
        raise TypeError("not a job's place")
    path, files = row
    if path is not None and not isinstance(path, str):
        raise TypeError("not a folder")
    return JobRecord(
        committed.job_type,
        committed.last_update_time,
        committed.last_update_user,
        path,
        _names(files),
    )
