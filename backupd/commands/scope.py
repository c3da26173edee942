"""Which workspaces a command means: configured ones, and discovered ones from the repository.

A source with ``workspaces: all`` has no list in the config; its workspaces are those its
discovery recorded in the repository's own map (``<source>/.backupd/workspaces.json``),
including workspaces DataArts no longer lists but whose history the repository keeps. So
`log`, `show`, `restore` and `status` work on a fresh clone, and for a deleted workspace.
"""

from __future__ import annotations

from dataclasses import dataclass

from backupd.config import Config
from backupd.errors import RepoError, UsageError
from backupd.snapshot.discovery import read_map


@dataclass(frozen=True)
class KnownWorkspace:
    source: str
    id: str
    folder: str
    name: str | None = None  # its DataArts name, where known
    discovered: bool = False  # recorded by discovery, not listed in the config
    present: bool = True  # False: DataArts no longer lists it (its history stays)

    @property
    def label(self) -> str:
        return f"{self.source}/{self.folder}"

    def matches(self, wanted: str) -> bool:
        return wanted in (self.folder, self.id, self.label, self.name)


def known_workspaces(config: Config) -> list[KnownWorkspace]:
    """Every workspace of every source: listed in the config, or in a source's map."""
    known: list[KnownWorkspace] = []
    for source in config.sources:
        if not source.discovers:
            known += [
                KnownWorkspace(source.name, w.id, w.folder, w.name)
                for w in source.listed_workspaces
            ]
            continue
        try:
            workspace_map = read_map(config.repository.path / source.name)
        except RepoError:
            continue  # said by the commands that read the repository
        known += [
            KnownWorkspace(source.name, w.id, w.folder, w.name, discovered=True, present=w.present)
            for w in workspace_map.workspaces
        ]
    return known


def choose(
    config: Config, source: str | None = None, workspace: str | None = None
) -> list[KnownWorkspace]:
    """The workspaces matching ``--source``/``--workspace`` (folder, id, label or name)."""
    if source is not None and not any(s.name == source for s in config.sources):
        names = ", ".join(s.name for s in config.sources)
        raise UsageError(f"no source named {source!r} in the config (known: {names})")
    candidates = [w for w in known_workspaces(config) if source in (None, w.source)]
    found = [w for w in candidates if workspace is None or w.matches(workspace)]
    if not found:
        wanted = "/".join(n for n in (source, workspace) if n) or "any workspace"
        shown = ", ".join(w.label for w in candidates) or "none yet: no snapshot has run"
        raise UsageError(f"no workspace matches {wanted} (known: {shown})")
    return found
