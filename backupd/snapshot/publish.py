"""After a snapshot run: tag the restore point, then push commits and tags to the remote.

Both are per repository, not per workspace: a tag marks the state of every workspace at the
end of a run. A failed push loses nothing (the commits stay local) and is simply retried by
the next push, which sends everything the remote lacks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from backupd.config import Config, RemoteConfig
from backupd.credentials import read_secret
from backupd.errors import ConfigError, CredentialError
from backupd.logs import log
from backupd.model import SnapshotResult
from backupd.store.gitrepo import GitRepo, Identity
from backupd.store.remote import (
    PushResult,
    RemoteAuth,
    git_access,
    interpret,
    redact_url,
    refspecs,
)
from backupd.store.tags import TAG_PREFIX, TagPolicy, tag_due, tag_name

logger = logging.getLogger(__name__)


def tag_message(now: datetime, results: Sequence[SnapshotResult]) -> str:
    lines = [f"backupd snapshot {now:%Y-%m-%dT%H:%M:%SZ}", ""]
    for result in results:
        if not result.ok:
            state = f"failed ({result.error})"  # its folder holds the previous snapshot
        elif result.commit:
            state = f"{result.commit[:12]}, {result.jobs} jobs"
        else:
            state = f"unchanged, {result.jobs} jobs"
        lines.append(f"{result.target.label}: {state}")
    return "\n".join(lines) + "\n"


def tag_snapshot(
    repo: GitRepo,
    policy: TagPolicy,
    now: datetime,
    results: Sequence[SnapshotResult],
    tagger: Identity,
) -> str | None:
    """Tag HEAD as a restore point when the policy says so; the tag's name, or None.

    Call with the repository lock held. A run in which every workspace failed confirms
    nothing and is never tagged.
    """
    if policy == "none" or not any(r.ok for r in results):
        return None
    head = repo.head()
    existing = repo.tags(TAG_PREFIX)
    newest = next((t.created for t in existing if t.created is not None), None)
    head_tagged = any(t.commit == head for t in existing)
    if not tag_due(policy, now, newest, head_tagged=head_tagged):
        return None
    name = tag_name(now, {t.name for t in existing})
    repo.create_tag(name, tag_message(now, results), tagger=tagger, when=now)
    log(logger, "tag.created", tag=name, commit=(head or "")[:12])
    return name


def ssh_key_path(remote: RemoteConfig) -> Path | None:
    if remote.ssh_key_credential is None:
        return remote.ssh_key_file
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise CredentialError(
            "remote.ssh_key_credential: $CREDENTIALS_DIRECTORY is not set "
            "(systemd sets it for units with LoadCredential=)"
        )
    return Path(directory) / remote.ssh_key_credential


def remote_auth(remote: RemoteConfig) -> RemoteAuth:
    """The remote's credentials as configured: the password is read now, keys are paths."""
    password = None
    if (remote.password, remote.password_file, remote.password_credential) != (None,) * 3:
        password = read_secret(
            key="remote.password",
            value=remote.password,
            file=remote.password_file,
            credential=remote.password_credential,
        )
    return RemoteAuth(password, ssh_key_path(remote), remote.known_hosts_file)


def auth_problem(auth: RemoteAuth) -> str | None:
    """A configured SSH file that is missing, or None."""
    if auth.ssh_key is not None and not auth.ssh_key.is_file():
        return f"SSH key {auth.ssh_key} does not exist or is no file"
    if auth.known_hosts is not None and not auth.known_hosts.is_file():
        return f"known_hosts file {auth.known_hosts} does not exist or is no file"
    return None


def push_snapshots(repo: GitRepo, config: Config) -> PushResult:
    """Push the snapshot branch and tags to the configured remote; failures are returned."""
    remote = config.remote
    if remote is None:
        raise ConfigError("remote", "no remote is configured")
    result = _push(repo, remote, config.repository.branch)
    if result.ok:
        log(logger, "push.done", remote=result.remote, updated=len(result.updated))
    else:
        log(logger, "push.failed", level=logging.WARNING, remote=result.remote, error=result.error)
    return result


def _push(repo: GitRepo, remote: RemoteConfig, branch: str) -> PushResult:
    shown = redact_url(remote.url)
    try:
        auth = remote_auth(remote)
    except CredentialError as error:  # the snapshot stands: a failed push like any other
        return PushResult(False, shown, error=str(error))
    if (problem := auth_problem(auth)) is not None:
        return PushResult(False, shown, error=problem)
    remote_branch = remote.branch or branch
    try:
        with git_access(remote.url, auth, remote.timeout) as access:
            output = repo.push(
                remote.url,
                refspecs(branch, remote_branch),
                environment=access.environment,
                timeout=remote.timeout,
                options=access.options,
            )
    except CredentialError as error:
        return PushResult(False, shown, error=str(error))
    return interpret(output, remote.url, remote_branch, remote.timeout)
