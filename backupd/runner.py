"""Snapshot every configured workspace: config → repository → per source client → workspaces.

Each workspace is isolated: one failing never stops the others (borgmatic's rule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from backupd.config import Config, SourceConfig
from backupd.credentials import read_secret
from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.errors import RepoError
from backupd.logs import log
from backupd.publish import push_snapshots, tag_snapshot
from backupd.snapshot import SnapshotOptions, SnapshotResult, WorkspaceTarget, snapshot_workspace
from backupd.store.archive import ArchiveLimits
from backupd.store.authors import default_identity
from backupd.store.gitrepo import GitRepo, Identity, repository_lock
from backupd.store.remote import PushResult
from backupd.store.volatile import VolatileRules

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
        volatile=volatile_rules(config),
        commit_per_author=config.history.commit_per_author,
        authors=author_identities(config),
    )


def author_identities(config: Config) -> dict[str, Identity]:
    """Git identities of the DataArts users listed in history.authors (gaps filled in)."""
    identities: dict[str, Identity] = {}
    for user, entry in config.history.authors.items():
        default = default_identity(user)
        identities[user] = Identity(entry.name or default.name, entry.email or default.email)
    return identities


def volatile_rules(config: Config) -> VolatileRules:
    fields = config.history.volatile_fields
    return VolatileRules.from_texts({".job": fields.job, ".script": fields.script})


def targets(source: SourceConfig) -> list[WorkspaceTarget]:
    return [
        WorkspaceTarget(source=source.name, workspace_id=w.id, folder=w.folder)
        for w in source.workspaces
    ]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RunReport:
    """One snapshot run: each workspace's result, the tag it created, how the push went."""

    results: tuple[SnapshotResult, ...]
    tag: str | None = None
    push: PushResult | None = None  # None: no remote configured (or nothing was run)


def run(
    config: Config,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory = make_client,
    clock: Callable[[], datetime] = utc_now,
) -> RunReport:
    """Snapshot the configured workspaces, tag the restore point, push to the remote.

    ``only``: labels or folder names. The push runs outside the lock: it may wait on the
    network, and its failure is part of the report, never an exception.
    """
    identity = Identity(config.repository.author.name, config.repository.author.email)
    with GitRepo.open(config.repository.path, branch=config.repository.branch) as repo:
        with repository_lock(repo):
            repo.prepare(identity)
            results = snapshot_all(
                config,
                repo,
                identity,
                only=only,
                allow_mass_delete=allow_mass_delete,
                client_factory=client_factory,
            )
            tag = _tag(repo, config, clock(), results, identity)
        pushed = None
        if config.remote is not None and results:
            pushed = push_snapshots(repo, config)
    return RunReport(tuple(results), tag, pushed)


def _tag(
    repo: GitRepo,
    config: Config,
    now: datetime,
    results: list[SnapshotResult],
    identity: Identity,
) -> str | None:
    try:
        return tag_snapshot(repo, config.history.tags, now, results, identity)
    except RepoError as error:  # the commits stand; the next run tags again
        log(logger, "tag.failed", level=logging.ERROR, error=str(error))
        return None


def snapshot_all(
    config: Config,
    repo: GitRepo,
    identity: Identity,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory = make_client,
) -> list[SnapshotResult]:
    """Snapshot the chosen workspaces into ``repo``; call with the lock held."""
    wanted = set(only)
    results: list[SnapshotResult] = []
    for source in config.sources:
        chosen = [
            t for t in targets(source) if not wanted or t.label in wanted or t.folder in wanted
        ]
        if not chosen:
            continue
        options = snapshot_options(config, source, allow_mass_delete=allow_mass_delete)
        with client_factory(source) as client:
            for target in chosen:
                results.append(snapshot_workspace(client, repo, target, options, identity))
    return results


def run_snapshots(
    config: Config,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory = make_client,
) -> list[SnapshotResult]:
    """Snapshot the configured workspaces (then tag and push, as configured)."""
    report = run(
        config, only=only, allow_mass_delete=allow_mass_delete, client_factory=client_factory
    )
    return list(report.results)
