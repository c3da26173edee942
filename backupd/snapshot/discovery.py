"""Workspace discovery for sources configured with ``workspaces: all``.

At every snapshot: pick the instance (configured, or the project's only effective one), list
its workspaces on the management host, apply ``include``/``exclude``, and reconcile the
result with the source's workspace map (store/workspace_map.py): a new workspace gets a
folder and is backed up from this snapshot on, a renamed one keeps its folder, one that
vanished is reported and keeps its folder. The map is committed whenever it changes, so the
history also tells when a workspace appeared, was renamed or disappeared.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from backupd.config import SourceConfig
from backupd.dataarts.client import WorkspaceInfo
from backupd.dataarts.source import JobSource
from backupd.errors import BackupdError, ConfigError, RepoError, SnapshotRefused
from backupd.logs import log
from backupd.model import SnapshotResult, WorkspaceTarget
from backupd.store.gitrepo import GitRepo, Identity
from backupd.store.workspace_map import MAP_FILE, MappedWorkspace, WorkspaceMap, allocate_folder

logger = logging.getLogger(__name__)

State = Literal["new", "known", "renamed", "returned", "gone"]
ALL_FOLDERS = "*"  # folder of the result that reports a failed discovery ("<source>/*")


@dataclass(frozen=True)
class DiscoveredWorkspace:
    id: str
    name: str
    state: State
    included: bool
    reason: str  # why (not) included: "included", "excluded by 'tmp_*'", …
    folder: str | None  # None: never backed up (excluded since it was first seen)
    previous_name: str | None = None  # state "renamed": the name before

    @property
    def status(self) -> str:
        """One line for people: included or not and why, and what happened to it."""
        if self.state == "gone":
            why = "no longer listed by DataArts" if self.included else self.reason
            return f"gone: {why} (folder kept)"
        if not self.included:
            return f"{self.reason} (folder kept)" if self.folder else self.reason
        return {
            "new": "included (new: backed up from the next snapshot on)",
            "renamed": f"included (renamed from {self.previous_name!r}, same folder)",
            "returned": "included (listed again)",
        }.get(self.state, "included")


@dataclass(frozen=True)
class Discovery:
    source: str
    instance_id: str
    workspaces: tuple[DiscoveredWorkspace, ...]
    workspace_map: WorkspaceMap  # the map after this discovery

    def targets(self) -> list[WorkspaceTarget]:
        return [
            WorkspaceTarget(source=self.source, workspace_id=w.id, folder=w.folder)
            for w in self.workspaces
            if w.included and w.state != "gone" and w.folder
        ]

    def gone(self) -> list[DiscoveredWorkspace]:
        return [w for w in self.workspaces if w.state == "gone" and w.included]


@dataclass(frozen=True)
class SourceWorkspaces:
    """What to snapshot for one discovering source, and what to report besides."""

    targets: tuple[WorkspaceTarget, ...]
    reports: tuple[SnapshotResult, ...] = ()


# --- decisions (pure) -------------------------------------------------------------------------


def filter_reason(
    workspace_id: str, name: str, include: Sequence[str], exclude: Sequence[str]
) -> tuple[bool, str]:
    """(included?, why) for one workspace; patterns match its name or its id."""

    def matches(pattern: str) -> bool:
        return fnmatchcase(name, pattern) or fnmatchcase(workspace_id, pattern)

    if include and not any(matches(pattern) for pattern in include):
        return False, "not matched by include (" + ", ".join(repr(p) for p in include) + ")"
    for pattern in exclude:
        if matches(pattern):
            return False, f"excluded by {pattern!r}"
    return True, "included"


def plan_discovery(
    source: SourceConfig,
    instance_id: str,
    listed: Sequence[WorkspaceInfo],
    previous: WorkspaceMap,
    existing_folders: Collection[str] = (),
) -> Discovery:
    """Reconcile a workspace listing with the map from the previous snapshot.

    ``existing_folders``: the source's folders in the repository. Only mapped folders are
    taken: an unmapped folder left by an explicit workspace list before the switch to 'all'
    is taken over by the workspace it is named after (its id, else its name), so its
    history goes on.
    """
    known = previous.by_id
    entries: dict[str, MappedWorkspace] = dict(known)
    taken = {w.folder for w in previous.workspaces}
    found: list[DiscoveredWorkspace] = []
    for workspace in listed:
        included, reason = filter_reason(
            workspace.id, workspace.name, source.include, source.exclude
        )
        old = known.get(workspace.id)
        if old is None:
            if not included:  # no folder for what was never backed up
                found.append(
                    DiscoveredWorkspace(workspace.id, workspace.name, "new", False, reason, None)
                )
                continue
            taken_ids = {folder.casefold() for folder in taken}
            if workspace.id in existing_folders and workspace.id.casefold() not in taken_ids:
                folder = workspace.id  # named by its id: unambiguously this workspace's
            else:
                folder = allocate_folder(workspace.name, workspace.id, taken)
            taken.add(folder)
            entries[workspace.id] = MappedWorkspace(
                workspace.id, folder, workspace.name, workspace.instance_id
            )
            found.append(
                DiscoveredWorkspace(workspace.id, workspace.name, "new", True, reason, folder)
            )
            continue
        state: State = "known"
        if not old.present:
            state = "returned"
        elif old.name != workspace.name:
            state = "renamed"
        entries[workspace.id] = replace(
            old, name=workspace.name, instance_id=workspace.instance_id, present=True
        )
        found.append(
            DiscoveredWorkspace(
                workspace.id,
                workspace.name,
                state,
                included,
                reason,
                old.folder,
                previous_name=old.name if state == "renamed" else None,
            )
        )
    listed_ids = {workspace.id for workspace in listed}
    for old in previous.workspaces:
        if old.id not in listed_ids:
            included, reason = filter_reason(old.id, old.name, source.include, source.exclude)
            entries[old.id] = replace(old, present=False)
            found.append(
                DiscoveredWorkspace(old.id, old.name, "gone", included, reason, old.folder)
            )
    return Discovery(
        source=source.name,
        instance_id=instance_id,
        workspaces=tuple(found),
        workspace_map=previous.with_entries(entries.values()),
    )


def map_commit_message(discovery: Discovery) -> str:
    groups: dict[State, list[DiscoveredWorkspace]] = {}
    for workspace in discovery.workspaces:
        if workspace.folder and workspace.state != "known":
            groups.setdefault(workspace.state, []).append(workspace)
    counts = [
        f"{len(groups[state])} {state}"
        for state in ("new", "renamed", "returned", "gone")
        if state in groups
    ]
    lines = [f"{discovery.source}: workspaces: {', '.join(counts) or 'map updated'}"]
    titles: tuple[tuple[State, str], ...] = (
        ("new", "New workspaces (backed up from now on)"),
        ("renamed", "Renamed in DataArts (folder unchanged)"),
        ("returned", "Listed again"),
        ("gone", "No longer listed by DataArts (folder kept)"),
    )
    for state, title in titles:
        if state not in groups:
            continue
        lines += ["", f"{title}:"]
        for w in groups[state]:
            renamed = f"{w.previous_name} -> " if w.previous_name else ""
            lines.append(f"  {renamed}{w.name} (id {w.id}) in {discovery.source}/{w.folder}/")
    return "\n".join(lines) + "\n"


# --- network ----------------------------------------------------------------------------------


def choose_instance(client: JobSource, source: SourceConfig) -> str:
    """The configured instance, or the project's only effective one."""
    if source.instance_id:
        return source.instance_id
    instances = client.list_instances()
    effective = [instance for instance in instances if instance.effective]
    if len(effective) == 1:
        return effective[0].id
    key = f"sources[{source.name}].instance_id"
    if not effective:
        seen = ", ".join(f"{i.id} ({i.name}, status {i.status})" for i in instances)
        raise ConfigError(
            key,
            "not set, and the project has no effective DataArts Studio instance"
            + (f" (instances: {seen})" if seen else ""),
        )
    named = ", ".join(f"{i.id} ({i.name})" for i in effective)
    raise ConfigError(
        key,
        f"not set, and the project has {len(effective)} effective DataArts Studio "
        f"instances: {named}; set instance_id to one of them",
    )


