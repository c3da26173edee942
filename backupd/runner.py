"""Snapshot every configured workspace: config → repository → per source client → workspaces.

Each workspace is isolated: one failing never stops the others (borgmatic's rule). Sources
with ``workspaces: all`` discover their workspaces first, at every run (discovery.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import ExitStack

from backupd.config import Config, SourceConfig
from backupd.credentials import read_secret
from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.discovery import ALL_FOLDERS, sync_workspaces
from backupd.snapshot import SnapshotOptions, SnapshotResult, WorkspaceTarget, snapshot_workspace
from backupd.store.archive import ArchiveLimits
from backupd.store.gitrepo import GitRepo, Identity, repository_lock

logger = logging.getLogger(__name__)

ClientFactory = Callable[[SourceConfig], DataArtsClient]


def make_client(source: SourceConfig) -> DataArtsClient:
    """The API client for one source, authenticated as its config says."""
    auth = StaticTokenAuth(
        read_secret(
            key=f"sources[{source.name}].auth.token",
            value=source.auth.token,
            file=source.auth.token_file,
            credential=source.auth.token_credential,
        )
    )
    settings = ClientSettings(
        endpoint=source.dlf_endpoint,
        project_id=source.project_id,
        page_size=source.page_size,
        timeout=source.timeout,
        requests_per_second=source.requests_per_second,
        exports_per_second=source.exports_per_second,
        management_endpoint=source.management_api_endpoint if source.discovers else None,
    )
    return DataArtsClient(settings, auth)


def snapshot_options(
    config: Config, source: SourceConfig, *, allow_mass_delete: bool
) -> SnapshotOptions:
    limits = config.limits
    return SnapshotOptions(
        export_depend=source.export_depend,
        batch_size=source.batch_size,
        archive_limits=ArchiveLimits(
            max_entries=limits.max_entries, max_total_bytes=limits.max_uncompressed_bytes
        ),
        max_archive_bytes=limits.max_archive_bytes,
        staging_root=config.staging_dir,
        max_delete_fraction=config.safety.max_delete_fraction,
        allow_mass_delete=allow_mass_delete or config.safety.allow_mass_delete,
    )


def targets(source: SourceConfig) -> list[WorkspaceTarget]:
    """The configured workspaces; empty for 'workspaces: all' (run_snapshots discovers those)."""
    return [
        WorkspaceTarget(source=source.name, workspace_id=w.id, folder=w.folder)
        for w in source.listed_workspaces
    ]


def _concerns(source: SourceConfig, wanted: set[str]) -> bool:
    """Could ``only`` name a workspace of this source (whose folders are not known yet)?"""
    return not wanted or any(
        item == source.name or item.startswith(f"{source.name}/") or "/" not in item
        for item in wanted
    )


def run_snapshots(
    config: Config,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory = make_client,
) -> list[SnapshotResult]:
    """Snapshot the configured workspaces into the repo.

    ``only``: labels ('source/folder'), folder names or source names. The results include a
    ``gone`` result for each discovered workspace DataArts no longer lists, and a failed
    ``<source>/*`` result when discovering a source's workspaces failed.
    """
    wanted = set(only)
    identity = Identity(config.repository.author.name, config.repository.author.email)
    results: list[SnapshotResult] = []
    with ExitStack() as stack:
        repo = stack.enter_context(
            GitRepo.open(config.repository.path, branch=config.repository.branch)
        )
        stack.enter_context(repository_lock(repo))
        repo.prepare(identity)

        def is_wanted(target: WorkspaceTarget) -> bool:
            return not wanted or bool({target.label, target.folder, target.source} & wanted)

        for source in config.sources:
            if source.discovers:
                if _concerns(source, wanted):
                    results += _snapshot_discovered(
                        config, source, repo, identity, is_wanted, allow_mass_delete, client_factory
                    )
                continue
            chosen = [t for t in targets(source) if is_wanted(t)]
            if not chosen:
                continue
            options = snapshot_options(config, source, allow_mass_delete=allow_mass_delete)
            with client_factory(source) as client:
                for target in chosen:
                    results.append(snapshot_workspace(client, repo, target, options, identity))
    return results


def _snapshot_discovered(
    config: Config,
    source: SourceConfig,
    repo: GitRepo,
    identity: Identity,
    is_wanted: Callable[[WorkspaceTarget], bool],
    allow_mass_delete: bool,
    client_factory: ClientFactory,
) -> list[SnapshotResult]:
    options = snapshot_options(config, source, allow_mass_delete=allow_mass_delete)
    with client_factory(source) as client:
        found = sync_workspaces(client, repo, source, identity)
        results = [
            r for r in found.reports if r.target.folder == ALL_FOLDERS or is_wanted(r.target)
        ]
        for target in found.targets:
            if is_wanted(target):
                results.append(snapshot_workspace(client, repo, target, options, identity))
    return results
