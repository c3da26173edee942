"""Which folder each discovered workspace lives in: ``<source>/.backupd/workspaces.json``.

Discovered workspaces are keyed by their id, never by their name: the first time backupd
sees a workspace it gives it a folder (its name when that is a usable, free folder name,
else ``<name>-<first 8 id characters>``, else the id; usable: a name Linux, macOS and
Windows all store as it is, see store/pathmap.py; free: unlike every other folder of the
source also on a system that ignores case) and records id → folder here. From
then on the folder never changes: a rename in DataArts only updates the recorded ``name``,
and a workspace that disappears keeps its entry (``present: false``) so its folder is never
handed to another workspace. The file is committed with the snapshots, so a fresh clone
knows which workspace id every folder belongs to (what a restore needs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from backupd.store.normalise import canonical_json, parse_json
from backupd.store.pathmap import collision_key, is_portable, looks_encoded

MAP_FILE = ".backupd/workspaces.json"  # relative to the source folder
FORMAT_VERSION = 1

# The rule of a configured folder name (config.py): one path segment, no leading dot. A
# folder recorded in the map passes it; a new one must also be portable (usable_folder).
_RECORDED_FOLDER = re.compile(r"^[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,127}$")


@dataclass(frozen=True)
class MappedWorkspace:
    id: str
    folder: str
    name: str  # the workspace's name in DataArts when it was last listed
    instance_id: str
    present: bool = True  # False: DataArts no longer lists it (its folder is kept)


@dataclass(frozen=True)
class WorkspaceMap:
    workspaces: tuple[MappedWorkspace, ...] = ()

    @property
    def by_id(self) -> dict[str, MappedWorkspace]:
        return {workspace.id: workspace for workspace in self.workspaces}

    def with_entries(self, entries: Iterable[MappedWorkspace]) -> WorkspaceMap:
        return WorkspaceMap(tuple(sorted(entries, key=lambda w: (w.folder, w.id))))

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "version": FORMAT_VERSION,
                "workspaces": {
                    w.id: {
                        "folder": w.folder,
                        "name": w.name,
                        "instance_id": w.instance_id,
                        "present": w.present,
                    }
                    for w in self.workspaces
                },
            }
        )

    @classmethod
    def from_bytes(cls, content: bytes) -> WorkspaceMap:
        """Parse the file; raises ValueError when it is not a workspace map."""
        data = parse_json(content)
        entries = data.get("workspaces") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise ValueError("no 'workspaces' object")
        mapped = []
        for workspace_id, entry in entries.items():
            if not isinstance(entry, Mapping) or not _recorded_folder(entry.get("folder")):
                raise ValueError(f"bad entry for workspace {workspace_id!r}")
            mapped.append(
                MappedWorkspace(
                    id=str(workspace_id),
                    folder=str(entry["folder"]),
                    name=str(entry.get("name") or workspace_id),
                    instance_id=str(entry.get("instance_id") or ""),
                    present=bool(entry.get("present", True)),
                )
            )
        folders = [collision_key(w.folder) for w in mapped]
        if len(set(folders)) != len(folders):
            raise ValueError("two workspaces share a folder")
        return cls().with_entries(mapped)


def _recorded_folder(name: Any) -> bool:
    return isinstance(name, str) and bool(_RECORDED_FOLDER.match(name))


def usable_folder(name: Any) -> bool:
    """Whether ``name`` can be given to a new workspace folder: a configured folder's rule,
    and stored as it is on Linux, macOS and Windows (no device name like 'CON', no
    trailing dot, at most 255 bytes, …)."""
    return _recorded_folder(name) and is_portable(name) and not looks_encoded(name)


def allocate_folder(name: str, workspace_id: str, taken: Iterable[str]) -> str:
    """A folder for a workspace seen for the first time, unlike any in ``taken``.

    Compared as macOS and Windows compare names: 'Sales' and 'sales' (or two Unicode
    normalisations of one name) are one folder there.
    """
    used = {collision_key(folder) for folder in taken}
    candidates = [name, f"{name}-{workspace_id[:8]}"] if usable_folder(name) else []
    candidates.append(workspace_id)
    for candidate in candidates:
        if usable_folder(candidate) and collision_key(candidate) not in used:
            return candidate
    number = 2
    while collision_key(f"{workspace_id}-{number}") in used:
        number += 1
    return f"{workspace_id}-{number}"