def discover(
    client: JobSource,
    source: SourceConfig,
    previous: WorkspaceMap,
    existing_folders: Collection[str] = (),
) -> Discovery:
    """List the instance's workspaces and reconcile them with ``previous``."""
    instance_id = choose_instance(client, source)
    listed = client.list_workspaces(instance_id)
    present = [w for w in previous.workspaces if w.present]
    if not listed and present:
        # Every instance has at least its default workspace: an empty list is a glitch.
        raise SnapshotRefused(
            f"{source.name}: instance {instance_id} listed no workspaces, but "
            f"{len(present)} were backed up before; refusing to report them all gone"
        )
    return plan_discovery(source, instance_id, listed, previous, existing_folders)


# --- the repository ---------------------------------------------------------------------------


def read_map(source_dir: Path) -> WorkspaceMap:
    path = source_dir / MAP_FILE
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return WorkspaceMap()
    try:
        return WorkspaceMap.from_bytes(content)
    except (ValueError, UnicodeDecodeError) as error:
        raise RepoError(f"{path} is not a workspace map ({error}); fix or remove it") from None


def folders_of(source_dir: Path) -> frozenset[str]:
    """The workspace folders of a source in the working tree (dot-folders are not)."""
    if not source_dir.is_dir():
        return frozenset()
    return frozenset(
        p.name for p in source_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def known_targets(source: SourceConfig, workspace_map: WorkspaceMap) -> list[WorkspaceTarget]:
    """The workspaces of ``source`` the map holds as present and its filters include."""
    return [
        WorkspaceTarget(source.name, w.id, w.folder)
        for w in workspace_map.workspaces
        if w.present and filter_reason(w.id, w.name, source.include, source.exclude)[0]
    ]


def preview(client: JobSource, repository: Path, source: SourceConfig) -> Discovery:
    """What discovery finds now, against the map in the working tree; changes nothing."""
    source_dir = repository / source.name
    return discover(client, source, read_map(source_dir), folders_of(source_dir))


def sync_workspaces(
    client: JobSource, repo: GitRepo, source: SourceConfig, identity: Identity
) -> SourceWorkspaces:
    """Discover, commit the map if it changed, announce changes; call with the lock held.

    When discovery fails, the workspaces found last time are still snapshotted and the
    failure is reported as the result of ``<source>/*``.
    """
    meta = f"{source.name}/{MAP_FILE.rsplit('/', 1)[0]}"
    try:
        repo.reset_folder(meta)  # whatever a crashed run left here is not history
        previous = read_map(repo.path / source.name)
    except (BackupdError, OSError) as error:
        return _failed(source, error, [])
    try:
        discovery = discover(client, source, previous, folders_of(repo.path / source.name))
        _record(repo, source, previous, discovery, identity)
    except (BackupdError, OSError) as error:
        return _failed(source, error, known_targets(source, previous))
    _announce(discovery)
    reports = tuple(
        SnapshotResult(WorkspaceTarget(source.name, w.id, w.folder or w.id), ok=True, gone=True)
        for w in discovery.gone()
    )
    return SourceWorkspaces(tuple(discovery.targets()), reports)


def _record(
    repo: GitRepo,
    source: SourceConfig,
    previous: WorkspaceMap,
    discovery: Discovery,
    identity: Identity,
) -> None:
    if discovery.workspace_map == previous:
        return
    content = discovery.workspace_map.to_bytes()
    relative = f"{source.name}/{MAP_FILE}"
    path = repo.path / relative
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        repo.stage([relative])
        repo.commit(map_commit_message(discovery), author=identity, committer=identity)
    except (BackupdError, OSError):
        repo.reset_folder(relative.rsplit("/", 1)[0])
        raise


def _announce(discovery: Discovery) -> None:
    source = discovery.source
    listed = [w for w in discovery.workspaces if w.state != "gone"]
    log(
        logger,
        "workspaces.listed",
        source=source,
        instance=discovery.instance_id,
        listed=len(listed),
        included=sum(1 for w in listed if w.included),
    )
    for w in discovery.workspaces:
        fields: dict[str, Any] = {
            "source": source,
            "id": w.id,
            "name": w.name,
            "folder": w.folder or "-",
        }
        if w.state == "new" and w.included:
            log(logger, "workspace.discovered", **fields)
        elif w.state == "renamed":
            log(logger, "workspace.renamed", previous_name=w.previous_name, **fields)
        elif w.state == "returned" and w.included:
            log(logger, "workspace.returned", **fields)
        elif w.state == "gone" and w.included:
            log(logger, "workspace.gone", level=logging.WARNING, folder_kept=True, **fields)


def _failed(
    source: SourceConfig, error: BaseException, fallback: list[WorkspaceTarget]
) -> SourceWorkspaces:
    message = f"workspace discovery failed: {error}"
    log(
        logger,
        "workspaces.failed",
        level=logging.ERROR,
        source=source.name,
        error=str(error),
        snapshotting_known=len(fallback),
    )
    target = WorkspaceTarget(source.name, "", ALL_FOLDERS)
    return SourceWorkspaces(tuple(fallback), (SnapshotResult(target, ok=False, error=message),))
