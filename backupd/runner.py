"""Snapshot every configured workspace: config → repository → per source client → workspaces.

Each workspace is isolated: one failing never stops the others (borgmatic's rule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import ExitStack

from backupd.config import Config, SourceConfig
from backupd.credentials import read_secret
from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.dataarts.retry import RetryPolicy
from backupd.logs import log
from backupd.snapshot import (
    SnapshotOptions,
    SnapshotResult,
    WorkspaceTarget,
    remove_stale_staging,
    snapshot_workspace,
)
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
        max_concurrent=source.max_concurrent_requests,
        retry=RetryPolicy(
            attempts=source.retry.attempts,
            base_delay=source.retry.base_delay,
            max_delay=source.retry.max_delay,
            max_retry_after=source.retry.max_retry_after,
        ),
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
        archive_attempts=source.retry.archive_attempts,
    )


def targets(source: SourceConfig) -> list[WorkspaceTarget]:
    return [
        WorkspaceTarget(source=source.name, workspace_id=w.id, folder=w.folder)
        for w in source.workspaces
    ]


def run_snapshots(
    config: Config,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory = make_client,
) -> list[SnapshotResult]:
    """Snapshot the configured workspaces (``only``: labels or folder names) into the repo."""
    wanted = set(only)
    identity = Identity(config.repository.author.name, config.repository.author.email)
    results: list[SnapshotResult] = []
    with ExitStack() as stack:
        repo = stack.enter_context(
            GitRepo.open(config.repository.path, branch=config.repository.branch)
        )
        stack.enter_context(repository_lock(repo))
        repo.prepare(identity)
        remove_stale_staging(config.staging_dir)
        for source in config.sources:
            chosen = [
                t for t in targets(source) if not wanted or t.label in wanted or t.folder in wanted
            ]
            if not chosen:
                continue
            options = snapshot_options(config, source, allow_mass_delete=allow_mass_delete)
            with client_factory(source) as client:
                results += snapshot_source(client, repo, chosen, options, identity)
    return results


def snapshot_source(
    client: DataArtsClient,
    repo: GitRepo,
    chosen: list[WorkspaceTarget],
    options: SnapshotOptions,
    identity: Identity,
) -> list[SnapshotResult]:
    """Snapshot the workspaces of one source; rejected credentials stop the source at once."""
    results: list[SnapshotResult] = []
    for index, target in enumerate(chosen):
        result = snapshot_workspace(client, repo, target, options, identity)
        results.append(result)
        if result.credentials_rejected:
            # Every further call would be refused the same way: one request, not one per
            # workspace (and no account lockout for hammering with bad credentials).
            skipped = chosen[index + 1 :]
            if skipped:
                log(
                    logger,
                    "source.skipped",
                    level=logging.WARNING,
                    source=target.source,
                    reason="credentials rejected",
                    workspaces=",".join(t.label for t in skipped),
                )
            results += [
                SnapshotResult(t, ok=False, error=result.error, credentials_rejected=True)
                for t in skipped
            ]
            break
    return results
